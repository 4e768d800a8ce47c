"""Turn the server's Evidence into verified crypto objects and a status.

The rule it keeps: the client decides where a member stands from signed
statements alone, against the genesis it pinned. The server's "status"
field is never read. Any statement that does not verify, any chain that does
not reach the genesis, any verdict that breaks the rule book raises
VerificationFailed: the caller shows that, not a guess.

Which cell members count when a newcomer's vetting is re-evaluated later:
the cell grows after an admission completes, and counting later members
would make a finished admission look unfinished. So the vetting is
evaluated against the members whose signed membership began no later than
the newcomer's certificate (stewards: always), plus any cell member who
gave a verdict on it (they were in the cell when they did).

Splits move members between cells, so a voucher (or the inviter) may have
left the newcomer's cell, and a moved member's certificate names the cell
they left. Neither is taken on the server's word: a member who left counts
only where the admission cell's own signed roster log shows them on its
roster when they spoke, and a moved member's certificate is accepted only
through the split events, in those logs, that moved them to their cell now.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from client.api import CellMemberWire, Evidence, Wire
from client.errors import ClientError, VerificationFailed
from crypto.chains import (
    Admission,
    Revocation,
    RevocationList,
    parse_admission,
    verify_chain,
    verify_revocation_list,
)
from crypto.encoding import b32d, b32e, b64d, decode
from crypto.errors import CryptoError
from crypto.invites import Invite, Join, parse_invite, parse_join, verify_proof
from crypto.keys import IdentityPublicKey, member_id_text
from crypto.network import (
    Genesis,
    KeyBundle,
    parse_key_bundle,
)
from crypto.roster import GroupCreation, GroupRules, parse_group_creation
from crypto.statements import Statement, from_wire
from crypto.vetting import (
    CellMember,
    Outcome,
    RosterHistory,
    Verdict,
    evaluate,
    former_members_for_vetting,
    members_for_vetting,
    parse_verdict,
    roster_history,
)

MemberStatus = Literal["pending", "probation", "active", "blocked", "revoked"]


@contextmanager
def checking(what: str) -> Iterator[None]:
    """Turn any crypto failure inside the block into VerificationFailed about `what`."""
    try:
        yield
    except CryptoError as exc:
        raise VerificationFailed(
            f"The server's {what} does not verify ({exc}). Nothing was signed or changed; "
            "the server may be faulty or lying, so tell your cell in person."
        ) from exc


def fail(message: str) -> VerificationFailed:
    return VerificationFailed(
        f"{message}. Nothing was signed or changed; the server may be faulty or lying, "
        "so tell your cell in person."
    )


def parse_id(text: str, size: int, what: str) -> bytes:
    try:
        raw = b32d(text)
    except ValueError:
        raise fail(f"the server sent a malformed {what}") from None
    if len(raw) != size:
        raise fail(f"the server sent a malformed {what}")
    return raw


def statement(wire: Wire, kind: str, network: bytes) -> Statement:
    with checking(f"{kind} statement"):
        return from_wire(wire, kind, network)


def verdict(wire: Wire, network: bytes) -> Verdict:
    """A vouch or a block; its type is read from the body, then fully verified."""
    with checking("vouch or block"):
        try:
            body = decode(b64d(wire["body"]))
        except (KeyError, TypeError, ValueError):
            raise fail("the server sent a verdict that is not a statement") from None
        kind = body.get("type") if isinstance(body, dict) else None
        if kind not in ("vouch", "block"):
            raise fail("the server sent a verdict that is neither a vouch nor a block")
        return parse_verdict(from_wire(wire, str(kind), network))


def admissions(wires: Sequence[Wire], network: bytes) -> tuple[Admission, ...]:
    with checking("certificate chain"):
        return tuple(parse_admission(statement(w, "admission", network)) for w in wires)


@dataclass(frozen=True)
class VerifiedMember:
    """A cell member whose chain reaches the genesis."""

    member_id: bytes
    key: IdentityPublicKey
    chain: tuple[Admission, ...]
    since: int  # a signed lower bound of when they became a member

    def as_cell_member(self) -> CellMember:
        return CellMember(self.member_id, frozenset(link.issuer for link in self.chain))


@dataclass(frozen=True)
class VerifiedCell:
    group: GroupCreation
    members: dict[bytes, VerifiedMember]


def revocation_list(genesis: Genesis, wires: Sequence[Wire]) -> RevocationList:
    """The network's revocation chain as the server sent it, verified link by link from seq 0."""
    network = genesis.network_id
    with checking("revocation list"):
        return verify_revocation_list(genesis, [statement(w, "revocation", network) for w in wires])


