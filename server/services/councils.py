"""Councils: founding one, telling a linked group where it holds seats, and inviting a group.

The rules are crypto/councils.py's and crypto/delegations.py's, run by the
server before it stores anything and by every council member's client. What
the server adds: a council is founded only by the current spokesperson of
the group whose seat it starts with, on that group's latest election; a
linked group's members may post a seat change to the councils it sits in
(they hold its log, so they build the proofs), and its spokesperson sees
the council's open motion to link it, with the council's log to check it.
Nobody else learns anything of a council.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.councils import COUNCIL, link_terms
from crypto.errors import CryptoError
from crypto.motions import parse_motion
from crypto.roster import GroupRules, parse_group_creation
from server.errors import ApiError, ErrorCode
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    load_genesis,
    parse_stored,
    statement_from,
)
from server.services.groups import load_state
from server.services.roster_ops import add_founding_members, record_creation
from server.store import councils as store
from server.store import groups as group_store
from server.store import motions as motion_store
from server.store import roster as roster_store
from server.store.db import Pool, transaction
from server.store.statements import StoredStatement


async def create_council(
    pool: Pool, session: Session, body: dict[str, Any], now: datetime
) -> bytes:
    """Found a council with the caller's seat; its group id."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        event = statement_from(body, "create", "roster", genesis.network_id)
        check_fresh(event, now)
        if event.author != session.member_id:
            raise api_error(
                400, ErrorCode.INVALID_STATEMENT, "sign the council's creation yourself"
            )
        with crypto_errors():
            creation = parse_group_creation(event, rules=GroupRules.of(genesis))
        state = creation.state
        if state.kind != COUNCIL:
            raise api_error(400, ErrorCode.INVALID_EVENT, "only a council is founded this way")
        ((seat_group, anchor),) = state.seats.items()
        if await group_store.lock_group(conn, seat_group) is None or not (
            await group_store.is_group_member(conn, seat_group, session.member_id)
        ):
            raise api_error(404, ErrorCode.NOT_FOUND, "no such group")
        linked = await load_state(conn, genesis, seat_group)
        if linked.spokesperson != session.member_id or linked.last_link != anchor.link:
            raise api_error(
                403,
                ErrorCode.NOT_SPOKESPERSON,
                "a council is founded by its group's current spokesperson, on its latest election",
            )
        if await group_store.lock_group(conn, state.group) is not None:
            raise api_error(409, ErrorCode.CONFLICT, "a group with this id exists")
        await record_creation(conn, genesis.network_id, creation, now)
        await add_founding_members(conn, creation, now)
    return state.group


@dataclass(frozen=True)
class Seat:
    council_id: bytes
    holder: bytes | None
    link_id: bytes
    link_seq: int
    council_seq: int
    council_head: bytes | None


async def seats_of(pool: Pool, session: Session, group_id: bytes) -> list[Seat]:
    """The seats the caller's group holds, and each council's head (to post a seat change on)."""
    async with transaction(pool) as conn:
        if not await group_store.is_group_member(conn, group_id, session.member_id):
            raise api_error(404, ErrorCode.NOT_FOUND, "no such group")
        found = []
        for row in await store.seats_of_group(conn, group_id):
            council = await group_store.get_group(conn, row.council_id)
            if council is None:
                continue
            found.append(
                Seat(
                    row.council_id,
                    row.holder,
                    row.link_id,
                    row.link_seq,
                    council.roster_seq,
                    council.roster_head,
                )
            )
        return found


@dataclass(frozen=True)
class Invitation:
    group_id: bytes  # the caller's group the council moved to link
    motion: StoredStatement
    signatures: list[StoredStatement]
    roster: list[StoredStatement]  # the council's log, for the caller to check the quorum


async def invitation(pool: Pool, session: Session, council_id: bytes) -> Invitation:
    """The council's open motion to link a group whose spokesperson the caller is."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        council = await group_store.get_group(conn, council_id)
        if council is None or council.kind != COUNCIL:
            raise api_error(404, ErrorCode.NOT_FOUND, "no such invitation")
        for motion in await motion_store.open_motions_of_group(conn, council_id, "link"):
            try:
                parsed = parse_motion(parse_stored(motion.motion, "motion", genesis.network_id))
                group = link_terms(parsed)
            except (CryptoError, ApiError):  # parse_stored refuses a changed row as ApiError
                continue  # a malformed motion invites nobody (and blocks no one)
            if not await group_store.is_group_member(conn, group, session.member_id):
                continue
            state = await load_state(conn, genesis, group)
            if state.spokesperson != session.member_id:
                continue
            log = await roster_store.roster_log(conn, council_id)
            return Invitation(group, motion.motion, motion.signatures, log)
    raise api_error(404, ErrorCode.NOT_FOUND, "no such invitation")
