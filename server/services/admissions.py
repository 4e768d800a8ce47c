"""Admission certificates, vouches and blocks: vetting a newcomer, by the rule book's count.

The server applies the same rule book as the clients (crypto.vetting) to
refuse bad statements early and to keep its index current, but clients never
take its word: they get the signed statements (services/evidence.py) and
decide alone. Every write here locks the newcomer's member row first, so
concurrent vouches and blocks for one newcomer are decided one after another.

Splits move members out of a cell, so a voucher or the inviter may be gone
from the cell by the time a vetting is (re)checked. They still count where the
cell's roster log shows them on it when they spoke (docs/PROTOCOL.md §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from crypto.chains import Admission, parse_admission
from crypto.encoding import decode
from crypto.network import Genesis
from crypto.roster import GroupRules
from crypto.statements import Statement
from crypto.vetting import (
    CellMember,
    Verdict,
    check_verdict,
    evaluate,
    former_members_for_vetting,
    members_for_vetting,
    parse_verdict,
    roster_history,
)
from server.errors import ErrorCode
from server.services.auth import Session
from server.services.common import (
    api_error,
    as_cell_members,
    cell_view,
    check_fresh,
    crypto_errors,
    from_seconds,
    load_chains,
    load_genesis,
    member_status,
    parse_stored,
    parse_stored_admission,
    seconds,
    statement_from,
    verified_chain,
    with_membership_start,
)
from server.store import admissions as store
from server.store import groups as group_store
from server.store import invites as invite_store
from server.store import members as member_store
from server.store import roster as roster_store
from server.store.db import Connection, Pool, transaction
from server.store.members import MemberRow
from server.store.statements import StoredStatement, insert_statement


async def member_or(
    conn: Connection, member_id: bytes, status: int, code: ErrorCode, message: str
) -> MemberRow:
    """An admitted member, or the given error; a revoked one is refused as revoked."""
    member = await member_store.get_member(conn, member_id)
    if member is None or member.admitted_at is None:
        raise api_error(status, code, message)
    if member.revoked_at is not None:
        raise api_error(403, ErrorCode.REVOKED, "this member's key has been revoked")
    return member


async def settle(conn: Connection, genesis: Genesis, subject: MemberRow, now: datetime) -> str:
    """Apply the vetting rules to a newcomer and record the outcome; return their status."""
    if (
        subject.admitted_at is not None
        or subject.blocked_at is not None
        or subject.revoked_at is not None
    ):
        return member_status(subject, genesis, now)
    stored = await store.admission_of(conn, subject.member_id)
    if stored is None:
        return "pending"
    network = genesis.network_id
    with crypto_errors():
        admission = parse_stored_admission(stored, network)
        verdicts = [
            parse_verdict(parse_stored(s, verdict_type(s), network))
            for s in await store.verdicts_about(conn, subject.member_id)
        ]
        view = await cell_view(conn, network, admission.cell)
        members = members_for_vetting(
            admission, with_membership_start(view, genesis.statement.time), verdicts
        )
        members += await _former_for_vetting(conn, genesis, admission, verdicts, view)
        founding = await _is_founding(conn, network, admission.cell)
        outcome = evaluate(
            genesis.policy, admission, verdicts, members, seconds(now), founding=founding
        )
    if outcome.status == "admitted" and outcome.completes_at is not None:
        # Statement times are whole seconds from the members' clocks; never
        # record an admission before the join the server saw.
        at = max(from_seconds(outcome.completes_at), subject.joined_at)
        await member_store.mark_admitted(conn, subject.member_id, at)
    elif outcome.status == "blocked":
        await member_store.mark_blocked(conn, subject.member_id, now)
    refreshed = await member_store.get_member(conn, subject.member_id)
    return member_status(refreshed or subject, genesis, now)


async def _is_founding(conn: Connection, network: bytes, cell_id: bytes) -> bool:
    """Is this the stewards' founding cell (its create event names no split)?"""
    create = await group_store.group_statement(conn, cell_id)
    return create is not None and parse_stored(create, "roster", network).fields["origin"] is None


