"""Motions: opened and signed by group members, carried out by a roster event.

The server stores and relays motions and their signatures; whether a quorum
is reached is decided by crypto/ when the roster event that carries the
motion is appended (services/roster_ops.py), by the server and by every
client alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crypto.exclusion import expel_terms
from crypto.motion_rules import check_opening
from crypto.motions import parse_motion
from crypto.roster import GroupRules
from crypto.statements import Statement, get_bytes
from server.errors import ErrorCode
from server.services import notices
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    load_genesis,
    statement_from,
)
from server.services.groups import load_state, locked_group_for
from server.services.roster_ops import wire_bytes
from server.store import events as event_store
from server.store import groups as group_store
from server.store import motions as store
from server.store.db import Connection, Pool, transaction
from server.store.motions import OpenMotion
from server.store.statements import insert_statement


async def open_motion(
    pool: Pool, session: Session, group_id: bytes, wire: Any, now: datetime
) -> bytes:
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        await locked_group_for(conn, session, group_id)
        statement = statement_from({"motion": wire}, "motion", "motion", genesis.network_id)
        check_fresh(statement, now)
        if statement.author != session.member_id:
            raise api_error(400, ErrorCode.INVALID_STATEMENT, "sign your motions with your own key")
        state = await load_state(conn, genesis, group_id)
        with crypto_errors():
            motion = parse_motion(statement)
            # Refused now rather than when its last signature arrives: nobody
            # signs a motion that could never be carried out.
            check_opening(state, motion, GroupRules.of(genesis), statement.time)
        await _store(conn, statement, group_id)
        await store.insert_motion(conn, motion.id, group_id, motion.kind)
        await event_store.append_event(
            conn, group_id, "motion", session.member_id, wire_bytes(statement), now
        )
        # The subject of an expulsion is not asked to sign it; their sponsor
        # (the member who admitted them) is told, so that vetting answers for itself.
        subject = expel_terms(motion).member if motion.kind == "expel" else None
        await notices.enqueue_group(
            conn,
            group_id,
            notices.NoticeKind.MOTION,
            now,
            besides=[session.member_id, *([subject] if subject else [])],
        )
        if subject is not None:
            await notices.enqueue_sponsor(conn, subject, notices.NoticeKind.EXPULSION)
    return motion.id


async def sign_motion(
    pool: Pool, session: Session, motion_id: bytes, wire: Any, now: datetime
) -> bytes:
    """Record the caller's signature of an open motion; the motion's group."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        row = await store.get_motion(conn, motion_id)
        if row is None or not await group_store.is_group_member(
            conn, row.group_id, session.member_id
        ):
            raise api_error(404, ErrorCode.NOT_FOUND, "no such motion")
        group_id = row.group_id
        await locked_group_for(conn, session, group_id)
        if row.status != "open":
            raise api_error(409, ErrorCode.CONFLICT, "this motion has already been carried out")
        statement = statement_from(
            {"signature": wire}, "signature", "motion-sign", genesis.network_id
        )
        check_fresh(statement, now)
        if statement.author != session.member_id:
            raise api_error(400, ErrorCode.INVALID_STATEMENT, "sign with your own key")
        with crypto_errors():
            if get_bytes(statement.fields, "motion", 32) != motion_id:
                raise api_error(
                    400, ErrorCode.INVALID_STATEMENT, "this signature is for another motion"
                )
        await _store(conn, statement, group_id)
        if not await store.insert_signature(
            conn, motion_id, group_id, session.member_id, statement.id
        ):
            raise api_error(409, ErrorCode.CONFLICT, "you already signed this motion")
        await event_store.append_event(
            conn, group_id, "signature", session.member_id, wire_bytes(statement), now
        )
    return group_id


async def open_motions(pool: Pool, session: Session) -> list[OpenMotion]:
    """The open motions of the caller's groups, each with its signatures so far."""
    async with transaction(pool) as conn:
        await load_genesis(conn, session.network_id)
        return await store.open_motions(conn, session.member_id)


async def _store(conn: Connection, statement: Statement, group_id: bytes) -> None:
    if not await insert_statement(conn, statement, group_id=group_id):
        raise api_error(409, ErrorCode.CONFLICT, "this statement was already recorded")
