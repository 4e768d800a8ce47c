"""Tests of crypto.elections: electing and recalling a spokesperson by a quorum's motion."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from crypto.elections import make_elect_motion, make_recall_motion
from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.motions import Motion, election_terms_for, make_motion, sign_motion, split_event_fields
from crypto.network import DAY, Policy
from crypto.quorum import quorum_of
from crypto.roster import GroupRules, RosterState, apply, make_group, sign_event
from crypto.rostertree import roster_root
from crypto.statements import Statement, pack
from tests.crypto.helpers import T0, fixed_key
from tests.crypto.test_roster import NETWORK, add_event, bundle, remove_event

A, B, C, D, E = (fixed_key(name) for name in "ABCDE")
MALLORY = fixed_key("mallory")
# A, B and C are stewards (no probation); D and E come in by `add`.
RULES = GroupRules(
    Policy(cell_min=2, cell_max=12, vouches=1, vetting_seconds=0),
    frozenset(k.member_id for k in (A, B, C)),
)
LATER = T0 + 40 * DAY  # after anyone's probation (30 days)


def cell(*keys: IdentityKey) -> RosterState:
    state = make_group(A, NETWORK, T0, [bundle(k) for k in keys], rules=RULES).state
    return state


def with_d() -> RosterState:
    """A, B, C founding; D added at T0 + 1 (probation until T0 + 1 + 30 days)."""
    state = cell(A, B, C)
    return apply(state, add_event(state, A, bundle(D)), rules=RULES)


def carry(
    state: RosterState,
    op: str,
    motion: Motion,
    signers: Sequence[IdentityKey],
    *,
    by: IdentityKey = A,
    at: int = LATER,
) -> Statement:
    signatures = [sign_motion(k, NETWORK, motion, at - 1) for k in signers]
    fields = split_event_fields(motion, signatures)
    return sign_event(by, NETWORK, state, op, at, fields)


def elected(state: RosterState, member: IdentityKey, *signers: IdentityKey) -> RosterState:
    motion = make_elect_motion(A, NETWORK, state, member.member_id, LATER - 10)
    return apply(state, carry(state, "elect", motion, signers), rules=RULES)


def refused(code: str, state: RosterState, event: Statement) -> None:
    with pytest.raises(RuleViolation) as caught:
        apply(state, event, rules=RULES)
    assert caught.value.code == code, caught.value


def test_quorum_rules() -> None:
    assert [quorum_of("majority", n) for n in (1, 2, 3, 4, 10)] == [1, 2, 2, 3, 6]
    assert [quorum_of("two-thirds", n) for n in (1, 3, 4, 10)] == [1, 2, 3, 7]
    assert quorum_of("all", 7) == 7
    with pytest.raises(RuleViolation):
        quorum_of("most", 3)


def test_a_majority_elects_and_the_opener_counts() -> None:
    state = with_d()  # 4 members: a majority is 3
    after = elected(state, B, B, C)  # A opened it: A, B, C
    assert after.spokesperson == B.member_id
    assert len(after.motions_done) == 1


def test_short_of_the_quorum_is_refused() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    refused("quorum_not_reached", state, carry(state, "elect", motion, [B]))


def test_signatures_count_once_and_only_from_current_members() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    refused("invalid_motion", state, carry(state, "elect", motion, [B, B]))
    refused("invalid_motion", state, carry(state, "elect", motion, [A, B]))  # A opened it
    refused("not_in_group", state, carry(state, "elect", motion, [B, MALLORY]))
    # C signs, then leaves: the signature no longer counts, it spoils the event.
    signatures = [sign_motion(k, NETWORK, motion, LATER - 5) for k in (B, C)]
    gone = apply(state, remove_event(state, C, C), rules=RULES)
    event = sign_event(A, NETWORK, gone, "elect", LATER, split_event_fields(motion, signatures))
    refused("not_in_group", gone, event)


def test_a_signature_for_another_motion_or_group_is_refused() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    other = make_elect_motion(A, NETWORK, state, C.member_id, LATER - 10)
    signatures = [sign_motion(k, NETWORK, other, LATER - 1) for k in (B, C)]
    event = sign_event(A, NETWORK, state, "elect", LATER, split_event_fields(motion, signatures))
    refused("invalid_motion", state, event)
    elsewhere = make_group(A, NETWORK, T0, [bundle(k) for k in (A, B, C)], rules=RULES).state
    foreign = make_elect_motion(A, NETWORK, elsewhere, B.member_id, LATER - 10)
    refused("wrong_group", state, carry(state, "elect", foreign, [B, C]))


def test_a_split_motion_does_not_elect() -> None:
    state = with_d()
    recall_like = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    refused("invalid_motion", state, carry(state, "recall", recall_like, [B, C]))


def test_who_can_be_elected() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, MALLORY.member_id, LATER - 10)
    refused("not_in_group", state, carry(state, "elect", motion, [B, C]))
    # D was added at T0 + 1: in probation for 30 days, then eligible.
    early = T0 + 10 * DAY
    motion = make_elect_motion(A, NETWORK, state, D.member_id, early - 10)
    refused("in_probation", state, carry(state, "elect", motion, [B, C], at=early))
    assert elected(state, D, B, C).spokesperson == D.member_id


def test_one_spokesperson_at_a_time_and_recall() -> None:
    state = elected(with_d(), B, B, C)
    motion = make_elect_motion(A, NETWORK, state, C.member_id, LATER)
    refused("has_spokesperson", state, carry(state, "elect", motion, [B, C], at=LATER + 5))
    recall = make_recall_motion(D, NETWORK, state, LATER)  # any member moves it, no reason
    after = apply(state, carry(state, "recall", recall, [A, C], by=C, at=LATER + 5), rules=RULES)
    assert after.spokesperson is None
    with pytest.raises(RuleViolation) as caught:
        make_recall_motion(A, NETWORK, after, LATER + 6)
    assert caught.value.code == "no_spokesperson"


def test_a_recall_names_the_spokesperson_it_unseats() -> None:
    state = elected(with_d(), B, B, C)
    old_recall = make_recall_motion(A, NETWORK, state, LATER)  # names B
    unseated = apply(state, carry(state, "recall", old_recall, [C, D], at=LATER + 5), rules=RULES)
    again = apply(
        unseated,
        carry(
            unseated,
            "elect",
            make_elect_motion(A, NETWORK, unseated, C.member_id, LATER + 6),
            [B, D],
            at=LATER + 7,
        ),
        rules=RULES,
    )
    # A recall signed for B can't unseat C: neither replayed nor a fresh copy of its terms.
    refused("stale_motion", again, carry(again, "recall", old_recall, [C, D], at=LATER + 8))
    stale = make_recall_motion(A, NETWORK, state, LATER + 8)  # still names B, an old link
    refused("stale_motion", again, carry(again, "recall", stale, [C, D], at=LATER + 9))
    root = roster_root(again.members.values())
    forged = make_motion(
        A, NETWORK, again, "recall", election_terms_for(again, B.member_id, root), LATER + 8
    )
    refused("not_spokesperson", again, carry(again, "recall", forged, [C, D], at=LATER + 9))


def test_a_roster_change_during_the_vote_spoils_the_motion() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    grown = apply(state, add_event(state, A, bundle(E)), rules=RULES)
    refused("stale_roster", grown, carry(grown, "elect", motion, [B, C, D]))
    lied = make_motion(
        A,
        NETWORK,
        state,
        "elect",
        {**election_terms_for(state, B.member_id, bytes(32))},
        LATER - 10,
    )
    refused("stale_roster", state, carry(state, "elect", lied, [B, C]))


def test_the_next_election_needs_a_quorum_of_those_present_at_the_last() -> None:
    state = with_d()  # A B C D
    state = elected(state, B, B, C)
    assert state.anchor == {k.member_id for k in (A, B, C, D)}
    recall = make_recall_motion(A, NETWORK, state, LATER)
    state = apply(state, carry(state, "recall", recall, [C, D], at=LATER + 1), rules=RULES)
    # E joins; A and D leave: the anchor is B and C, and stays so if D comes back.
    state = apply(state, add_event(state, A, bundle(E)), rules=RULES)
    state = apply(state, remove_event(state, A, A), rules=RULES)
    state = apply(state, remove_event(state, D, D), rules=RULES)
    assert state.anchor == {B.member_id, C.member_id}
    # B, C, E: a majority of 3, but E counts only there; B alone of the anchor is 1 of 2.
    motion = make_elect_motion(E, NETWORK, state, E.member_id, LATER + 2)
    signatures = [sign_motion(B, NETWORK, motion, LATER + 3)]
    event = sign_event(
        E, NETWORK, state, "elect", LATER + 4, split_event_fields(motion, signatures)
    )
    with pytest.raises(RuleViolation, match="present at the last election"):
        apply(state, event, rules=RULES)
    signatures.append(sign_motion(C, NETWORK, motion, LATER + 3))
    event = sign_event(
        E, NETWORK, state, "elect", LATER + 4, split_event_fields(motion, signatures)
    )
    # E joined within probation of LATER + 4? E was added at T0 + seq: long past.
    assert apply(state, event, rules=RULES).spokesperson == E.member_id


def test_a_replayed_election_is_refused() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    after = apply(state, carry(state, "elect", motion, [B, C]), rules=RULES)
    recall = make_recall_motion(A, NETWORK, after, LATER)
    unseated = apply(after, carry(after, "recall", recall, [C, D], at=LATER + 2), rules=RULES)
    refused("stale_motion", unseated, carry(unseated, "elect", motion, [B, C], at=LATER + 3))


def test_a_spokesperson_who_leaves_is_no_longer_one() -> None:
    state = elected(with_d(), B, B, C)
    assert apply(state, remove_event(state, B, B), rules=RULES).spokesperson is None
    assert apply(state, remove_event(state, C, C), rules=RULES).spokesperson == B.member_id


def test_the_event_is_not_older_than_its_signatures() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    signatures = [sign_motion(k, NETWORK, motion, LATER + 100) for k in (B, C)]
    event = sign_event(A, NETWORK, state, "elect", LATER, split_event_fields(motion, signatures))
    refused("invalid_event", state, event)


def test_tampered_motions_and_signatures_are_refused() -> None:
    state = with_d()
    motion = make_elect_motion(A, NETWORK, state, B.member_id, LATER - 10)
    signatures = [sign_motion(k, NETWORK, motion, LATER - 1) for k in (B, C)]
    body, sig = pack(motion.statement)
    bad_motion = [body, bytes([sig[0] ^ 1]) + sig[1:]]
    event = sign_event(
        A,
        NETWORK,
        state,
        "elect",
        LATER,
        {"motion": bad_motion, "signatures": [pack(s) for s in signatures]},
    )
    refused("invalid_event", state, event)
    # A motion-sign presented as the motion: another statement type.
    event = sign_event(
        A,
        NETWORK,
        state,
        "elect",
        LATER,
        {"motion": pack(signatures[0]), "signatures": [pack(s) for s in signatures]},
    )
    refused("invalid_event", state, event)
    # A signature from another network does not verify here.
    foreign = sign_motion(C, bytes(32), motion, LATER - 1)
    event = sign_event(
        A,
        NETWORK,
        state,
        "elect",
        LATER,
        {"motion": pack(motion.statement), "signatures": [pack(signatures[0]), pack(foreign)]},
    )
    refused("invalid_event", state, event)
