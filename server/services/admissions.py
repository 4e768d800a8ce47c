"""Admission certificates, vouches, blocks, revocations, and the evidence clients verify.

The server applies the same rule book as the clients (crypto.vetting) to
refuse bad statements early and to keep its index current, but clients never
take its word: they get the signed statements (`evidence`) and decide alone.
Every write here locks the newcomer's member row first, so concurrent vouches
and blocks for one newcomer are decided one after another.

Splits move members out of a cell, so a voucher or the inviter may be gone
from the cell by the time a vetting is (re)checked. They still count where the
cell's roster log shows them on it when they spoke; `evidence` hands clients
those former members and the roster logs to check that themselves, and no
more of the logs than the caller may see (docs/PROTOCOL.md §7).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from crypto.chains import NO_PREVIOUS, Admission, parse_admission, parse_revocation
from crypto.encoding import b32e, b64e, decode
from crypto.network import Genesis
from crypto.roster import GroupRules
from crypto.statements import Statement, statement_id
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
from server.services.auth import Session
from server.services.common import (
    api_error,
    as_cell_members,
    cell_view,
    check_fresh,
    crypto_errors,
    from_seconds,
    load_chain,
    load_genesis,
    member_status,
    parse_stored,
    seconds,
    statement_from,
    verified_chain,
    with_membership_start,
)
from server.store import groups as group_store
from server.store import membership as store
from server.store.db import Connection

# How many splits back a member's admission cell may lie; deeper is not followed.
MAX_SPLIT_DEPTH = 16


async def _member_or(
    conn: Connection, member_id: bytes, status: int, code: str, message: str
) -> store.MemberRow:
    member = await store.get_member(conn, member_id)
    if member is None or member.admitted_at is None:
        raise api_error(status, code, message)
    if member.revoked_at is not None:
        raise api_error(403, "revoked", "this member's key has been revoked")
    return member


async def settle(
    conn: Connection, genesis: Genesis, subject: store.MemberRow, now: datetime
) -> str:
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
        admission = parse_admission(parse_stored(stored, "admission", network))
        verdicts = [
            parse_verdict(parse_stored(s, _type_of(s), network))
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
        await store.mark_admitted(conn, subject.member_id, at)
    elif outcome.status == "blocked":
        await store.mark_blocked(conn, subject.member_id, now)
    refreshed = await store.get_member(conn, subject.member_id)
    return member_status(refreshed or subject, genesis, now)


async def _is_founding(conn: Connection, network: bytes, cell_id: bytes) -> bool:
    """Is this the stewards' founding cell (its create event names no split)?"""
    create = await store.group_statement(conn, cell_id)
    return create is not None and parse_stored(create, "roster", network).fields["origin"] is None


async def _former_for_vetting(
    conn: Connection,
    genesis: Genesis,
    admission: Admission,
    verdicts: Sequence[Verdict],
    view: list[tuple[store.MemberRow, list[Admission]]],
) -> list[CellMember]:
    """Voters who have left the admission cell, counted as its log shows (as clients do)."""
    network = genesis.network_id
    here = {member.member_id for member, _ in view}
    gone = _voters(admission, verdicts) - here
    if not gone:
        return []
    leavers = []
    for member_id in sorted(gone):
        chain = await load_chain(conn, network, member_id)
        leavers.append(CellMember(member_id, frozenset(a.issuer for a in chain)))
    events = [
        parse_stored(s, "roster", network)
        for s in await group_store.roster_log(conn, admission.cell)
    ]
    if not events:
        return []
    history = roster_history(events, rules=GroupRules.of(genesis))
    return former_members_for_vetting(admission, leavers, verdicts, history)


def _voters(admission: Admission, verdicts: Sequence[Verdict]) -> set[bytes]:
    return {v.author for v in verdicts} | {admission.issuer}


def _type_of(stored: store.StoredStatement) -> str:
    # Verdict rows hold vouches and blocks; the body names which, and
    # verify_statement checks the signature under that very type.
    fields = decode(stored.body)
    kind = fields.get("type") if isinstance(fields, dict) else None
    return kind if kind in ("vouch", "block") else "vouch"


