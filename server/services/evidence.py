"""What a client is shown to decide a member's standing itself: evidence, the pending list, /me.

Clients never take the server's word for who is a member: they get the signed
statements and decide alone. Who sees what: a member sees themself and the
admitted members of their own cell; former members and roster logs go only
to an admitted viewer, and no more of the logs than the caller may see
(docs/PROTOCOL.md §7). A newcomer not yet admitted learns nothing of the cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.encoding import b32e, b64e
from crypto.network import Genesis
from crypto.statements import statement_id
from crypto.vetting import parse_verdict
from server.errors import ErrorCode
from server.services.admissions import member_or, settle, verdict_type, voters
from server.services.auth import Session
from server.services.common import (
    api_error,
    crypto_errors,
    load_genesis,
    member_status,
    parse_stored,
    parse_stored_admission,
    probation_ends,
    seconds,
)
from server.store import admissions as admission_store
from server.store import groups as group_store
from server.store import invites as invite_store
from server.store import members as store
from server.store import revocations as revocation_store
from server.store import roster as roster_store
from server.store.db import Connection, Pool, transaction
from server.store.members import MemberRow
from server.store.statements import StoredStatement, get_statement

# How many splits back a member's admission cell may lie; deeper is not followed.
MAX_SPLIT_DEPTH = 16


@dataclass(frozen=True)
class Standing:
    """A member as /me shows them: their row, status and when probation ends."""

    member: MemberRow
    status: str
    probation_ends_at: int | None


async def me(pool: Pool, session: Session, now: datetime) -> Standing:
    """The caller's own standing, their vetting settled first."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        member = await visible_member(conn, session, session.member_id)
        await settle(conn, genesis, member, now)
        member = await visible_member(conn, session, session.member_id)
    return Standing(member, member_status(member, genesis, now), probation_ends(member, genesis))


async def member_evidence(
    pool: Pool, session: Session, member_id: bytes, now: datetime
) -> dict[str, Any]:
    """A member's evidence, for themself or an admitted cellmate (404 for anyone else)."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        subject = await visible_member(conn, session, member_id)
        return await evidence(conn, genesis, subject, session.member_id, now)


async def pending(pool: Pool, session: Session, now: datetime) -> list[dict[str, Any]]:
    """The evidence of every newcomer still being vetted in the caller's cell."""
    async with transaction(pool) as conn:
        genesis = await load_genesis(conn, session.network_id)
        viewer = await member_or(
            conn,
            session.member_id,
            403,
            ErrorCode.NOT_ADMITTED,
            "you are not an admitted member yet",
        )
        result = []
        for row in await store.pending_in_cell(conn, _cell_of(viewer)):
            locked = await store.get_member(conn, row.member_id, for_update=True)
            item = await evidence(conn, genesis, locked or row, session.member_id, now)
            if item["status"] == "pending":
                result.append(item)
    return result


async def visible_member(conn: Connection, session: Session, member_id: bytes) -> MemberRow:
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
        raise api_error(404, ErrorCode.NOT_FOUND, "no such member")
    return subject