async def _former_for_vetting(
    conn: Connection,
    genesis: Genesis,
    admission: Admission,
    verdicts: Sequence[Verdict],
    view: list[tuple[MemberRow, list[Admission]]],
) -> list[CellMember]:
    """Voters who have left the admission cell, counted as its log shows (as clients do)."""
    network = genesis.network_id
    here = {member.member_id for member, _ in view}
    gone = voters(admission, verdicts) - here
    if not gone:
        return []
    chains = await load_chains(conn, network, sorted(gone))
    leavers = [
        CellMember(member_id, frozenset(a.issuer for a in chain))
        for member_id, chain in chains.items()
    ]
    events = [
        parse_stored(s, "roster", network)
        for s in await roster_store.roster_log(conn, admission.cell)
    ]
    if not events:
        return []
    history = roster_history(events, rules=GroupRules.of(genesis))
    return former_members_for_vetting(admission, leavers, verdicts, history)


def voters(admission: Admission, verdicts: Sequence[Verdict]) -> set[bytes]:
    """Everyone who spoke on a newcomer: the certificate's issuer and every vouch and block."""
    return {v.author for v in verdicts} | {admission.issuer}


def verdict_type(stored: StoredStatement) -> str:
    """Whether a stored verdict is a vouch or a block.

    Verdict rows hold vouches and blocks; the body names which, and
    verify_statement checks the signature under that very type.
    """
    fields = decode(stored.body)
    kind = fields.get("type") if isinstance(fields, dict) else None
    return kind if kind in ("vouch", "block") else "vouch"


async def admit(pool: Pool, session: Session, wire: Any, now: datetime) -> tuple[bytes, str]:
    """Record the inviter's certificate for their newcomer: (the newcomer, their status)."""
    async with transaction(pool) as conn:
        return await _admit(conn, session, wire, now)


async def _admit(conn: Connection, session: Session, wire: Any, now: datetime) -> tuple[bytes, str]:
    genesis = await load_genesis(conn, session.network_id)
    statement = statement_from({"admission": wire}, "admission", "admission", genesis.network_id)
    with crypto_errors():
        admission = parse_admission(statement)
    check_fresh(statement, now)
    issuer = await member_or(
        conn,
        statement.author,
        403,
        ErrorCode.NOT_A_MEMBER,
        "the certificate's issuer is not a member",
    )
    if issuer.member_id != session.member_id:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, "sign certificates with your own key")
    if issuer.cell_id != admission.cell:
        raise api_error(403, ErrorCode.NOT_IN_CELL, "you can admit newcomers only to your own cell")
    if member_status(issuer, genesis, now) == "probation":
        raise api_error(403, ErrorCode.IN_PROBATION, "members in probation can't admit newcomers")
    invite = await invite_store.get_invite(conn, admission.invite)
    if invite is None or invite.inviter_id != issuer.member_id:
        raise api_error(
            403,
            ErrorCode.NOT_INVITER,
            "only the member who invited this newcomer can admit them",
        )
    if invite.redeemed_by is None:
        raise api_error(404, ErrorCode.NOT_FOUND, "nobody has joined with this invite yet")
    subject = await member_store.get_member(conn, invite.redeemed_by, for_update=True)
    if subject is None:  # redeemed_by references members: only a damaged database
        raise api_error(404, ErrorCode.NOT_FOUND, "nobody has joined with this invite yet")
    join, _, _ = await member_store.join_evidence(conn, subject.member_id)
    join_id = None if join is None else parse_stored(join, "join", genesis.network_id).id
    if admission.subject != subject.member_id or admission.join != join_id:
        raise api_error(
            400,
            ErrorCode.KEY_MISMATCH,
            "the certificate is not over the key that joined with this invite",
        )
    if subject.cell_id != admission.cell:
        raise api_error(403, ErrorCode.NOT_IN_CELL, "the newcomer joined another cell")
    await verified_chain(conn, genesis, issuer)
    if (
        await store.admission_of(conn, subject.member_id) is not None
        or subject.blocked_at is not None
    ):
        raise api_error(409, ErrorCode.ALREADY_ADMITTED, "this newcomer already has a certificate")
    admitted = len(await member_store.cell_members(conn, admission.cell))
    if (
        admitted + await member_store.count_vetting_in_cell(conn, admission.cell)
        >= genesis.policy.cell_max
    ):
        raise api_error(
            409, ErrorCode.CELL_FULL, "your cell is full: split it first (`spokes cell split`)"
        )
    await store_statement(conn, statement, subject.member_id, admission.cell)
    await store.insert_admission(
        conn, subject.member_id, statement.id, issuer.member_id, admission.cell, now
    )
    return subject.member_id, await settle(conn, genesis, subject, now)


