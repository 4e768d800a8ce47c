"""Roster logs and epochs: the server's side of §7.

The rules themselves are crypto.roster's; what the server adds for each
operation is in one table (services/roster_ops.py), run in the transaction
that holds the group row's lock, which also keeps the server's index tables
in step. The rekey invariant lives here: while a group's current epoch does
not cover its current members, every message is refused (services/messages.py
reads ``rekey_needed`` under the same lock).

A member a roster event removed (moved by a split, left, revoked) reads the
group as far as they could before: its events and roster log up to and
including that event, and their own epoch boxes (sealed only for the epochs
they were in); nothing later, and nothing written (:func:`readable_group`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.councils import COUNCIL, link_terms
from crypto.motions import parse_motion
from crypto.network import Genesis
from crypto.roster import GroupRules, RosterState, apply, verify_log
from crypto.statements import Statement, get_bytes, unpack
from server.errors import ErrorCode
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    load_genesis,
    parse_stored,
    seconds,
    statement_from,
)
from server.services.roster_ops import RosterChange, record_event
from server.store import groups as store
from server.store import roster as roster_store
from server.store.db import Connection, Pool, transaction
from server.store.statements import StoredStatement


async def locked_group_for(conn: Connection, session: Session, group_id: bytes) -> store.GroupRow:
    """The group's row, locked, if the caller is in the group; 404 otherwise."""
    group = await store.lock_group(conn, group_id)
    # Not there and not yours answer alike.
    if group is None or not await store.is_group_member(conn, group_id, session.member_id):
        raise api_error(404, ErrorCode.NOT_FOUND, "no such group")
    return group


@dataclass(frozen=True)
class Reach:
    """How far the caller may read a group: all of it (None), or up to the event that removed them."""

    last_seq: int | None  # among the group's events
    roster_seq: int | None  # in its roster log


async def readable_group(conn: Connection, member_id: bytes, group_id: bytes) -> Reach:
    """A member reads all of the group, a former member up to their removal; 404 otherwise."""
    if await store.is_group_member(conn, group_id, member_id):
        return Reach(None, None)
    former = await store.former_reach(conn, group_id, member_id)
    # Not there and never yours answer alike.
    if former is None:
        raise api_error(404, ErrorCode.NOT_FOUND, "no such group")
    return Reach(former.last_seq, former.roster_seq)


async def load_state(conn: Connection, genesis: Genesis, group_id: bytes) -> RosterState:
    """The group's roster, replayed from its stored log by the rule book."""
    events = [
        parse_stored(s, "roster", genesis.network_id)
        for s in await roster_store.roster_log(conn, group_id)
    ]
    with crypto_errors():
        return verify_log(events, rules=GroupRules.of(genesis))


async def roster(pool: Pool, session: Session, group_id: bytes) -> list[StoredStatement]:
    """The group's roster log; a former member's ends with the event that removed them."""
    async with transaction(pool) as conn:
        reach = await readable_group(conn, session.member_id, group_id)
        return await roster_store.roster_log(conn, group_id, reach.roster_seq)


async def append_roster_event(
    pool: Pool, session: Session, group_id: bytes, body: dict[str, Any], now: datetime
) -> tuple[RosterState, frozenset[bytes]]:
    """Append the caller's roster event; the new state, and who it removed from the group."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        event = statement_from(body, "event", "roster", genesis.network_id)
        group = await store.lock_group(conn, group_id)
        # Members extend a log; a linked group's members post their seat's changes.
        if group is None or not (
            await store.is_group_member(conn, group_id, session.member_id)
            or await _seats_linked_group(conn, session, group, event)
        ):
            raise api_error(404, ErrorCode.NOT_FOUND, "no such group")
        state = await load_state(conn, genesis, group_id)
        check_fresh(event, now)
        if event.author != session.member_id:
            raise api_error(
                400, ErrorCode.INVALID_STATEMENT, "sign roster events with your own key"
            )
        with crypto_errors():
            after = apply(state, event, rules=GroupRules.of(genesis), now=seconds(now))
        await record_event(conn, RosterChange(genesis, state, after, event, body, now))
    return after, frozenset(state.members) - frozenset(after.members)


async def _seats_linked_group(
    conn: Connection, session: Session, group: store.GroupRow, event: Statement
) -> bool:
    """A council's `link` or `seat`, or a freeze carried from a cell, may come from a member
    of the group it seats."""
    if group.kind != COUNCIL:
        return False
    op = event.fields.get("op")
    with crypto_errors():
        if op == "seat":
            linked = get_bytes(event.fields, "seat_group", 16)
        elif op == "remove" and event.fields.get("reason") == "review":
            # A seat holder under review, carried by a member of the seat's cell.
            linked = get_bytes(event.fields, "seat_group", 16)
        elif op in ("freeze", "unfreeze") and "link" in event.fields:
            # A cell's freeze of its seat holder, carried by a member of that cell.
            carried = unpack(event.fields.get("link"), "roster", event.network)
            linked = get_bytes(carried.fields, "group", 16)
        elif op == "link":
            motion = parse_motion(unpack(event.fields.get("motion"), "motion", event.network))
            linked = link_terms(motion)
        else:
            return False
    return await store.is_group_member(conn, linked, session.member_id)


async def my_epoch_secret(pool: Pool, session: Session, group_id: bytes, epoch: int) -> bytes:
    """The caller's own sealed box of the group's secret for ``epoch``.

    A former member has boxes only of the epochs they were in, all from
    before their removal.
    """
    async with transaction(pool) as conn:
        await readable_group(conn, session.member_id, group_id)
        sealed = await roster_store.epoch_secret(conn, group_id, epoch, session.member_id)
    if sealed is None:
        raise api_error(404, ErrorCode.NOT_FOUND, "no secret of that epoch for you")
    return sealed
