"""Revocations: one signed hash chain per network, carried by clients.

The rule: a revocation must extend the current head exactly (seq = the
chain's length, prev = its last id), checked under the network row's lock,
so two revocations racing can't fork the list; its grounds must verify
(crypto/exclusion.py: a steward's word, an expulsion's quorum, a
self-revocation published by its holder); the subject must be a member not
yet revoked, and their sessions and sockets end with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crypto.chains import NO_PREVIOUS, parse_revocation
from crypto.encoding import b64e
from crypto.exclusion import check_grounds
from crypto.network import Genesis
from crypto.roster_state import GroupRules
from crypto.statements import Statement
from server.errors import ErrorCode
from server.services.admissions import store_statement
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    load_genesis,
    statement_from,
)
from server.store import members as member_store
from server.store import revocations as store
from server.store import sessions as session_store
from server.store.db import Connection, Pool, transaction


async def revoke(
    pool: Pool, session: Session, wire: Any, now: datetime
) -> tuple[bytes, int, bytes]:
    """Append a steward's revocation, or a self-revocation its holder publishes, to the chain.

    (member, seq, statement id). An expulsion takes effect only with its
    group's roster event (roster_ops), which appends its revocation itself.
    """
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        statement = statement_from(
            {"revocation": wire}, "revocation", "revocation", genesis.network_id
        )
        check_fresh(statement, now)
        grounds = statement.fields.get("grounds", "steward")
        if grounds == "expelled":
            raise api_error(
                400,
                ErrorCode.INVALID_STATEMENT,
                "an expulsion takes effect with its group's roster event (spokes expel, sign)",
            )
        if grounds == "steward" and (
            statement.author != session.member_id or statement.author not in genesis.steward_ids
        ):
            raise api_error(403, ErrorCode.NOT_STEWARD, "only a steward can revoke a member")
        if statement.author != session.member_id:
            raise api_error(400, ErrorCode.INVALID_STATEMENT, "sign with your own key")
        subject, seq = await record_revocation(conn, genesis, statement, now)
    return subject, seq, statement.id


async def record_revocation(
    conn: Connection, genesis: Genesis, statement: Statement, now: datetime
) -> tuple[bytes, int]:
    """Append a revocation whose grounds verify at the chain's head; end the member's sessions.

    Inside the caller's transaction: the chain and the network row's lock
    are taken here. The member's sockets, on every instance, close when the
    transaction commits (a NOTIFY).
    """
    if statement.network != genesis.network_id:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, "a revocation of another network")
    with crypto_errors():  # its grounds checked once, with their own refusal codes
        revocation = parse_revocation(statement)
        check_grounds(statement, revocation.subject, GroupRules.of(genesis))
    length, head = await store.revocation_head(conn, genesis.network_id)
    subject = await member_store.get_member(conn, revocation.subject, for_update=True)
    if subject is None or subject.network_id != genesis.network_id:
        raise api_error(404, ErrorCode.NOT_FOUND, "no such member")
    if subject.revoked_at is not None:
        raise api_error(409, ErrorCode.ALREADY_REVOKED, "this member is already revoked")
    if revocation.seq != length or revocation.prev != (head or NO_PREVIOUS):
        raise api_error(
            409,
            ErrorCode.STALE_HEAD,
            f"the revocation list holds {length} revocation(s): sign the next one "
            "after its current head",
        )
    await store_statement(conn, statement, subject.member_id, None)
    await member_store.mark_revoked(conn, subject.member_id, now)
    await store.append_revocation(conn, genesis.network_id, length, subject.member_id, statement.id)
    # A revoked member's sessions end with the revocation, their sockets with its commit.
    await session_store.end_member_sessions(conn, subject.member_id, now)
    await session_store.announce_member_gone(conn, subject.member_id)
    return subject.member_id, length


async def in_chain(conn: Connection, statement: Statement) -> bool:
    """Is this revocation in the network's chain (a removal elsewhere carries one that is)?"""
    return await store.holds(conn, statement.id)


async def revocation_list(pool: Pool, session: Session) -> list[dict[str, str]]:
    """The network's revocation chain, for an admitted member (pending newcomers see none)."""
    async with transaction(pool) as conn:
        viewer = await member_store.get_member(conn, session.member_id)
        if viewer is None or viewer.admitted_at is None or viewer.revoked_at is not None:
            raise api_error(403, ErrorCode.NOT_ADMITTED, "you are not an admitted member yet")
        chain = await store.revocation_chain(conn, session.network_id)
    return [{"body": b64e(s.body), "sig": b64e(s.sig)} for s in chain]