async def admit(conn: Connection, session: Session, wire: Any, now: datetime) -> tuple[bytes, str]:
    genesis = await load_genesis(conn, session.network_id)
    statement = statement_from({"admission": wire}, "admission", "admission", genesis.network_id)
    with crypto_errors():
        admission = parse_admission(statement)
    check_fresh(statement, now)
    issuer = await _member_or(
        conn, statement.author, 403, "not_a_member", "the certificate's issuer is not a member"
    )
    if issuer.member_id != session.member_id:
        raise api_error(400, "invalid_statement", "sign certificates with your own key")
    if issuer.cell_id != admission.cell:
        raise api_error(403, "not_in_cell", "you can admit newcomers only to your own cell")
    if member_status(issuer, genesis, now) == "probation":
        raise api_error(403, "in_probation", "members in probation can't admit newcomers")
    invite = await store.get_invite(conn, admission.invite)
    if invite is None or invite.inviter_id != issuer.member_id:
        raise api_error(
            403, "not_inviter", "only the member who invited this newcomer can admit them"
        )
    if invite.redeemed_by is None:
        raise api_error(404, "not_found", "nobody has joined with this invite yet")
    subject = await store.get_member(conn, invite.redeemed_by, for_update=True)
    if subject is None:  # redeemed_by references members: only a damaged database
        raise api_error(404, "not_found", "nobody has joined with this invite yet")
    join, _, _ = await store.join_evidence(conn, subject.member_id)
    join_id = None if join is None else parse_stored(join, "join", genesis.network_id).id
    if admission.subject != subject.member_id or admission.join != join_id:
        raise api_error(
            400, "key_mismatch", "the certificate is not over the key that joined with this invite"
        )
    if subject.cell_id != admission.cell:
        raise api_error(403, "not_in_cell", "the newcomer joined another cell")
    await verified_chain(conn, genesis, issuer)
    if (
        await store.admission_of(conn, subject.member_id) is not None
        or subject.blocked_at is not None
    ):
        raise api_error(409, "already_admitted", "this newcomer already has a certificate")
    admitted = len(await store.cell_members(conn, admission.cell))
    if (
        admitted + await store.count_vetting_in_cell(conn, admission.cell)
        >= genesis.policy.cell_max
    ):
        raise api_error(409, "cell_full", "your cell is full: split it first (`spokes cell split`)")
    await _store_statement(conn, genesis, statement, subject.member_id, admission.cell)
    await store.insert_admission(
        conn, subject.member_id, statement.id, issuer.member_id, admission.cell, now
    )
    return subject.member_id, await settle(conn, genesis, subject, now)


async def _store_statement(
    conn: Connection, genesis: Genesis, statement: Statement, subject: bytes, group: bytes | None
) -> None:
    if not await store.insert_statement(
        conn,
        statement.id,
        genesis.network_id,
        statement.type,
        statement.author,
        statement.body,
        statement.signature,
        subject=subject,
        group_id=group,
    ):
        raise api_error(409, "conflict", "this statement was already recorded")


async def add_verdict(
    conn: Connection, session: Session, kind: str, wire: Any, now: datetime
) -> tuple[bytes, str]:
    genesis = await load_genesis(conn, session.network_id)
    statement = statement_from({kind: wire}, kind, kind, genesis.network_id)
    with crypto_errors():
        verdict = parse_verdict(statement)
    check_fresh(statement, now)
    if statement.author != session.member_id:
        raise api_error(400, "invalid_statement", f"sign your {kind} with your own key")
    author = await _member_or(
        conn, statement.author, 403, "not_admitted", "you are not an admitted member yet"
    )
    subject = await store.get_member(conn, verdict.subject, for_update=True)
    # A newcomer of another cell is answered exactly like one that does not exist.
    if subject is None or subject.cell_id != author.cell_id:
        raise api_error(404, "not_found", "no such newcomer in your cell")
    if subject.admitted_at is not None or subject.blocked_at is not None:
        raise api_error(409, "vetting_closed", "this newcomer's vetting is over")
    stored = await store.admission_of(conn, subject.member_id)
    if stored is None:
        raise api_error(
            409, "no_admission", "the inviter has not signed a certificate for this newcomer yet"
        )
    with crypto_errors():
        admission = parse_admission(parse_stored(stored, "admission", genesis.network_id))
        view = await cell_view(conn, genesis.network_id, admission.cell)
        check_verdict(verdict, admission, as_cell_members(view))
    await verified_chain(conn, genesis, author)
    await _store_statement(conn, genesis, statement, subject.member_id, admission.cell)
    if not await store.insert_verdict(
        conn, kind, subject.member_id, author.member_id, statement.id, now
    ):
        raise api_error(409, "already_vouched", f"you already sent a {kind} for this newcomer")
    return subject.member_id, await settle(conn, genesis, subject, now)