def revocations(genesis: Genesis, evidence: Evidence) -> dict[bytes, Revocation]:
    """Each revoked member's verified revocation (a steward's, in the network's chain)."""
    return revocation_list(genesis, evidence.revocations).by_subject


def revoked_map(genesis: Genesis, evidence: Evidence) -> dict[bytes, int]:
    return revocation_list(genesis, evidence.revocations).revoked


def verify_cell(genesis: Genesis, evidence: Evidence, revoked: dict[bytes, int]) -> VerifiedCell:
    network = genesis.network_id
    if evidence.cell_group is None:
        raise ClientError(
            "not_admitted",
            "You are not admitted yet: until your vetting completes, your cell is not shown "
            "to you. Wait for your inviter's certificate and your cell's vouches; `spokes "
            "status` shows where you stand (if it says you are admitted, the server is "
            "withholding your cell: tell your inviter in person).",
        )
    with checking("cell"):
        group = parse_group_creation(
            statement(evidence.cell_group, "roster", network), rules=GroupRules.of(genesis)
        )
    if b32e(group.group_id) != evidence.cell_id.lower() or group.state.kind != "cell":
        raise fail("the server's cell record names another cell")
    return VerifiedCell(group, verify_members(genesis, evidence.cell_members, revoked, "cell"))


def verify_members(
    genesis: Genesis,
    items: Sequence[CellMemberWire],
    revoked: dict[bytes, int],
    what: str,
    *,
    keep_revoked: bool = False,
) -> dict[bytes, VerifiedMember]:
    """Members as the server lists them, each with a chain that reaches the genesis.

    With `keep_revoked` (former members), a revoked member is kept, their
    chain checked as it stood before their own revocation: what they signed
    earlier still counts where the caller checks its time."""
    network = genesis.network_id
    stewards = {key.member_id: key for key in genesis.stewards}
    members: dict[bytes, VerifiedMember] = {}
    for item in items:
        member_id = parse_id(item.member_id, 32, "member id")
        if member_id in revoked and not keep_revoked:
            continue  # a revoked member is no longer one, whatever the list says
        chain = admissions(item.chain, network)
        if chain:
            key, since = chain[0].subject_key, chain[0].statement.time
        elif member_id in stewards:
            key, since = stewards[member_id], genesis.statement.time
        else:
            raise fail(f"{what} member {member_id_text(member_id)} has no chain to the genesis")
        if key.member_id != member_id:
            raise fail(f"a {what} member's chain admits someone else")
        others = {m: t for m, t in revoked.items() if m != member_id} if keep_revoked else revoked
        with checking(f"chain of {what} member {member_id_text(member_id)}"):
            verify_chain(genesis, key, chain, others)
        members[member_id] = VerifiedMember(member_id, key, chain, since)
    return members


def verify_history(genesis: Genesis, evidence: Evidence) -> dict[bytes, RosterHistory]:
    """The roster logs the server sent, each replayed from its create event."""
    network = genesis.network_id
    histories: dict[bytes, RosterHistory] = {}
    for log in evidence.cell_history:
        with checking("roster log of a cell"):
            events = [statement(w, "roster", network) for w in log]
            history = roster_history(events, rules=GroupRules.of(genesis))
        if history.group in histories:
            raise fail("the server sent two roster logs for one cell")
        histories[history.group] = history
    return histories


