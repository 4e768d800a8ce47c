"""What each kind of motion asks before it may be opened and before it takes effect.

The rule it keeps: the server (opening a motion, appending the event that
carries it) and every client (listing, signing, carrying out) ask this one
module, so they agree on who may sign a motion, how many signatures carry
it, and whether it may be opened at all:

- `split`: only the members who move sign, all of them; opened only if both
  cells would keep the policy's minimum.
- `elect`: any current member signs; the policy's `election_quorum` of the
  current members carries it; opened only for a member on the roster, past
  probation, in a group with no spokesperson.
- `recall`: as `elect`, for the group's current spokesperson.
- `link` (councils): as `elect`'s quorum, of the council's seat holders;
  opened only for a group with no seat (crypto/councils.py).
- `expel`: any current member but the subject signs; the policy's
  `expulsion_quorum` of the members other than the subject carries it;
  opened only on the current roster, never by the subject
  (crypto/exclusion.py).
- `freeze`, `unfreeze`: the policy's `freeze_signers` of the members neither
  frozen nor the subject (all of them, if fewer); a frozen member opens or
  signs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto.elections import check_commitment, check_eligible, continuity_needed
from crypto.errors import RuleViolation
from crypto.exclusion import (
    FREEZE_KINDS,
    check_expel_commitment,
    check_freeze_opening,
    expel_terms,
    expulsion_needed,
    freeze_signers,
    freeze_subject,
)
from crypto.motions import Motion, election_terms
from crypto.quorum import check_split_sizes, quorum_of, required_signers, valid_signers
from crypto.roster_state import GroupRules, RosterState
from crypto.statements import Statement


@dataclass(frozen=True)
class Quorum:
    """Who may sign a motion and how many signatures (opening counts) carry it out.

    An election also needs `anchor_needed` of the `anchor`: the members
    present at the group's last election who are still on the roster.
    """

    signers: frozenset[bytes]  # the members whose signature counts
    needed: int
    anchor: frozenset[bytes] = frozenset()
    anchor_needed: int = 0

    def counted(self, signed: frozenset[bytes]) -> int:
        return len(signed & self.signers)

    def anchor_counted(self, signed: frozenset[bytes]) -> int:
        return len(signed & self.anchor)

    def reached(self, signed: frozenset[bytes]) -> bool:
        return (
            self.counted(signed) >= self.needed
            and self.anchor_counted(signed) >= self.anchor_needed
        )


def quorum_for(state: RosterState, motion: Motion, rules: GroupRules) -> Quorum:
    if motion.group != state.group:
        raise RuleViolation("wrong_group", "this motion is for another group")
    if motion.kind == "split":
        moved = required_signers(state, motion)
        return Quorum(moved, len(moved))
    if motion.kind in FREEZE_KINDS:
        signers, needed = freeze_signers(state, freeze_subject(motion), rules)
        return Quorum(signers, needed)
    if motion.kind == "restore":
        from crypto.review import restore_quorum, restore_subject  # noqa: PLC0415

        signers, needed = restore_quorum(state, restore_subject(motion), rules)
        return Quorum(signers, needed)
    if motion.kind == "clear":
        from crypto.review import clear_quorum, clear_subject  # noqa: PLC0415

        signers, needed = clear_quorum(state, clear_subject(motion), rules)
        return Quorum(signers, needed)
    if motion.kind == "expel":
        subject = expel_terms(motion).member
        others = frozenset(state.members) - {subject}
        return Quorum(others, expulsion_needed(rules, len(state.members)))
    if motion.kind != "link":
        election_terms(motion)
    members = frozenset(state.members)
    return Quorum(
        members,
        quorum_of(rules.policy.election_quorum, len(members)),
        state.anchor,
        continuity_needed(state, rules),
    )


def signed_by(
    motion: Motion, signatures: Sequence[Statement], state: RosterState
) -> frozenset[bytes]:
    """The current members who signed (the opener included); signatures of others are left out."""
    current = [s for s in signatures if s.author in state.members]
    return valid_signers(motion, current, state)


def check_opening(state: RosterState, motion: Motion, rules: GroupRules, at: int) -> Quorum:
    """Raise RuleViolation unless `motion` may be opened in `state` at `at`; its quorum."""
    quorum = quorum_for(state, motion, rules)
    if motion.kind == "split":
        moving = len(quorum.signers)
        check_split_sizes(rules, len(state.members) - moving, moving)
    elif motion.kind in FREEZE_KINDS:
        check_freeze_opening(state, motion)
    elif motion.kind == "restore":
        from crypto.review import check_restore_opening  # noqa: PLC0415

        check_restore_opening(state, motion)
    elif motion.kind == "clear":
        from crypto.review import check_clear_opening  # noqa: PLC0415

        check_clear_opening(state, motion, rules)
    elif motion.kind == "expel":
        check_expel_commitment(state, motion)
        if motion.statement.author == expel_terms(motion).member:
            raise RuleViolation("not_allowed", "a member can't move their own expulsion")
    elif motion.kind == "link":
        from crypto.councils import link_terms  # noqa: PLC0415 - councils.py imports this module

        group = link_terms(motion)
        if state.kind != "council" or group in state.seats:
            raise RuleViolation(
                "invalid_motion", "a council links a group that has no seat in it yet"
            )
    else:
        check_commitment(state, motion)
    if motion.kind == "elect":
        if state.spokesperson is not None:
            raise RuleViolation(
                "has_spokesperson",
                "the group has a spokesperson: recall them before electing another",
            )
        check_eligible(state, election_terms(motion).member, rules, at)
    elif motion.kind == "recall" and (
        state.spokesperson is None or election_terms(motion).member != state.spokesperson
    ):
        raise RuleViolation("not_spokesperson", "the member to recall is not the spokesperson")
    return quorum
