"""Tests of crypto.review: what an expulsion does to the expelled member's invitees and sponsor."""

from __future__ import annotations

import pytest

from crypto.chains import make_revocation
from crypto.elections import check_eligible
from crypto.errors import RuleViolation
from crypto.exclusion import expulsion_grounds, make_expel_motion
from crypto.keys import IdentityKey
from crypto.motions import sign_motion, split_event_fields
from crypto.network import DAY, Policy
from crypto.review import direct_issuer, make_clear_motion, make_restore_motion
from crypto.roster import GroupRules, RosterState, apply, make_group, sign_event
from crypto.statements import Statement, pack
from tests.crypto.helpers import T0, certified_add, fixed_key
from tests.crypto.test_roster import NETWORK, bundle

A, B, C, X, M, N = (fixed_key(name) for name in ("A", "B", "C", "X", "M", "N"))
POLICY = Policy(cell_min=2, cell_max=12, vouches=1, vetting_seconds=0, probation_seconds=0)
RULES = GroupRules(POLICY, frozenset(k.member_id for k in (A, B, C)))
AT = T0 + 10 * DAY


def add(state: RosterState, by: IdentityKey, newcomer: IdentityKey, at: int) -> RosterState:
    voucher = C if by == B else B  # a steward: outside everyone's invite subtree
    fields = certified_add(by, NETWORK, state.group, bundle(newcomer), at - 1, (voucher,))
    return apply(state, sign_event(by, NETWORK, state, "add", at, fields), rules=RULES)


def network_with_x_expelled() -> tuple[RosterState, Statement]:
    """A, B, C (stewards); A admitted X, X admitted M, M admitted N; then X is expelled."""
    state = make_group(A, NETWORK, T0, [bundle(k) for k in (A, B, C)], rules=RULES).state
    state = add(state, A, X, T0 + 10)
    state = add(state, X, M, T0 + 20)
    state = add(state, M, N, T0 + 30)
    motion = make_expel_motion(B, NETWORK, state, X.member_id, "informant", AT - 100)
    signatures = [sign_motion(k, NETWORK, motion, AT - 10) for k in (C, M)]
    grounds = expulsion_grounds(state, motion, signatures)
    revoked = make_revocation(B, NETWORK, X.member_id, AT - 5, grounds=grounds).statement
    fields = {"member": X.member_id, "reason": "expelled", "revocation": pack(revoked)}
    state = apply(state, sign_event(B, NETWORK, state, "remove", AT - 5, fields), rules=RULES)
    return state, revoked


def review(state: RosterState, revoked: Statement, rules: GroupRules = RULES) -> RosterState:
    event = sign_event(C, NETWORK, state, "review", AT, {"revocation": pack(revoked)})
    return apply(state, event, rules=rules)


def test_the_lines_tell_who_admitted_whom() -> None:
    state, _ = network_with_x_expelled()
    assert direct_issuer(state.lines, M.member_id, RULES.stewards) == X.member_id
    assert direct_issuer(state.lines, N.member_id, RULES.stewards) == M.member_id
    assert direct_issuer(state.lines, A.member_id, RULES.stewards) is None
    # A cell a split made holds the lines of those it moved only: N's line {A, X, M}
    # without X's and M's own lines. A is a steward (depth 0); of X and M, depth unknown,
    # none is known to be the deepest, so the log can't tell.
    moved = {N.member_id: state.lines[N.member_id]}
    assert direct_issuer(moved, N.member_id, RULES.stewards) is None
    # With M's line there (M moved too), M is at depth 2 = the deepest: M admitted N.
    moved[M.member_id] = state.lines[M.member_id]
    assert direct_issuer(moved, N.member_id, RULES.stewards) == M.member_id
    # M's line {A, X} alone: A a steward, X the one unknown: X admitted M.
    assert (
        direct_issuer({M.member_id: state.lines[M.member_id]}, M.member_id, RULES.stewards)
        == X.member_id
    )


def test_an_expulsion_puts_the_direct_invitees_under_review_and_the_sponsor_on_hold() -> None:
    state, revoked = network_with_x_expelled()
    reviewed = review(state, revoked)
    assert set(reviewed.review) == {M.member_id}  # N is M's invitee: not direct
    assert reviewed.holds[A.member_id] == (revoked.time, False)
    # Once per revocation.
    with pytest.raises(RuleViolation, match="reviewed here already"):
        review(reviewed, revoked)
    # With the policy's flag, the whole subtree.
    wide = GroupRules(Policy(**{**POLICY.__dict__, "review_subtree": True}), RULES.stewards)
    assert set(review(state, revoked, wide).review) == {M.member_id, N.member_id}