def admission_history(
    cell: VerifiedCell,
    histories: dict[bytes, RosterHistory],
    subject: bytes,
    admission: Admission,
) -> RosterHistory | None:
    """The roster log of the cell `admission` names, tied to the member's cell now.

    For a member still in that cell it is the cell's own log (or None if the
    server sent none). For a member moved by splits, each cell on the way must
    have been created by a split, in the previous cell's log, that moved them:
    anything else is refused.
    """
    current = cell.group
    if admission.cell == current.group_id:
        history = histories.get(admission.cell)
        if history is not None and history.creation.id != current.statement.id:
            raise fail("the server's roster log of this cell starts with another create event")
        return history
    creation, group = current.statement, current.group_id
    for _ in range(len(histories)):
        origin = creation.fields.get("origin")
        parent = next((h for h in histories.values() if origin in h.splits), None)
        if parent is None or not isinstance(origin, bytes):
            break
        split = parent.splits[origin]
        if split.new_group != group or subject not in split.moved:
            break
        if parent.group == admission.cell:
            return parent
        creation, group = parent.creation, parent.group
    raise fail(
        "the admission certificate is for another cell, and no split in the roster logs "
        "moved this member from it"
    )


@dataclass(frozen=True)
class Newcomer:
    """A redemption whose join, key bundle, invite and proof all verified."""

    member_id: bytes
    key: IdentityPublicKey
    key_bundle: KeyBundle
    join: Join
    invite: Invite

    @property
    def inviter(self) -> bytes:
        return self.invite.statement.author


def verify_key_bundle(genesis: Genesis, evidence: Evidence, member_id: bytes) -> KeyBundle:
    if evidence.key_bundle is None:
        raise fail("the server sent no key bundle for this member")
    with checking("key bundle"):
        bundle = parse_key_bundle(statement(evidence.key_bundle, "key-bundle", genesis.network_id))
    if bundle.statement.author != member_id:
        raise fail("the key bundle belongs to another member")
    return bundle


def verify_newcomer(genesis: Genesis, evidence: Evidence, bundle: KeyBundle) -> Newcomer:
    """Join, invite and redemption proof: the newcomer used a real invite of this network.

    Which cell the invite may name is checked with the certificate (see
    `evaluate_member`): a member moved by a split was invited to the cell
    they left.
    """
    network = genesis.network_id
    member_id = bundle.statement.author
    if evidence.join is None or evidence.invite is None or evidence.proof is None:
        raise fail("the server sent a newcomer without their join, invite or proof")
    with checking("join request"):
        join = parse_join(statement(evidence.join, "join", network))
        invite = parse_invite(statement(evidence.invite, "invite", network))
        try:
            proof = b64d(evidence.proof)
        except ValueError:
            raise fail("the server sent a malformed redemption proof") from None
        verify_proof(invite.proof_public_key, join.statement, proof)
    if join.statement.author != member_id:
        raise fail("the join request was made by someone else")
    if join.key_bundle_id != bundle.statement.id:
        raise fail("the join request names another key bundle")
    if join.lookup_id != invite.lookup_id:
        raise fail("the join request redeems another invite")
    return Newcomer(member_id, join.statement.author_key, bundle, join, invite)


@dataclass(frozen=True)
class MemberReport:
    """Where one member stands, computed by this client from signed statements."""

    member_id: bytes
    key: IdentityPublicKey
    status: MemberStatus
    cell: VerifiedCell
    newcomer: Newcomer | None
    admission: Admission | None
    outcome: Outcome | None
    admitted_at: int | None
    probation_ends_at: int | None
    # The verified vouch statements (not blocks), which an `add` carries.
    verdicts: tuple[Verdict, ...] = ()

    @property
    def vouches(self) -> int:
        return 0 if self.outcome is None else len(self.outcome.vouchers)

    @property
    def needed(self) -> int:
        return 0 if self.outcome is None else self.outcome.needed


