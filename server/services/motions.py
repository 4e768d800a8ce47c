"""Motions: opened and signed by group members, carried out by a roster event.

The server stores and relays motions and their signatures; whether a quorum
is reached is decided by crypto.motions when the roster event that carries
the motion is appended (services/groups.py), by the server and by every
client alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.encoding import encode
from crypto.motions import parse_motion, required_signers
from crypto.network import Genesis
from crypto.roster import GroupRules, check_split_sizes
from crypto.statements import Statement, get_bytes
from server.services.auth import Session
from server.services.common import api_error, check_fresh, crypto_errors, statement_from
from server.services.groups import load_state, locked_group_for
from server.store import events as event_store
from server.store import membership as members_store
from server.store.db import Connection


@dataclass(frozen=True)
class OpenMotion:
    motion: members_store.StoredStatement
    group_id: bytes
    kind: str
    signatures: list[members_store.StoredStatement]


async def open_motion(
    conn: Connection, genesis: Genesis, session: Session, group_id: bytes, wire: Any, now: datetime
) -> bytes:
    await locked_group_for(conn, session, group_id)
    statement = statement_from({"motion": wire}, "motion", "motion", genesis.network_id)
    check_fresh(statement, now)
    if statement.author != session.member_id:
        raise api_error(400, "invalid_statement", "sign your motions with your own key")
    state = await load_state(conn, genesis, group_id)
    with crypto_errors():
        motion = parse_motion(statement)
        moving = required_signers(state, motion)
        # Refused now rather than when its last signature arrives: nobody
        # signs a split that could never be carried out.
        check_split_sizes(GroupRules.of(genesis), len(state.members) - len(moving), len(moving))
    await _store(conn, genesis, statement, group_id)
    await conn.execute(
        "INSERT INTO motions (motion_id, group_id, kind) VALUES ($1, $2, $3)",
        motion.id,
        group_id,
        motion.kind,
    )
    await event_store.append_event(
        conn, group_id, "motion", session.member_id, _bytes(statement), now
    )
    return motion.id


async def sign_motion(
    conn: Connection, genesis: Genesis, session: Session, motion_id: bytes, wire: Any, now: datetime
) -> bytes:
    row = await conn.fetchrow(
        "SELECT group_id, status FROM motions WHERE motion_id = $1", motion_id
    )
    group_id = None if row is None else bytes(row["group_id"])
    if group_id is None or not await event_store.is_group_member(conn, group_id, session.member_id):
        raise api_error(404, "not_found", "no such motion")
    await locked_group_for(conn, session, group_id)
    if row["status"] != "open":
        raise api_error(409, "conflict", "this motion has already been carried out")
    statement = statement_from({"signature": wire}, "signature", "motion-sign", genesis.network_id)
    check_fresh(statement, now)
    if statement.author != session.member_id:
        raise api_error(400, "invalid_statement", "sign with your own key")
    with crypto_errors():
        if get_bytes(statement.fields, "motion", 32) != motion_id:
            raise api_error(400, "invalid_statement", "this signature is for another motion")
    await _store(conn, genesis, statement, group_id)
    status = await conn.execute(
        """INSERT INTO motion_signatures (motion_id, signer, statement_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING""",
        motion_id,
        session.member_id,
        statement.id,
    )
    if status != "INSERT 0 1":
        raise api_error(409, "conflict", "you already signed this motion")
    await event_store.append_event(
        conn, group_id, "signature", session.member_id, _bytes(statement), now
    )
    return group_id


async def open_motions(conn: Connection, genesis: Genesis, session: Session) -> list[OpenMotion]:
    rows = await conn.fetch(
        """SELECT m.motion_id, m.group_id, m.kind, s.body, s.sig FROM motions m
           JOIN group_members g ON g.group_id = m.group_id AND g.member_id = $1
           JOIN statements s ON s.statement_id = m.motion_id
           WHERE m.status = 'open' ORDER BY m.created_at""",
        session.member_id,
    )
    result = []
    for row in rows:
        signatures = await conn.fetch(
            """SELECT s.body, s.sig FROM motion_signatures ms JOIN statements s ON s.statement_id = ms.statement_id
               WHERE ms.motion_id = $1 ORDER BY s.statement_id""",
            row["motion_id"],
        )
        result.append(
            OpenMotion(
                members_store.StoredStatement(row["body"], row["sig"]),
                bytes(row["group_id"]),
                row["kind"],
                [members_store.StoredStatement(s["body"], s["sig"]) for s in signatures],
            )
        )
    return result


async def _store(conn: Connection, genesis: Genesis, statement: Statement, group_id: bytes) -> None:
    if not await members_store.insert_statement(
        conn,
        statement.id,
        genesis.network_id,
        statement.type,
        statement.author,
        statement.body,
        statement.signature,
        group_id=group_id,
    ):
        raise api_error(409, "conflict", "this statement was already recorded")


def _bytes(statement: Statement) -> bytes:
    return encode({"body": statement.body, "sig": statement.signature})
