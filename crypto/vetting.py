"""Vouches, blocks, and the rule book that decides when a newcomer is admitted.

The rule this module keeps (DESIGN.md §6): a newcomer joins their cell only
when their inviter's admission certificate plus vouches from other cell
members reach the policy's count, at least one voucher stands outside the
inviter's invite subtree whenever the cell has such a member, and no cell
member blocked before the admission completed.

Details decided here (docs/PROTOCOL.md, "Vetting"):
- The inviter's certificate counts as their vouch.
- A founding cell smaller than the count needs every current member instead:
  needed = min(policy.vouches, cell size).
- Admission completes when the count is met and either every cell member has
  vouched or the vetting window since the certificate has passed: until then
  any member may still block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from crypto.chains import Admission
from crypto.errors import InvalidStatement, RuleViolation
from crypto.keys import IdentityKey
from crypto.network import GROUP_ID_BYTES, Policy
from crypto.statements import Statement, get_bytes, sign_statement

VettingStatus = Literal["awaiting-admission", "vetting", "admitted", "blocked"]


@dataclass(frozen=True)
class Verdict:
    """A vouch or a block: one cell member's signed word on one admission."""

    statement: Statement
    subject: bytes
    cell: bytes
    admission: bytes

    @property
    def author(self) -> bytes:
        return self.statement.author


def make_verdict(
    kind: Literal["vouch", "block"],
    member: IdentityKey,
    network: bytes,
    admission: Admission,
    time: int,
) -> Verdict:
    statement = sign_statement(
        member,
        kind,
        network,
        time,
        {"subject": admission.subject, "cell": admission.cell, "admission": admission.statement.id},
    )
    return parse_verdict(statement)


def parse_verdict(statement: Statement) -> Verdict:
    if statement.type not in ("vouch", "block"):
        raise InvalidStatement("not a vouch or a block")
    fields = statement.fields
    return Verdict(
        statement,
        get_bytes(fields, "subject", 32),
        get_bytes(fields, "cell", GROUP_ID_BYTES),
        get_bytes(fields, "admission", 32),
    )


@dataclass(frozen=True)
class CellMember:
    """A current member of the cell and the issuers above them (their invite line)."""

    member_id: bytes
    ancestors: frozenset[bytes]

    def in_subtree_of(self, root: bytes) -> bool:
        return self.member_id == root or root in self.ancestors


@dataclass(frozen=True)
class Outcome:
    status: VettingStatus
    needed: int
    vouchers: tuple[bytes, ...]
    outside_needed: bool
    completes_at: int | None
    blocked_by: tuple[bytes, ...]


def members_for_vetting(
    admission: Admission | None,
    members: Sequence[tuple[CellMember, int]],
    verdicts: Sequence[Verdict],
) -> list[CellMember]:
    """The cell members a newcomer's vetting is counted against.

    `members` pairs each current member with when their membership began (their
    certificate time; the genesis time for stewards). The cell keeps growing
    after an admission completes, and counting later members would make a
    finished admission look unfinished, so only members who were there when
    the certificate was signed count, plus anyone who gave a verdict on it.
    """
    voters = {v.author for v in verdicts}
    return [
        member
        for member, since in members
        if admission is None or since <= admission.statement.time or member.member_id in voters
    ]


def required_vouches(policy: Policy, cell_size: int) -> int:
    return max(1, min(policy.vouches, cell_size))


def check_verdict(verdict: Verdict, admission: Admission, members: Sequence[CellMember]) -> None:
    """Raise RuleViolation unless this vouch or block may count for `admission`."""
    if verdict.subject != admission.subject or verdict.admission != admission.statement.id:
        raise RuleViolation("wrong_admission", "this statement is about another admission")
    if verdict.cell != admission.cell:
        raise RuleViolation("not_in_cell", "this statement is for another cell")
    if verdict.author not in {m.member_id for m in members}:
        raise RuleViolation("not_in_cell", "only members of the newcomer's cell can vouch or block")
    if verdict.statement.type == "vouch" and verdict.author == admission.issuer:
        raise RuleViolation(
            "already_vouched", "the inviter's certificate already counts as their vouch"
        )


def evaluate(
    policy: Policy,
    admission: Admission | None,
    verdicts: Sequence[Verdict],
    members: Sequence[CellMember],
    now: int,
) -> Outcome:
    """Decide where a newcomer stands, from signed statements alone.

    `members` are the cell's current members, not counting the newcomer.
    Every verdict must pass `check_verdict`; one that doesn't raises, because
    whoever handed it over (a client or a server) is not telling the truth.
    """
    needed = required_vouches(policy, len(members))
    if admission is None:
        return Outcome("awaiting-admission", needed, (), False, None, ())
    if admission.issuer not in {m.member_id for m in members}:
        raise RuleViolation("not_in_cell", "the certificate's issuer is not a member of the cell")
    for verdict in verdicts:
        check_verdict(verdict, admission, members)
    vouch_times = {admission.issuer: admission.statement.time}
    for verdict in sorted(verdicts, key=lambda v: v.statement.time):
        if verdict.statement.type == "vouch":
            vouch_times.setdefault(
                verdict.author, max(verdict.statement.time, admission.statement.time)
            )
    outsiders = {m.member_id for m in members if not m.in_subtree_of(admission.issuer)}
    met_at = _threshold_time(vouch_times, needed, outsiders)
    completes_at = None
    if met_at is not None:
        if len(vouch_times) == len(members):
            completes_at = max(vouch_times.values())
        else:
            completes_at = max(met_at, admission.statement.time + policy.vetting_seconds)
    blockers = tuple(
        v.author
        for v in verdicts
        if v.statement.type == "block" and (completes_at is None or v.statement.time < completes_at)
    )
    if blockers:
        status: VettingStatus = "blocked"
    elif completes_at is not None and now >= completes_at:
        status = "admitted"
    else:
        status = "vetting"
    return Outcome(status, needed, tuple(vouch_times), bool(outsiders), completes_at, blockers)


def _threshold_time(
    vouch_times: dict[bytes, int], needed: int, outsiders: set[bytes]
) -> int | None:
    """The time at which enough vouches, including an outsider if any, had arrived."""
    count = 0
    outsider_seen = not outsiders
    for voucher, at in sorted(vouch_times.items(), key=lambda item: item[1]):
        count += 1
        outsider_seen = outsider_seen or voucher in outsiders
        if count >= needed and outsider_seen:
            return at
    return None