def verify_admission(
    genesis: Genesis, evidence: Evidence, newcomer: Newcomer, revoked: dict[bytes, int]
) -> Admission | None:
    """The newcomer's certificate and the chain above it, or None if not yet signed."""
    if evidence.admission is None:
        return None
    network = genesis.network_id
    with checking("admission certificate"):
        admission = parse_admission(statement(evidence.admission, "admission", network))
    if admission.subject_key != newcomer.key:
        raise fail("the admission certificate is over a different key")
    if admission.cell != newcomer.invite.cell:
        raise fail("the admission certificate is for another cell")
    if (
        admission.invite != newcomer.invite.lookup_id
        or admission.join != newcomer.join.statement.id
    ):
        raise fail("the admission certificate is for another invite or join request")
    if admission.issuer != newcomer.inviter:
        raise fail("the admission certificate was not signed by the inviter")
    chain = (admission, *admissions(evidence.chain, network))
    # The member's own revocation is reported as their status; the chain
    # above them must still hold.
    others = {m: t for m, t in revoked.items() if m != newcomer.member_id}
    with checking("certificate chain from this member to the genesis"):
        verify_chain(genesis, newcomer.key, chain, others)
    return admission


def evaluate_member(genesis: Genesis, evidence: Evidence, now: int) -> MemberReport:
    """Verify everything in `evidence` and compute the member's status."""
    if evidence.network_id.lower() != b32e(genesis.network_id):
        raise fail("the server's evidence is about another network")
    member_id = parse_id(evidence.member_id, 32, "member id")
    revoked = revoked_map(genesis, evidence)
    cell = verify_cell(genesis, evidence, revoked)
    bundle = verify_key_bundle(genesis, evidence, member_id)
    key = bundle.statement.author_key
    if evidence.join is None:
        return _steward_report(genesis, evidence, member_id, key, cell, revoked)
    newcomer = verify_newcomer(genesis, evidence, bundle)
    admission = verify_admission(genesis, evidence, newcomer, revoked)
    history: RosterHistory | None = None
    if admission is not None:
        # The certificate names the invite's cell (verify_admission).
        history = admission_history(cell, verify_history(genesis, evidence), member_id, admission)
    elif newcomer.invite.cell != cell.group.group_id:
        raise fail("the invite was for another cell")
    verdicts = [verdict(w, genesis.network_id) for w in evidence.verdicts]
    former = verify_members(
        genesis, evidence.former_members, revoked, "former cell", keep_revoked=True
    )
    members = _vetting_members(cell, member_id, admission, verdicts, former, history, revoked)
    # Only the stewards' founding cell admits on fewer vouches while small;
    # whether the admission's cell is one comes from its verified create event.
    if admission is None or admission.cell == cell.group.group_id:
        founding = cell.group.state.founding
    else:
        founding = history is not None and history.state.founding
    with checking("vouches and blocks"):
        outcome = evaluate(genesis.policy, admission, verdicts, members, now, founding=founding)
    status: MemberStatus
    admitted_at = probation_ends = None
    if member_id in revoked:
        status = "revoked"
    elif outcome.status == "blocked":
        status = "blocked"
    elif outcome.status == "admitted" and outcome.completes_at is not None:
        admitted_at = outcome.completes_at
        probation_ends = admitted_at + genesis.policy.probation_seconds
        status = "probation" if now < probation_ends else "active"
    else:
        status = "pending"
    return MemberReport(
        member_id,
        key,
        status,
        cell,
        newcomer,
        admission,
        outcome,
        admitted_at,
        probation_ends,
        tuple(verdicts),
    )


def _steward_report(
    genesis: Genesis,
    evidence: Evidence,
    member_id: bytes,
    key: IdentityPublicKey,
    cell: VerifiedCell,
    revoked: dict[bytes, int],
) -> MemberReport:
    # A member without a join request is a steward, or nothing at all.
    if key not in genesis.stewards or evidence.admission is not None:
        raise fail("the server shows a member without a join request who is no steward")
    status: MemberStatus = "revoked" if member_id in revoked else "active"
    at = genesis.statement.time
    return MemberReport(member_id, key, status, cell, None, None, None, at, None)