async def revoke(
    conn: Connection, session: Session, wire: Any, now: datetime
) -> tuple[bytes, int, bytes]:
    """Append a steward's revocation to the network's chain: (member, seq, statement id).

    It must extend the current head exactly (seq = the chain's length, prev =
    its last id), checked under the network row's lock, so two stewards
    racing can't fork the list; the subject must be a member not yet revoked.
    """
    genesis = await load_genesis(conn, session.network_id)
    statement = statement_from({"revocation": wire}, "revocation", "revocation", genesis.network_id)
    check_fresh(statement, now)
    if statement.author != session.member_id or statement.author not in genesis.steward_ids:
        raise api_error(403, "not_steward", "only a steward can revoke a member")
    with crypto_errors():
        revocation = parse_revocation(statement, genesis)
    length, head = await store.revocation_head(conn, genesis.network_id)
    subject = await store.get_member(conn, revocation.subject, for_update=True)
    if subject is None or subject.network_id != genesis.network_id:
        raise api_error(404, "not_found", "no such member")
    if subject.revoked_at is not None:
        raise api_error(409, "already_revoked", "this member is already revoked")
    if revocation.seq != length or revocation.prev != (head or NO_PREVIOUS):
        raise api_error(
            409,
            "stale_head",
            f"the revocation list holds {length} revocation(s): sign the next one "
            "after its current head",
        )
    await _store_statement(conn, genesis, statement, subject.member_id, None)
    await store.mark_revoked(
        conn, subject.member_id, statement.id, now, network_id=genesis.network_id, seq=length
    )
    return subject.member_id, length, statement.id


async def revocation_list(conn: Connection, session: Session) -> list[dict[str, str] | None]:
    """The network's revocation chain, for an admitted member (pending newcomers see none)."""
    viewer = await store.get_member(conn, session.member_id)
    if viewer is None or viewer.admitted_at is None or viewer.revoked_at is not None:
        raise api_error(403, "not_admitted", "you are not an admitted member yet")
    return [_wire(s) for s in await store.revocation_chain(conn, session.network_id)]


async def visible_member(conn: Connection, session: Session, member_id: bytes) -> store.MemberRow:
    """The member, if the caller may see them: themself, or an admitted cellmate."""
    subject = await store.get_member(conn, member_id, for_update=True)
    if subject is not None and subject.member_id == session.member_id:
        return subject
    viewer = await store.get_member(conn, session.member_id)
    if (
        subject is None
        or viewer is None
        or viewer.admitted_at is None
        or viewer.revoked_at is not None
        or subject.cell_id != viewer.cell_id
    ):
        raise api_error(404, "not_found", "no such member")
    return subject


async def evidence(
    conn: Connection, genesis: Genesis, subject: store.MemberRow, viewer: bytes, now: datetime
) -> dict[str, Any]:
    """Every signed statement a client needs to decide a member's standing itself.

    `viewer` is who asks: the subject or an admitted member of their cell
    (`visible_member`). A subject not yet admitted, asking about themself, gets
    only their own statements (`"cell": null`, no chains, verdicts, former
    members, roster logs or revocations). Former members and roster logs go
    only to an admitted viewer; see `_cell_history` for how much of each log.
    """
    status = await settle(conn, genesis, subject, now)
    network = genesis.network_id
    join, proof, bundle = await store.join_evidence(conn, subject.member_id)
    invite = None
    if subject.invite_lookup is not None:
        row = await store.get_invite(conn, subject.invite_lookup)
        invite = None if row is None else await store.get_statement(conn, row.statement_id)
    admission = await store.admission_of(conn, subject.member_id)
    asker = await store.get_member(conn, viewer)
    if asker is None or asker.admitted_at is None:
        # Only the subject themself gets here unadmitted (visible_member). Until
        # vetting completes they learn nothing of the cell: no member id, chain,
        # verdict (their authors are members), roster or revocation; only their
        # own statements, and their certificate, whose issuer invited them.
        return {
            "member_id": b32e(subject.member_id),
            "network_id": b32e(network),
            "cell_id": b32e(_cell_of(subject)),
            "joined_at": seconds(subject.joined_at),
            "status": status,
            "key_bundle": _wire(bundle),
            "join": _wire(join),
            "proof": None if proof is None else b64e(proof),
            "invite": _wire(invite),
            "admission": _wire(admission),
            "chain": [],
            "verdicts": [],
            "cell": None,
            "former_members": [],
            "cell_history": [],
            "revocations": [],
        }
    chain = [] if subject.inviter_id is None else await store.chain_of(conn, subject.inviter_id)
    cell_id = _cell_of(subject)
    group = await store.group_statement(conn, cell_id)
    verdicts = await store.verdicts_about(conn, subject.member_id)
    members = []
    for member in await store.cell_members(conn, cell_id):
        members.append(
            {
                "member_id": b32e(member.member_id),
                "chain": [_wire(s) for s in await store.chain_of(conn, member.member_id)],
                "admitted_at": seconds(member.admitted_at) if member.admitted_at else None,
            }
        )
    former: list[dict[str, Any]] = []
    history: list[list[dict[str, str] | None]] = []
    if admission is not None and asker is not None and asker.admitted_at is not None:
        with crypto_errors():
            certificate = parse_admission(parse_stored(admission, "admission", network))
            voters = _voters(
                certificate,
                [parse_verdict(parse_stored(s, _type_of(s), network)) for s in verdicts],
            )
        here = {item["member_id"] for item in members}
        for member_id in sorted(voters):
            if b32e(member_id) not in here and member_id != subject.member_id:
                chain_of = await store.chain_of(conn, member_id)
                former.append({"member_id": b32e(member_id), "chain": [_wire(s) for s in chain_of]})
        logs = await _cell_history(conn, network, cell_id, certificate.cell)
        history = [[_wire(s) for s in log] for log in logs]
    elif join is None and asker is not None and asker.admitted_at is not None:
        # A steward moved by splits: the logs from the founding cell down, so
        # that their client can follow each split it was moved by.
        logs = await _cell_history(conn, network, cell_id, None)
        history = [[_wire(s) for s in log] for log in logs]
    revocations = await store.revocation_chain(conn, network)
    return {
        "member_id": b32e(subject.member_id),
        "network_id": b32e(network),
        "cell_id": b32e(cell_id),
        "joined_at": seconds(subject.joined_at),
        "status": status,
        "key_bundle": _wire(bundle),
        "join": _wire(join),
        "proof": None if proof is None else b64e(proof),
        "invite": _wire(invite),
        "admission": _wire(admission),
        "chain": [_wire(s) for s in chain],
        "verdicts": [_wire(s) for s in verdicts],
        "cell": {"group": _wire(group), "members": members},
        "former_members": former,
        "cell_history": history,
        "revocations": [_wire(s) for s in revocations],
    }


