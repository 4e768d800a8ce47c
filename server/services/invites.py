"""Invites: creation within quota, fetching the sealed payload, single-use redemption.

Rules kept here: only an admitted member past probation invites, into their
own cell, within the policy's quota and expiry. Redemption first checks all
it can without the invite (the join and key bundle, their signatures and
times), so a malformed request gets the same answer for every lookup id; then
the proof, before anything about the invite, so a wrong proof looks exactly
like an unknown invite: nobody without the code learns whether a lookup id
exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.encoding import b64d, decode
from crypto.errors import CryptoError, InvalidStatement
from crypto.invites import MAX_SEALED_PAYLOAD, parse_invite, parse_join, verify_proof
from crypto.network import parse_key_bundle
from server.errors import ErrorCode
from server.services import notices
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    from_seconds,
    load_genesis,
    member_status,
    seconds,
    statement_from,
)
from server.store import invites as store
from server.store import members as member_store
from server.store.db import Connection, Pool, transaction
from server.store.invites import InviteRow
from server.store.members import MemberRow
from server.store.statements import insert_statement

MAX_PAYLOAD_BYTES = MAX_SEALED_PAYLOAD


@dataclass(frozen=True)
class Redeemed:
    member_id: bytes
    status: str


async def require_admitted(conn: Connection, session: Session) -> MemberRow:
    member = await member_store.get_member(conn, session.member_id)
    if member is None or member.admitted_at is None or member.revoked_at is not None:
        raise api_error(403, ErrorCode.NOT_ADMITTED, "you are not an admitted member yet")
    return member


async def create_invite(
    pool: Pool, session: Session, invite_wire: Any, payload: bytes, now: datetime
) -> tuple[bytes, datetime]:
    async with transaction(pool) as conn:
        return await _create_invite(conn, session, invite_wire, payload, now)


async def _create_invite(
    conn: Connection, session: Session, invite_wire: Any, payload: bytes, now: datetime
) -> tuple[bytes, datetime]:
    genesis = await load_genesis(conn, session.network_id)
    statement = statement_from({"invite": invite_wire}, "invite", "invite", genesis.network_id)
    with crypto_errors():
        invite = parse_invite(statement)
    check_fresh(statement, now)
    if statement.author != session.member_id:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, "sign your invites with your own key")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise api_error(400, ErrorCode.BAD_REQUEST, "the invite payload is too large")
    member = await require_admitted(conn, session)
    if member_status(member, genesis, now) == "probation":
        raise api_error(
            403,
            ErrorCode.IN_PROBATION,
            "members in probation can't invite yet: wait until it ends (`spokes status` shows when)",
        )
    if invite.cell != member.cell_id:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, "invites are for your own cell")
    if not 0 < invite.expires - seconds(now) <= genesis.policy.invite_expiry_seconds + 60:
        raise api_error(
            400, ErrorCode.INVALID_STATEMENT, "the invite's expiry is outside the network's policy"
        )
    # Lock the inviter's row so two concurrent creations can't both pass the quota.
    await member_store.get_member(conn, member.member_id, for_update=True)
    if await store.count_open_invites(conn, member.member_id, now) >= genesis.policy.invite_quota:
        raise api_error(
            409,
            ErrorCode.QUOTA_EXHAUSTED,
            "you have as many open invites as the policy allows: one must be used or expire "
            "before you make another",
        )
    if len(await member_store.cell_members(conn, invite.cell)) >= genesis.policy.cell_max:
        raise api_error(
            409, ErrorCode.CELL_FULL, "your cell is full: split it first (`spokes cell split`)"
        )
    await insert_statement(conn, statement, group_id=invite.cell)
    expires_at = from_seconds(invite.expires)
    if not await store.insert_invite(
        conn,
        invite.lookup_id,
        genesis.network_id,
        member.member_id,
        invite.cell,
        invite.proof_public_key,
        payload,
        statement.id,
        expires_at,
        now,
    ):
        raise api_error(409, ErrorCode.CONFLICT, "this invite already exists")
    return invite.lookup_id, expires_at


async def fetch_invite(pool: Pool, lookup_id: bytes, now: datetime) -> InviteRow:
    async with transaction(pool) as conn:
        invite = await store.get_invite(conn, lookup_id)
    if invite is None:
        raise _not_found()
    _check_open(invite, now)
    return invite


def _not_found() -> Exception:
    return api_error(
        404,
        ErrorCode.INVITE_NOT_FOUND,
        "no invite matches this code: check the code and the server",
    )


def _check_open(invite: InviteRow, now: datetime) -> None:
    if invite.redeemed_by is not None:
        raise api_error(
            410, ErrorCode.INVITE_USED, "this invite has been used: ask your inviter for a new one"
        )
    if invite.expires_at <= now:
        raise api_error(
            410, ErrorCode.INVITE_EXPIRED, "this invite has expired: ask your inviter for a new one"
        )


def _network_named(body: dict[str, Any], field: str) -> bytes:
    """The network a statement in the body names, read before it is verified.

    The statement is then verified against it, and after the proof the server
    checks it is the invite's network.
    """
    with crypto_errors():
        if field not in body:
            raise InvalidStatement(f"field {field!r} is required")
        try:
            fields = decode(b64d(body[field]["body"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidStatement("a statement is an object with body and sig") from exc
        network = fields.get("network") if isinstance(fields, dict) else None
        if not isinstance(network, bytes):
            raise InvalidStatement(f"the {field} statement names no network")
        return network


async def redeem(
    pool: Pool, lookup_id: bytes, body: dict[str, Any], proof: bytes, now: datetime
) -> Redeemed:
    # Everything that doesn't depend on the invite is checked before the lookup,
    # so a malformed request gets the same answer whether the lookup id exists
    # or not; after the lookup, the proof comes first.
    network = _network_named(body, "join")
    join_statement = statement_from(body, "join", "join", network)
    with crypto_errors():
        join = parse_join(join_statement)
    bundle_statement = statement_from(body, "key_bundle", "key-bundle", network)
    with crypto_errors():
        parse_key_bundle(bundle_statement, seconds(now))
    if (
        bundle_statement.author != join_statement.author
        or join.key_bundle_id != bundle_statement.id
    ):
        raise api_error(
            400,
            ErrorCode.INVALID_STATEMENT,
            "the key bundle must be the newcomer's own, named in the join",
        )
    for statement in (join_statement, bundle_statement):
        check_fresh(statement, now)
    async with transaction(pool) as conn:
        invite = await store.get_invite(conn, lookup_id, for_update=True)
        if invite is None:
            raise _not_found()
        try:
            verify_proof(invite.proof_public_key, join_statement, proof)
        except CryptoError:
            raise _not_found() from None
        if join.lookup_id != lookup_id:
            raise _not_found()
        if network != invite.network_id:
            raise api_error(400, ErrorCode.INVALID_STATEMENT, "the join belongs to another network")
        _check_open(invite, now)
        newcomer = join_statement.author
        if await member_store.member_exists_with_key(conn, join_statement.author_key.raw):
            raise api_error(409, ErrorCode.ALREADY_MEMBER, "this key already belongs to a member")
        for statement in (bundle_statement, join_statement):
            await insert_statement(conn, statement, subject=newcomer, group_id=invite.cell_id)
        await member_store.insert_member(
            conn,
            newcomer,
            network,
            join_statement.author_key.raw,
            bundle_statement.id,
            cell_id=invite.cell_id,
            inviter_id=invite.inviter_id,
            invite_lookup=lookup_id,
            join_statement=join_statement.id,
            join_proof=proof,
            joined_at=now,
            admitted_at=None,
            is_steward=False,
        )
        if not await store.mark_redeemed(conn, lookup_id, newcomer, now):
            raise api_error(
                410,
                ErrorCode.INVITE_USED,
                "this invite has been used: ask your inviter for a new one",
            )
        await notices.enqueue(conn, invite.inviter_id, notices.NoticeKind.INVITE_REDEEMED, now)
    return Redeemed(newcomer, "pending")