def _vetting_members(
    cell: VerifiedCell,
    subject: bytes,
    admission: Admission | None,
    verdicts: Sequence[Verdict],
    former: dict[bytes, VerifiedMember],
    history: RosterHistory | None,
    revoked: dict[bytes, int],
) -> list[CellMember]:
    current = [
        (member.as_cell_member(), member.since)
        for member in cell.members.values()
        if member.member_id != subject
    ]
    if admission is None:
        return members_for_vetting(admission, current, verdicts)
    leavers = [
        member.as_cell_member()
        for member_id, member in former.items()
        if member_id not in cell.members
        and member_id != subject
        and _before_revocation(member_id, admission, verdicts, revoked)
    ]
    if admission.cell == cell.group.group_id:
        counted = members_for_vetting(admission, current, verdicts)
        return counted + former_members_for_vetting(admission, leavers, verdicts, history)
    # Moved by a split: today's cellmates were in the admission cell only as
    # far as its log shows, so each is checked there like a former member.
    if history is None:  # admission_history found the log or refused
        raise fail("the server sent no roster log of the cell this member was admitted to")
    voters = {v.author for v in verdicts} | {admission.issuer}
    quiet = [
        member
        for member, since in current
        if member.member_id not in voters
        and since <= admission.statement.time
        and history.was_member(member.member_id)
    ]
    spoke = [member for member, _ in current if member.member_id in voters]
    return quiet + former_members_for_vetting(admission, spoke + leavers, verdicts, history)


def _before_revocation(
    member_id: bytes, admission: Admission, verdicts: Sequence[Verdict], revoked: dict[bytes, int]
) -> bool:
    """A revoked former member counts for this vetting only by what they signed before their
    revocation (PROTOCOL §7): every statement of theirs on it must be older."""
    at = revoked.get(member_id)
    if at is None:
        return True
    times = [v.statement.time for v in verdicts if v.author == member_id]
    if admission.issuer == member_id:
        times.append(admission.statement.time)
    return all(t < at for t in times)


@dataclass(frozen=True)
class OwnPending:
    """What a member not yet admitted can check of their own standing.

    The server shows them only their own statements (docs/PROTOCOL.md §10):
    nothing of the cell, its members, their chains or their verdicts. So the
    vouches can't be counted; what is checked is that the join, key bundle,
    invite and proof belong together, and, once signed, that the certificate
    is the inviter's, over this member's key, for this invite.
    """

    member_id: bytes
    cell_id: bytes
    newcomer: Newcomer
    admission: Admission | None


def own_pending(genesis: Genesis, evidence: Evidence, me: bytes) -> OwnPending:
    """Verify the statements a not-yet-admitted member gets about themself."""
    if evidence.network_id.lower() != b32e(genesis.network_id):
        raise fail("the server's evidence is about another network")
    member_id = parse_id(evidence.member_id, 32, "member id")
    if member_id != me:
        raise fail("the server sent evidence about another member")
    bundle = verify_key_bundle(genesis, evidence, member_id)
    newcomer = verify_newcomer(genesis, evidence, bundle)
    cell_id = parse_id(evidence.cell_id, len(newcomer.invite.cell), "cell id")
    if cell_id != newcomer.invite.cell:
        raise fail("the invite was for another cell")
    admission = None
    if evidence.admission is not None:
        with checking("admission certificate"):
            admission = parse_admission(
                statement(evidence.admission, "admission", genesis.network_id)
            )
        if admission.subject_key != newcomer.key or admission.cell != newcomer.invite.cell:
            raise fail("the admission certificate is for another member or cell")
        if (
            admission.invite != newcomer.invite.lookup_id
            or admission.join != newcomer.join.statement.id
            or admission.issuer != newcomer.inviter
        ):
            raise fail("the admission certificate is not the inviter's, for this invite")
    return OwnPending(member_id, cell_id, newcomer, admission)