async def _cell_history(
    conn: Connection, network: bytes, cell_id: bytes, admission_cell: bytes | None
) -> list[list[store.StoredStatement]]:
    """The roster logs from the admission cell down to (not including) `cell_id`.

    The caller is an admitted member of `cell_id`. If that is the admission
    cell, they get its whole log: it is their own cell's. Otherwise each
    earlier cell's log is cut just after the split event that created the next
    cell on the way: what that split's moved members had seen, and all a
    client needs, since the member was vetted before they moved. Nothing of
    what the old cell did later is shown to anyone here. With no admission
    cell (a steward), the path runs up to the founding cell.
    """
    if cell_id == admission_cell:
        return [await group_store.roster_log(conn, cell_id)]
    logs: list[list[store.StoredStatement]] = []
    newer = cell_id
    for _ in range(MAX_SPLIT_DEPTH):
        create = await store.group_statement(conn, newer)
        origin = (
            None if create is None else parse_stored(create, "roster", network).fields.get("origin")
        )
        older = None
        if isinstance(origin, bytes):
            older = await group_store.group_of_roster_event(conn, origin)
        if admission_cell is None and origin is None:
            return logs  # reached the founding cell
        if origin is None or older is None:
            return []  # not moved here from the admission cell: the client will refuse
        log = await group_store.roster_log(conn, older)
        cut = next((i for i, s in enumerate(log) if statement_id(s.body) == origin), len(log) - 1)
        logs.insert(0, log[: cut + 1])
        if older == admission_cell:
            return logs
        newer = older
    return []


def _cell_of(member: store.MemberRow) -> bytes:
    # Every member of part 1 belongs to a cell; a NULL cell is a member
    # being moved, whom nobody may look at meanwhile.
    if member.cell_id is None:
        raise api_error(404, "not_found", "no such member")
    return member.cell_id


def _wire(stored: store.StoredStatement | None) -> dict[str, str] | None:
    return None if stored is None else {"body": b64e(stored.body), "sig": b64e(stored.sig)}


async def pending(conn: Connection, session: Session, now: datetime) -> list[dict[str, Any]]:
    genesis = await load_genesis(conn, session.network_id)
    viewer = await _member_or(
        conn, session.member_id, 403, "not_admitted", "you are not an admitted member yet"
    )
    result = []
    for row in await store.pending_in_cell(conn, _cell_of(viewer)):
        locked = await store.get_member(conn, row.member_id, for_update=True)
        item = await evidence(conn, genesis, locked or row, session.member_id, now)
        if item["status"] == "pending":
            result.append(item)
    return result