def test_under_review_no_one_admits_or_is_elected_and_the_sponsor_admits_no_one() -> None:
    state, revoked = network_with_x_expelled()
    reviewed = review(state, revoked)
    with pytest.raises(RuleViolation, match="under review"):
        add(reviewed, M, fixed_key("O"), AT + 10)
    with pytest.raises(RuleViolation, match="sponsor"):
        add(reviewed, A, fixed_key("P"), AT + 10)
    with pytest.raises(RuleViolation, match="under review"):
        check_eligible(reviewed, M.member_id, RULES, AT + 10)
    add(reviewed, B, fixed_key("Q"), AT + 10)  # anyone else admits as before


def clear_event(state: RosterState, by: IdentityKey, vouchers: list[IdentityKey]) -> Statement:
    """A `clear` of M: the first voucher opens the motion, the others sign it."""
    opener, *others = vouchers or [B]
    motion = make_clear_motion(opener, NETWORK, state, M.member_id, AT + 50)
    signatures = [sign_motion(k, NETWORK, motion, AT + 55) for k in others]
    fields = split_event_fields(motion, signatures)
    return sign_event(by, NETWORK, state, "clear", AT + 60, fields)


def test_fresh_vouches_from_outside_the_subtree_clear_a_review() -> None:
    state, revoked = network_with_x_expelled()
    reviewed = review(state, revoked)
    with pytest.raises(RuleViolation, match="outside the expelled"):
        apply(reviewed, clear_event(reviewed, B, [N]), rules=RULES)  # N is under X too
    with pytest.raises(RuleViolation, match="outside the expelled"):
        apply(reviewed, clear_event(reviewed, B, [M]), rules=RULES)  # not their own
    strict = GroupRules(Policy(**{**POLICY.__dict__, "vouches": 2}), RULES.stewards)
    with pytest.raises(RuleViolation, match="1 of the 2"):
        apply(reviewed, clear_event(reviewed, B, [C]), rules=strict)
    cleared = apply(reviewed, clear_event(reviewed, B, [C]), rules=RULES)
    assert M.member_id not in cleared.review
    check_eligible(cleared, M.member_id, RULES, AT + 100)


def test_a_review_left_open_past_its_window_suspends_and_fresh_vouches_restore() -> None:
    state, revoked = network_with_x_expelled()
    reviewed = review(state, revoked)
    window = POLICY.review_seconds

    def suspend(at: int) -> RosterState:
        event = sign_event(B, NETWORK, reviewed, "suspend", at, {"member": M.member_id})
        return apply(reviewed, event, rules=RULES)

    with pytest.raises(RuleViolation, match="still open"):
        suspend(AT + window - 1)
    suspended = suspend(AT + window)
    assert M.member_id in suspended.members and M.member_id not in suspended.readers
    assert suspended.needs_rekey
    # A suspended member signs nothing the group accepts.
    leave = {"member": M.member_id, "reason": "left"}
    with pytest.raises(RuleViolation, match="suspended"):
        apply(
            suspended, sign_event(M, NETWORK, suspended, "remove", AT + window, leave), rules=RULES
        )
    restored = apply(suspended, clear_event(suspended, B, [C]), rules=RULES)
    assert M.member_id in restored.readers and not restored.suspended


def test_the_cell_restores_its_sponsor_by_motion_and_the_cool_down_still_holds() -> None:
    state, revoked = network_with_x_expelled()
    reviewed = review(state, revoked)
    motion = make_restore_motion(B, NETWORK, reviewed, A.member_id, AT + 10)
    # Others than the sponsor: B, C, M, N; a majority of the five others-than-subject rule.
    short = sign_event(B, NETWORK, reviewed, "restore", AT + 20, split_event_fields(motion, []))
    with pytest.raises(RuleViolation, match="quorum_not_reached|of the"):
        apply(reviewed, short, rules=RULES)
    by_sponsor = split_event_fields(motion, [sign_motion(A, NETWORK, motion, AT + 15)])
    with pytest.raises(RuleViolation, match="other members"):
        apply(
            reviewed, sign_event(B, NETWORK, reviewed, "restore", AT + 20, by_sponsor), rules=RULES
        )
    signatures = [sign_motion(k, NETWORK, motion, AT + 15) for k in (C, N)]
    event = sign_event(
        B, NETWORK, reviewed, "restore", AT + 20, split_event_fields(motion, signatures)
    )
    restored = apply(reviewed, event, rules=RULES)
    assert restored.holds[A.member_id][1] is True
    with pytest.raises(RuleViolation, match="cool-down"):
        add(restored, A, fixed_key("P"), AT + 30)
    add(restored, A, fixed_key("P"), revoked.time + POLICY.sponsor_cooldown_seconds + 2)
