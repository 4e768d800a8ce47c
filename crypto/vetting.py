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
- A member who has since left the cell (a split moved them) still counts for
  a verdict they gave while the cell's signed roster log shows them on it
  (`roster_history`, `former_members_for_vetting`): the server's word on who
  was a member is never taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

# Vouches and blocks live in crypto.chains (the roster rules check them too); re-exported.
from crypto.chains import Admission
from crypto.chains import Verdict as Verdict
from crypto.chains import make_verdict as make_verdict
from crypto.chains import parse_verdict as parse_verdict
from crypto.errors import RuleViolation
from crypto.network import Policy
from crypto.quorum import required_vouches, window_start
from crypto.roster import apply, carried_split
from crypto.roster_state import GroupRules, RosterState
from crypto.statements import Statement

VettingStatus = Literal["awaiting-admission", "vetting", "admitted", "blocked"]


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


@dataclass(frozen=True)
class Tenure:
    """One stretch of a member on a roster: from the event that put them on it
    to the one that took them off (None: still on it at the log's end).
    Times are the signing members' own statement times."""

    start: int
    end: int | None

    def covers(self, time: int) -> bool:
        return self.start <= time and (self.end is None or time <= self.end)


@dataclass(frozen=True)
class Split:
    """A split event of a roster log: whom it moved, and to which new group."""

    event_id: bytes
    moved: frozenset[bytes]
    new_group: bytes


@dataclass(frozen=True)
class RosterHistory:
    """What a verified roster log shows about who was on it, and when."""

    creation: Statement
    state: RosterState
    tenures: Mapping[bytes, tuple[Tenure, ...]]
    splits: Mapping[bytes, Split]

    @property
    def group(self) -> bytes:
        return self.state.group

    def was_member(self, member_id: bytes) -> bool:
        return member_id in self.tenures

    def member_at(self, member_id: bytes, time: int) -> bool:
        return any(t.covers(time) for t in self.tenures.get(member_id, ()))


def roster_history(events: Sequence[Statement], *, rules: GroupRules) -> RosterHistory:
    """Replay a roster log with crypto.roster's rules, event by event, noting tenures.

    Raises RuleViolation at the first event that may not extend the log. A
    log may be a prefix of the group's whole log: every rule still holds.
    """
    if not events:
        raise RuleViolation("invalid_event", "an empty roster log")
    state: RosterState | None = None
    spans: dict[bytes, list[Tenure]] = {}
    splits: dict[bytes, Split] = {}
    for event in events:
        before = frozenset(() if state is None else state.members)
        state = apply(state, event, rules=rules)
        after = frozenset(state.members)
        for member in after - before:
            spans.setdefault(member, []).append(Tenure(event.time, None))
        for member in before - after:
            last = spans[member][-1]
            spans[member][-1] = Tenure(last.start, event.time)
        split = carried_split(event)  # apply() has checked the motion and its quorum
        if split is not None:
            moved, new_group = split
            splits[event.id] = Split(event.id, moved, new_group)
    if state is None:  # unreachable: events is not empty
        raise RuleViolation("invalid_event", "an empty roster log")
    return RosterHistory(events[0], state, {m: tuple(t) for m, t in spans.items()}, splits)


def former_members_for_vetting(
    admission: Admission,
    former: Sequence[CellMember],
    verdicts: Sequence[Verdict],
    history: RosterHistory | None,
) -> list[CellMember]:
    """The members no longer in the cell who still count for this newcomer's vetting.

    A former member counts only if `history` (the admission cell's own
    verified roster log) shows them on the cell's roster at the time of each
    statement they gave on this admission: the certificate if they issued it,
    and every vouch or block. Anyone else is left out, so their verdict fails
    `check_verdict` as one from outside the cell.
    """
    if history is None or history.group != admission.cell:
        return []
    counted = []
    for member in former:
        times = [v.statement.time for v in verdicts if v.author == member.member_id]
        if member.member_id == admission.issuer:
            times.append(admission.statement.time)
        if times and all(history.member_at(member.member_id, t) for t in times):
            counted.append(member)
    return counted


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
    *,
    founding: bool,
) -> Outcome:
    """Decide where a newcomer stands, from signed statements alone.

    `founding` says whether the admission's cell is the stewards' founding
    cell (its create event has no split origin): only there does a small
    cell admit on fewer vouches than the policy asks.

    `members` are the cell's current members, not counting the newcomer.
    Every verdict must pass `check_verdict`; one that doesn't raises, because
    whoever handed it over (a client or a server) is not telling the truth.
    """
    needed = required_vouches(policy, len(members), founding=founding)
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
            opened = window_start(
                admission.statement.time, [t for m, t in vouch_times.items() if m in outsiders]
            )
            completes_at = max(met_at, opened + policy.vetting_seconds)
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
