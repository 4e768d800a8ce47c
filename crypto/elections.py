"""Spokespeople: electing and recalling a group's spokesperson by motion.

The rule this module keeps: a group has at most one spokesperson, and only
a roster event that carries a motion and the signatures of a quorum of the
group's *current* members changes who it is. `elect` names a member on the
roster whose probation has passed, in a group that has no spokesperson;
`recall` names the current spokesperson (so a recall signed before a new
election can't unseat the next one). A motion is carried out once. The
signed `elect` event, with its motion and signatures inside, is the
spokesperson's delegation: what a council checks before it seats them.

The quorum is the policy's `election_quorum` of the group's members at the
time the event is applied (crypto/quorum.py's `quorum_of`): members who
left since they signed no longer count, and a signature by anyone off the
roster makes the event invalid. Opening a motion is signing it.

Each election or recall is a link of a chain a council can follow without
the group's roster log: its motion commits to the roster (size and the root
of crypto/rostertree.py's tree, checked here against the log), names the
previous link, and needs, besides its quorum, a quorum of the `anchor`: the
members present at the previous link who have not left since. Whoever left
never counts again, so informants elsewhere can't make a group of their own
keys pass for this one, and a roster that changed while the vote ran spoils
the motion (`stale_roster`; it is opened again).
"""

from __future__ import annotations

from dataclasses import replace

from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.motions import (
    ElectionTerms,
    Motion,
    election_terms,
    election_terms_for,
    make_motion,
    parse_motion,
)
from crypto.quorum import quorum_of, valid_signers
from crypto.roster_state import GroupRules, RosterState
from crypto.rostertree import roster_root
from crypto.statements import Statement, unpack


def make_elect_motion(
    key: IdentityKey, network: bytes, state: RosterState, member: bytes, time: int
) -> Motion:
    """A motion to elect `member` the group's spokesperson."""
    terms = election_terms_for(state, member, roster_root(state.members.values()))
    return make_motion(key, network, state, "elect", terms, time)


def make_recall_motion(key: IdentityKey, network: bytes, state: RosterState, time: int) -> Motion:
    """A motion to recall the group's current spokesperson (no reason needed)."""
    if state.spokesperson is None:
        raise RuleViolation("no_spokesperson", "the group has no spokesperson to recall")
    terms = election_terms_for(state, state.spokesperson, roster_root(state.members.values()))
    return make_motion(key, network, state, "recall", terms, time)


def check_commitment(state: RosterState, motion: Motion) -> ElectionTerms:
    """The motion's roster commitment and chain are this state's, or it is stale."""
    terms = election_terms(motion)
    if terms.level != state.level:
        raise RuleViolation("invalid_motion", "the election names another level")
    if terms.prev_link != state.last_link:
        raise RuleViolation(
            "stale_motion", "another election or recall took effect since this motion was opened"
        )
    if (terms.size, terms.root) != (len(state.members), roster_root(state.members.values())):
        raise RuleViolation(
            "stale_roster", "the roster changed since this motion was opened: open it again"
        )
    return terms


def continuity_needed(state: RosterState, rules: GroupRules) -> int:
    """Signatures needed from the members present at the last election who are still here."""
    if not state.anchor:
        return 0
    return quorum_of(rules.policy.election_quorum, len(state.anchor))


def check_eligible(state: RosterState, member: bytes, rules: GroupRules, at: int) -> None:
    """Raise unless `member` may be elected in `state` at time `at`."""
    if member not in state.members:
        raise RuleViolation("not_in_group", "only a member of the group can be its spokesperson")
    if member in state.review or member in state.suspended or member in state.frozen:
        raise RuleViolation(
            "in_review", "a member under review, suspended or frozen can't be elected"
        )
    since = state.since.get(member, at)
    if at < since + rules.policy.probation_seconds and member not in rules.stewards:
        raise RuleViolation("in_probation", "a member in probation can't be elected")


def carried_signatures(
    state: RosterState, event: Statement, motion: Motion, network: bytes, kind: str
) -> list[Statement]:
    """The motion-signs an event carries for `motion` of this group, not yet carried out:
    each signer once, the opener not again (opening is signing). Who counts is the caller's."""
    if motion.group != state.group:
        raise RuleViolation("wrong_group", "this motion is for another group")
    if motion.id in state.motions_done:
        raise RuleViolation("stale_motion", "this motion has already been carried out")
    raw = event.fields.get("signatures")
    if not isinstance(raw, list) or len(raw) > len(state.members):
        raise RuleViolation("invalid_motion", f"a {kind} carries its signatures")
    signatures = [unpack(s, "motion-sign", network) for s in raw]
    authors = [s.author for s in signatures]
    if len(set(authors)) != len(authors) or motion.statement.author in authors:
        raise RuleViolation(
            "invalid_motion", "a member signs a motion once (opening it is signing it)"
        )
    return signatures


def carried_motion(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, kind: str
) -> tuple[Motion, frozenset[bytes]]:
    """The motion an `elect`/`recall` event carries, checked to have its quorum; and its signers."""
    motion = parse_motion(unpack(event.fields.get("motion"), "motion", network))
    if motion.kind != kind:
        raise RuleViolation("invalid_motion", f"a {kind} event carries a {kind} motion")
    signatures = carried_signatures(state, event, motion, network, kind)
    signers = valid_signers(motion, signatures, state)
    needed = quorum_of(rules.policy.election_quorum, len(state.members))
    if len(signers) < needed:
        raise RuleViolation(
            "quorum_not_reached",
            f"{len(signers)} of the {needed} signatures of current members needed",
        )
    check_commitment(state, motion)
    continuing = continuity_needed(state, rules)
    if len(signers & state.anchor) < continuing:
        raise RuleViolation(
            "quorum_not_reached",
            f"{len(signers & state.anchor)} of the {continuing} signatures needed from members "
            "present at the last election",
        )
    times = [motion.statement.time, *(s.time for s in signatures)]
    if event.time < max(times):
        raise RuleViolation("invalid_event", "the event is older than a signature it carries")
    return motion, signers


def apply_elect(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    motion, _ = carried_motion(state, event, network, rules, "elect")
    member = election_terms(motion).member
    if state.spokesperson is not None:
        raise RuleViolation(
            "has_spokesperson", "the group has a spokesperson: recall them before electing another"
        )
    check_eligible(state, member, rules, event.time)
    return _linked(replace(state, spokesperson=member), event, motion)


def apply_recall(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    motion, _ = carried_motion(state, event, network, rules, "recall")
    if state.spokesperson != election_terms(motion).member:
        raise RuleViolation("not_spokesperson", "the member recalled is not the spokesperson")
    return _linked(replace(state, spokesperson=None), event, motion)


def _linked(state: RosterState, event: Statement, motion: Motion) -> RosterState:
    """The event is the group's last link, named by its motion's id (which only the quorum
    that signed it makes: a copy of the event under another wrapper names the same link);
    its members at this moment are the next anchor."""
    return replace(
        state,
        last_link=motion.id,
        anchor=frozenset(state.members),
        motions_done=state.motions_done | {motion.id},
    )
