"""Hostile review of councils, delegations, elections and the verification caches.

Each test here failed against the code the review read and passes since its
fix (PROTOCOL §15); the others pin behaviour the review found sound.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from crypto import councils
from crypto.encoding import Value
from crypto.errors import InvalidStatement, RuleViolation
from crypto.keys import IdentityKey
from crypto.motions import make_split_motion
from crypto.roster import apply, verify_log
from crypto.roster_state import RosterState, member_from_bundle
from crypto.rostertree import prove, roster_root, verify_proof
from crypto.statements import Statement, pack, sign_statement, verify_statement
from tests.crypto.test_councils import (
    NETWORK,
    NOW,
    RULES,
    A,
    B,
    C,
    Cell,
    D,
    E,
    F,
    H,
    X,
    bundle,
    found_council,
    members_at,
    remove_event,
    seat_change,
    signers_of,
    tracked,
    two_seats,
)


def _rewrap(by: IdentityKey, event: Statement, time: int, **override: Value) -> Statement:
    """A new `roster` statement, signed by `by`, carrying another event's motion and signatures."""
    fields: dict[str, Value] = {
        "group": event.fields["group"],
        "seq": event.fields["seq"],
        "prev": event.fields["prev"],
        "op": event.fields["op"],
        "motion": event.fields["motion"],
        "signatures": event.fields["signatures"],
    }
    fields.update(override)
    return sign_statement(by, "roster", NETWORK, time, fields)


# --- 1. A split motion of ANOTHER group passes as G's departure ---------------------------


def test_a_split_motion_of_another_group_is_not_a_departure_from_this_one() -> None:
    """Cell P split A, B, C out into G (all three signed P's motion); X joined G later.

    G (A, B, C, X) elects A with all four signatures; a council seats A. The
    informant X alone then wraps P's old split motion in a `roster` event
    naming G, shows it as a 'departure' of A, B and C, and seats himself on
    an election of a one-member roster of his own: 1 of the 4 anchor members.
    """
    parent = tracked(A, B, C, E, F, H, name="P")
    motion = make_split_motion(
        A, NETWORK, parent.state, [A.member_id, B.member_id, C.member_id], parent.tick()
    )
    old_split = parent.motion_event("split", motion, [A, B, C])

    g = tracked(A, B, C, X, name="G")
    elected = g.elect(A, B, B, C, X)
    council = found_council(g, elected, A)
    anchor = council.seats[g.state.group]
    anchor_roster = members_at(g, elected)

    t = NOW + 5000
    departure = _rewrap(
        X, old_split, t, group=g.state.group, seq=anchor.seq + 1, prev=bytes(32)
    )
    me = member_from_bundle(bundle(X))
    terms: dict[str, Value] = {
        "member": X.member_id,
        "roster": [1, roster_root([me])],
        "prev_link": anchor.link,
        "level": 0,
    }
    fake_motion = sign_statement(
        X,
        "motion",
        NETWORK,
        t,
        {"group": g.state.group, "kind": "elect", "terms": terms, "head": bytes(32)},
    )
    fake_link = sign_statement(
        X,
        "roster",
        NETWORK,
        t,
        {
            "group": g.state.group,
            "seq": anchor.seq + 2,
            "prev": bytes(32),
            "op": "elect",
            "motion": pack(fake_motion),
            "signatures": [],
        },
    )
    moved = {A.member_id, B.member_id, C.member_id}
    value = councils.seat_link_value(
        fake_link,
        councils.link_proofs([me], {X.member_id}),
        councils.link_proofs(anchor_roster, {X.member_id}),
        [(departure, councils.link_proofs(anchor_roster, moved))],
    )
    fields = councils.seat_fields(g.state.group, [value], bundle(X))
    seat = sign_statement(
        X,
        "roster",
        NETWORK,
        t + 1,
        {**fields, "group": council.group, "seq": council.seq + 1, "prev": council.head,
         "op": "seat"},
    )  # fmt: skip
    with pytest.raises(RuleViolation):
        hijacked = apply(council, seat, rules=RULES)
        # What happens today: X holds G's seat on his own signature.
        assert hijacked.seats[g.state.group].holder == X.member_id


# --- 2. The same election wrapped in another event freezes the seat ------------------------


def test_an_election_rewrapped_in_another_event_cant_keep_its_holder_seated() -> None:
    """A re-signs G's real `elect` event (same motion, same signatures, another time):
    another event id. A council founded on the copy names an anchor G's log never had,
    so G's real recall (prev_link = the real event) never follows it: A is seated for good."""
    g = tracked(A, B, C, name="G2")
    real = g.elect(A, B, B, C)
    copy = _rewrap(A, real, NOW + 4000)
    assert copy.id != real.id
    members = members_at(g, real)
    seat = councils.seat_evidence(
        copy, councils.link_proofs(members, signers_of(real) | {A.member_id}), bundle(A)
    )
    try:
        _, council = councils.make_council(
            A, NETWORK, NOW + 4001, 1, bundle(A), g.state.group, seat, rules=RULES
        )
    except RuleViolation:
        return  # fixed by refusing a link that is not the group's own event
    recalled = g.recall(B, B, C)
    value = councils.seat_link_value(
        recalled,
        councils.link_proofs(members_at(g, recalled), signers_of(recalled)),
        councils.link_proofs(members, signers_of(recalled)),
        [],
    )
    event = sign_statement(
        A,
        "roster",
        NETWORK,
        NOW + 6000,
        {**councils.seat_fields(g.state.group, [value], None), "group": council.group,
         "seq": 1, "prev": council.head, "op": "seat"},
    )  # fmt: skip
    after = apply(council, event, rules=RULES)  # today: stale_motion, A stays
    assert after.seats[g.state.group].holder is None


