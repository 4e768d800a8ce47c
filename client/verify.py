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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from client.api import Evidence, Wire
from client.errors import VerificationFailed
from crypto.chains import (
    Admission,
    parse_admission,
    parse_revocation,
    revocation_times,
    verify_chain,
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
from crypto.roster import GroupCreation, parse_group_creation
from crypto.statements import Statement, from_wire
from crypto.vetting import (
    CellMember,
    Outcome,
    Verdict,
    evaluate,
    members_for_vetting,
    parse_verdict,
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


def revoked_map(genesis: Genesis, evidence: Evidence) -> dict[bytes, int]:
    network = genesis.network_id
    with checking("revocation list"):
        return revocation_times(
            [
                parse_revocation(statement(w, "revocation", network), genesis)
                for w in evidence.revocations
            ]
        )


def verify_cell(genesis: Genesis, evidence: Evidence, revoked: dict[bytes, int]) -> VerifiedCell:
    network = genesis.network_id
    with checking("cell"):
        group = parse_group_creation(
            statement(evidence.cell_group, "roster", network), cell_max=genesis.policy.cell_max
        )
    if b32e(group.group_id) != evidence.cell_id.lower() or group.state.kind != "cell":
        raise fail("the server's cell record names another cell")
    stewards = {key.member_id: key for key in genesis.stewards}
    members: dict[bytes, VerifiedMember] = {}
    for item in evidence.cell_members:
        member_id = parse_id(item.member_id, 32, "member id")
        if member_id in revoked:
            continue  # a revoked member is no longer one, whatever the list says
        chain = admissions(item.chain, network)
        if chain:
            key, since = chain[0].subject_key, chain[0].statement.time
        elif member_id in stewards:
            key, since = stewards[member_id], genesis.statement.time
        else:
            raise fail(f"cell member {member_id_text(member_id)} has no chain to the genesis")
        if key.member_id != member_id:
            raise fail("a cell member's chain admits someone else")
        with checking(f"chain of cell member {member_id_text(member_id)}"):
            verify_chain(genesis, key, chain, revoked)
        members[member_id] = VerifiedMember(member_id, key, chain, since)
    return VerifiedCell(group, members)


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


def verify_newcomer(
    genesis: Genesis, evidence: Evidence, bundle: KeyBundle, *, split_born: bool = False
) -> Newcomer:
    """Join, invite and redemption proof: the newcomer used a real invite of this network.

    The invite names the cell the newcomer joined; a cell founded by a split
    (its create event names its origin) holds members invited to the cell it
    split from.
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
    if b32e(invite.cell) != evidence.cell_id.lower() and not split_born:
        raise fail("the invite was for another cell")
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
    split_born = cell.group.statement.fields.get("origin") is not None
    newcomer = verify_newcomer(genesis, evidence, bundle, split_born=split_born)
    admission = verify_admission(genesis, evidence, newcomer, revoked)
    if admission is not None and admission.cell != cell.group.group_id:
        return _moved_report(genesis, member_id, key, cell, newcomer, admission, revoked, now)
    verdicts = [verdict(w, genesis.network_id) for w in evidence.verdicts]
    members = _vetting_members(cell, member_id, admission, verdicts)
    with checking("vouches and blocks"):
        outcome = evaluate(genesis.policy, admission, verdicts, members, now)
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
        member_id, key, status, cell, newcomer, admission, outcome, admitted_at, probation_ends
    )


def _moved_report(
    genesis: Genesis,
    member_id: bytes,
    key: IdentityPublicKey,
    cell: VerifiedCell,
    newcomer: Newcomer,
    admission: Admission,
    revoked: dict[bytes, int],
    now: int,
) -> MemberReport:
    """A member vetted in one cell and moved by a split to the cell in `evidence`.

    Their vetting was counted among the cell they joined, which this client no
    longer sees; the split-born cell's create event, signed by a moved member
    and naming this member's key, is what shows they were on that cell's
    roster, so vetted. The create event's time is a signed upper bound of their
    admission: counting probation from it errs on the strict side.
    """
    creation = cell.group.statement
    founding = {m for m in cell.group.state.members}
    if member_id not in founding or creation.fields.get("origin") is None:
        raise fail("the server shows a member in a cell they were not moved to")
    status: MemberStatus
    admitted_at = creation.time
    probation_ends = admitted_at + genesis.policy.probation_seconds
    if member_id in revoked:
        status = "revoked"
    else:
        status = "probation" if now < probation_ends else "active"
    return MemberReport(
        member_id, key, status, cell, newcomer, admission, None, admitted_at, probation_ends
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
    cell: VerifiedCell, subject: bytes, admission: Admission | None, verdicts: Sequence[Verdict]
) -> list[CellMember]:
    current = [
        (member.as_cell_member(), member.since)
        for member in cell.members.values()
        if member.member_id != subject
    ]
    return members_for_vetting(admission, current, verdicts)