async def evidence(
    conn: Connection, genesis: Genesis, subject: MemberRow, viewer: bytes, now: datetime
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
        row = await invite_store.get_invite(conn, subject.invite_lookup)
        invite = None if row is None else await get_statement(conn, row.statement_id)
    admission = await admission_store.admission_of(conn, subject.member_id)
    asker = await store.get_member(conn, viewer)
    # The subject's own statements: what anyone allowed to ask is shown.
    own = {
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
    }
    if asker is None or asker.admitted_at is None:
        # Only the subject themself gets here unadmitted (visible_member). Until
        # vetting completes they learn nothing of the cell: no member id, chain,
        # verdict (their authors are members), roster or revocation; only their
        # own statements, and their certificate, whose issuer invited them.
        return {
            **own,
            "chain": [],
            "verdicts": [],
            "cell": None,
            "former_members": [],
            "cell_history": [],
            "revocations": [],
        }
    cell_id = _cell_of(subject)
    group = await group_store.group_statement(conn, cell_id)
    verdicts = await admission_store.verdicts_about(conn, subject.member_id)
    cellmates = await store.cell_members(conn, cell_id)
    here = {member.member_id for member in cellmates}
    gone: list[bytes] = []
    if admission is not None:
        with crypto_errors():
            certificate = parse_stored_admission(admission, network)
            spoke = voters(
                certificate,
                [parse_verdict(parse_stored(s, verdict_type(s), network)) for s in verdicts],
            )
        gone = [m for m in sorted(spoke) if m not in here and m != subject.member_id]
    # Every chain shown, the inviter's, the cell's and former voters', in one query.
    inviter = [] if subject.inviter_id is None else [subject.inviter_id]
    chains = await admission_store.chains_of(
        conn, [*inviter, *(member.member_id for member in cellmates), *gone]
    )
    chain = chains[inviter[0]] if inviter else []
    members = [
        {
            "member_id": b32e(member.member_id),
            "chain": [_wire(s) for s in chains[member.member_id]],
            "admitted_at": seconds(member.admitted_at) if member.admitted_at else None,
        }
        for member in cellmates
    ]
    former: list[dict[str, Any]] = [
        {"member_id": b32e(member_id), "chain": [_wire(s) for s in chains[member_id]]}
        for member_id in gone
    ]
    history: list[list[dict[str, str] | None]] = []
    logs: list[list[StoredStatement]] = []
    # Whether the subject was moved here by a split: then the last of `logs`
    # is the log of the cell this one split from, cut at that split.
    moved = False
    if admission is not None:
        logs = await _cell_history(conn, network, cell_id, certificate.cell, group)
        history = [[_wire(s) for s in log] for log in logs]
        moved = bool(logs) and cell_id != certificate.cell
    elif join is None and asker is not None and asker.admitted_at is not None:
        # A steward moved by splits: the logs from the founding cell down, so
        # that their client can follow each split it was moved by.
        logs = await _cell_history(conn, network, cell_id, None, group)
        history = [[_wire(s) for s in log] for log in logs]
        moved = bool(logs)
    if asker is not None and asker.admitted_at is not None and not moved:
        # Whoever may read this cell may see how it was made: the log of the
        # cell it split from, cut at that split, so that each member's client
        # checks its cell came from a real split (PROTOCOL §11). A moved
        # subject's history above holds it already (`_cell_history`'s first step).
        parent = await _parent_log(conn, network, group)
        if parent and statement_id(parent[0].body) not in {statement_id(g[0].body) for g in logs}:
            history.append([_wire(s) for s in parent])
    revocations = await revocation_store.revocation_chain(conn, network)
    return {
        **own,
        "chain": [_wire(s) for s in chain],
        "verdicts": [_wire(s) for s in verdicts],
        "cell": {"group": _wire(group), "members": members},
        "former_members": former,
        "cell_history": history,
        "revocations": [_wire(s) for s in revocations],
    }


async def _cell_history(
    conn: Connection,
    network: bytes,
    cell_id: bytes,
    admission_cell: bytes | None,
    created: StoredStatement | None,
) -> list[list[StoredStatement]]:
    """The roster logs from the admission cell down to (not including) `cell_id`.

    The caller is an admitted member of `cell_id`. If that is the admission
    cell, they get its whole log: it is their own cell's. Otherwise each
    earlier cell's log is cut just after the split event that created the next
    cell on the way: what that split's moved members had seen, and all a
    client needs, since the member was vetted before they moved. Nothing of
    what the old cell did later is shown to anyone here. With no admission
    cell (a steward), the path runs up to the founding cell. `created` is
    `cell_id`'s create event, as the caller read it.
    """
    if cell_id == admission_cell:
        return [await roster_store.roster_log(conn, cell_id)]
    logs: list[list[StoredStatement]] = []
    newer = cell_id
    for _ in range(MAX_SPLIT_DEPTH):
        create = created if newer == cell_id else await group_store.group_statement(conn, newer)
        origin = (
            None if create is None else parse_stored(create, "roster", network).fields.get("origin")
        )
        older = None
        if isinstance(origin, bytes):
            older = await roster_store.group_of_roster_event(conn, origin)
        if admission_cell is None and origin is None:
            return logs  # reached the founding cell
        if origin is None or older is None:
            return []  # not moved here from the admission cell: the client will refuse
        log = await roster_store.roster_log(conn, older)
        cut = next((i for i, s in enumerate(log) if statement_id(s.body) == origin), len(log) - 1)
        logs.insert(0, log[: cut + 1])
        if older == admission_cell:
            return logs
        newer = older
    return []


async def _parent_log(
    conn: Connection, network: bytes, create: StoredStatement | None
) -> list[StoredStatement]:
    """The log of the cell whose create event is `create` split from, up to that split (or none)."""
    origin = (
        None if create is None else parse_stored(create, "roster", network).fields.get("origin")
    )
    if not isinstance(origin, bytes):
        return []
    older = await roster_store.group_of_roster_event(conn, origin)
    if older is None:
        return []
    log = await roster_store.roster_log(conn, older)
    cut = next((i for i, s in enumerate(log) if statement_id(s.body) == origin), None)
    return [] if cut is None else log[: cut + 1]


def _cell_of(member: MemberRow) -> bytes:
    # Every member of part 1 belongs to a cell; a NULL cell is a member
    # being moved, whom nobody may look at meanwhile.
    if member.cell_id is None:
        raise api_error(404, ErrorCode.NOT_FOUND, "no such member")
    return member.cell_id


def _wire(stored: StoredStatement | None) -> dict[str, str] | None:
    return None if stored is None else {"body": b64e(stored.body), "sig": b64e(stored.sig)}