# --- 3. A recall can't be posted by anyone of G ---------------------------------------------


def test_a_member_of_the_group_can_post_its_recall_to_the_council() -> None:
    """THREAT_MODEL: a withheld recall stays 'until someone in G posts it (any member of G
    may)'. The rule book takes a seat change only from a council member or the NEW holder:
    a recall has none, and council members lack G's roster to build the proofs."""
    one, _, council = two_seats()
    recalled = one.recall(B, B, C)
    event = seat_change(one, council, [recalled], None)
    by_b = sign_statement(
        B,
        "roster",
        NETWORK,
        event.time,
        {k: v for k, v in event.fields.items()
         if k not in ("type", "v", "author", "key", "time", "network")},
    )  # fmt: skip
    after = apply(council, by_b, rules=RULES)  # today: not_in_group
    assert A.member_id not in after.members


# --- 4. A holder who leaves the council strands the seat ----------------------------------


def test_a_seat_emptied_by_its_holder_leaving_can_be_filled_again() -> None:
    """D leaves the council: the seat is empty (holder None). Cell two must recall D before
    electing anyone (has_spokesperson), but a recall of D no longer names the seat's holder."""
    _, two, council = two_seats()
    council = apply(council, remove_event(council, D, D, "left"), rules=RULES)
    recalled = two.recall(E, E, F)
    elected = two.elect(E, F, F, D)
    after = apply(council, seat_change(two, council, [recalled, elected], E), rules=RULES)
    assert after.seats[two.state.group].holder == E.member_id


# --- 5. One member, two seats ---------------------------------------------------------------


def test_a_seat_change_cant_give_a_second_seat_to_a_current_holder() -> None:
    """`link` refuses a holder already on the council; `seat` skips the check when the new
    holder is already a member, so A holds two seats; recalling A from one drops A from the
    council while A still holds the other."""
    one = tracked(A, B, C, name="one5")
    two = tracked(D, E, A, name="two5")  # A on both rosters (e.g. two councils below)
    council = found_council(one, one.elect(A, B, B, C), A)
    elected = two.elect(D, E, E, A)
    motion = councils.make_link_motion(A, NETWORK, council, two.state.group, two.tick())
    acceptance = councils.make_acceptance(D, NETWORK, council.group, two.state.group, two.tick())
    from tests.crypto.test_councils import first_seat, sign_event

    fields = councils.link_fields(motion, [], acceptance, first_seat(two, elected, D))
    council = apply(
        council, sign_event(A, NETWORK, council, "link", two.tick(), fields), rules=RULES
    )
    recalled = two.recall(E, E, A)
    elected = two.elect(A, E, E, D)
    with pytest.raises(RuleViolation):
        after = apply(council, seat_change(two, council, [recalled, elected], A), rules=RULES)
        assert [s.holder for s in after.seats.values()] == [A.member_id, A.member_id]


# --- 6. Caches hand out shared, mutable objects --------------------------------------------


def test_a_cached_statement_cant_be_changed_by_one_caller_for_all() -> None:
    made = sign_statement(A, "vouch", NETWORK, NOW, {"x": 1})
    first = verify_statement(made.body, made.signature, "vouch", NETWORK)
    with pytest.raises(TypeError):
        first.fields["x"] = 2  # type: ignore[index]
    second = verify_statement(made.body, made.signature, "vouch", NETWORK)
    assert second.fields["x"] == 1


def test_a_cached_roster_state_cant_be_changed_by_one_caller_for_all() -> None:
    g = tracked(A, B, C, name="cache")
    g.elect(A, B, B, C)
    from tests.crypto.test_councils import _create_of

    log = [_create_of(g), *g.events]
    state: RosterState = verify_log(log, rules=RULES)
    with pytest.raises((TypeError, AttributeError)):
        state.members.pop(C.member_id)  # type: ignore[attr-defined]
    assert C.member_id in verify_log(log, rules=RULES).members


# --- Sound: pinned ------------------------------------------------------------------------


def test_sound_a_proof_fits_only_its_own_index_and_size() -> None:
    keys = [A, B, C, D, E]
    members = [member_from_bundle(bundle(k)) for k in keys]
    root = roster_root(members)
    for m in members:
        proof = prove(members, m.member_id)
        verify_proof(root, 5, m, proof)
        # (Some paths fit several sizes: the size comes from the signed commitment.)
        for index in {(proof.index + 1) % 5, (proof.index + 4) % 5}:
            with pytest.raises(RuleViolation):
                verify_proof(root, 5, m, replace(proof, index=index))
        other = next(o for o in members if o != m)
        with pytest.raises(RuleViolation):
            verify_proof(root, 5, other, proof)


def test_sound_a_cached_log_does_not_vouch_for_a_log_with_another_network() -> None:
    g = tracked(A, B, C, name="net")
    log = [_first(g), *g.events]
    verify_log(log, rules=RULES)
    with pytest.raises(InvalidStatement):
        verify_statement(log[-1].body, log[-1].signature, "roster", b"\x01" * 32)
    with pytest.raises(InvalidStatement):
        verify_statement(log[-1].body, log[-1].signature, "motion", NETWORK)


def _first(cell_: Cell) -> Statement:
    from tests.crypto.test_councils import _create_of

    return _create_of(cell_)