async def store_statement(
    conn: Connection, statement: Statement, subject: bytes, group: bytes | None
) -> None:
    """Store a statement about `subject`; 409 if the very same one is already there."""
    if not await insert_statement(conn, statement, subject=subject, group_id=group):
        raise api_error(409, ErrorCode.CONFLICT, "this statement was already recorded")


async def add_verdict(
    pool: Pool, session: Session, kind: Literal["vouch", "block"], wire: Any, now: datetime
) -> tuple[bytes, str]:
    """Record a vouch or a block for a newcomer of the caller's cell: (the newcomer, their status)."""
    async with transaction(pool) as conn:
        return await _add_verdict(conn, session, kind, wire, now)


async def _add_verdict(
    conn: Connection,
    session: Session,
    kind: Literal["vouch", "block"],
    wire: Any,
    now: datetime,
) -> tuple[bytes, str]:
    genesis = await load_genesis(conn, session.network_id)
    statement = statement_from({kind: wire}, kind, kind, genesis.network_id)
    with crypto_errors():
        verdict = parse_verdict(statement)
    check_fresh(statement, now)
    if statement.author != session.member_id:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, f"sign your {kind} with your own key")
    author = await member_or(
        conn,
        statement.author,
        403,
        ErrorCode.NOT_ADMITTED,
        "you are not an admitted member yet",
    )
    subject = await member_store.get_member(conn, verdict.subject, for_update=True)
    # A newcomer of another cell is answered exactly like one that does not exist.
    if subject is None or subject.cell_id != author.cell_id:
        raise api_error(404, ErrorCode.NOT_FOUND, "no such newcomer in your cell")
    # A vouch still counts after the vetting completed while the newcomer is
    # not on the cell's roster yet: the roster's add rule counts the members
    # on the roster when it is posted, which can be more than the vetting
    # counted (PROTOCOL §11), so another vouch may be what the add needs.
    on_roster = subject.cell_id is not None and await group_store.is_group_member(
        conn, subject.cell_id, subject.member_id
    )
    open_for_vouch = kind == "vouch" and subject.admitted_at is not None and not on_roster
    if (subject.admitted_at is not None or subject.blocked_at is not None) and not open_for_vouch:
        raise api_error(409, ErrorCode.VETTING_CLOSED, "this newcomer's vetting is over")
    stored = await store.admission_of(conn, subject.member_id)
    if stored is None:
        raise api_error(
            409,
            ErrorCode.NO_ADMISSION,
            "the inviter has not signed a certificate for this newcomer yet",
        )
    with crypto_errors():
        admission = parse_stored_admission(stored, genesis.network_id)
        view = await cell_view(conn, genesis.network_id, admission.cell)
        check_verdict(verdict, admission, as_cell_members(view))
    await verified_chain(conn, genesis, author)
    given = await store.verdicts_about(conn, subject.member_id)
    if author.member_id in {
        parse_stored(s, verdict_type(s), genesis.network_id).author for s in given
    }:
        raise api_error(
            409, ErrorCode.ALREADY_VOUCHED, "you already gave your word on this newcomer"
        )
    await store_statement(conn, statement, subject.member_id, admission.cell)
    if not await store.insert_verdict(
        conn, kind, subject.member_id, author.member_id, statement.id, now
    ):
        raise api_error(
            409, ErrorCode.ALREADY_VOUCHED, f"you already sent a {kind} for this newcomer"
        )
    return subject.member_id, await settle(conn, genesis, subject, now)
