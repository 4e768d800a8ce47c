"""Tests of crypto.motions and its quorum (crypto.quorum): roster changes that take effect
when their quorum has signed."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pytest

from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.motions import (
    Motion,
    make_split_motion,
    parse_motion,
    sign_motion,
    split_event_fields,
    split_terms,
)
from crypto.network import DAY, KeyBundle, make_key_bundle
from crypto.quorum import required_signers, valid_signers
from crypto.roster import RosterState, apply, make_group, sign_event
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import Statement, pack, sign_statement
from tests.crypto.helpers import T0, certified_add, fixed_bytes, fixed_key, group_rules, reverify

NETWORK = fixed_bytes("network", 32)
GROUP = fixed_bytes("group", 16)
OTHER_GROUP = fixed_bytes("other group", 16)
CELL_MAX = 6

A, B, C, D = (fixed_key(name) for name in "ABCD")
MALLORY = fixed_key("mallory")
RULES = group_rules(A, B, C, D, cell_max=CELL_MAX)


@functools.cache
def bundle(key: IdentityKey) -> KeyBundle:
    kem = KemPrivateKey.from_private_bytes(
        KemSuite.X25519, fixed_bytes(f"kem {key.member_id.hex()}", 32)
    )
    public = kem.public_key().public_bytes()
    return make_key_bundle(key, NETWORK, KemSuite.X25519.value, public, T0, T0 + 365 * DAY)


def cell(*keys: IdentityKey, group: bytes = GROUP) -> RosterState:
    return make_group(
        keys[0], NETWORK, T0, [bundle(k) for k in keys], group=group, rules=RULES
    ).state


@pytest.fixture(scope="module")
def state() -> RosterState:
    return cell(A, B, C, D)


def ids(*keys: IdentityKey) -> list[bytes]:
    return [k.member_id for k in keys]


def split(
    state: RosterState, motion: Motion, signatures: Sequence[Statement], by: IdentityKey = A
) -> RosterState:
    fields = split_event_fields(motion, list(signatures))
    event = sign_event(by, NETWORK, state, "split", T0 + 10, fields)
    return apply(state, event, rules=RULES)


def split_refused(
    code: str, state: RosterState, motion: Motion, signatures: Sequence[Statement]
) -> None:
    with pytest.raises(RuleViolation) as info:
        split(state, motion, signatures)
    assert info.value.code == code


def signed(motion: Motion, *keys: IdentityKey) -> list[Statement]:
    return [sign_motion(k, NETWORK, motion, T0 + 5) for k in keys]


# Quorum reached


def test_split_moves_the_members_once_each_has_signed(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    after = split(state, motion, signed(motion, C, D))
    assert set(after.members) == {A.member_id, B.member_id}
    assert after.seq == state.seq + 1


def test_opening_a_motion_counts_as_signing_it(state: RosterState) -> None:
    motion = make_split_motion(C, NETWORK, state, ids(C, D), T0)
    assert valid_signers(motion, signed(motion, D), state) == frozenset(ids(C, D))
    after = split(state, motion, signed(motion, D))
    assert set(after.members) == {A.member_id, B.member_id}


def test_members_who_stay_need_not_sign(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    assert required_signers(state, motion) == frozenset(ids(C, D))
    after = split(state, motion, signed(motion, C, D))
    assert D.member_id not in after.members


def test_signatures_of_members_who_stay_are_accepted_but_not_needed(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    after = split(state, motion, signed(motion, B, C, D))
    assert set(after.members) == {A.member_id, B.member_id}


def test_split_leaves_the_group_needing_a_rekey(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    assert split(state, motion, signed(motion, C, D)).needs_rekey


def test_split_terms_name_the_moved_members_and_a_new_group(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(D, C), T0)
    moved, new_group = split_terms(motion)
    assert moved == frozenset(ids(C, D))
    assert len(new_group) == 16
    assert new_group != state.group
    assert motion.group == state.group
    assert motion.kind == "split"
    assert motion.statement.fields["head"] == state.head


def test_motion_and_signatures_from_the_wire_parse_the_same(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C), T0)
    again = parse_motion(reverify(motion.statement, "motion", NETWORK))
    assert again.id == motion.id
    assert split_terms(again) == split_terms(motion)
    (signature,) = signed(motion, C)
    assert valid_signers(again, [reverify(signature, "motion-sign", NETWORK)], state) == frozenset(
        ids(A, C)
    )


# Quorum not reached


def test_split_missing_one_moved_members_signature_is_quorum_not_reached(
    state: RosterState,
) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(B, C, D), T0)
    split_refused("quorum_not_reached", state, motion, signed(motion, B, C))


def test_opener_who_stays_does_not_sign_for_the_moved(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(D), T0)
    split_refused("quorum_not_reached", state, motion, [])


def test_the_same_signature_twice_counts_once(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    (c_signs,) = signed(motion, C)
    split_refused("quorum_not_reached", state, motion, [c_signs, c_signs])


def test_opening_by_a_non_member_counts_for_nothing(state: RosterState) -> None:
    motion = make_split_motion(MALLORY, NETWORK, state, ids(C, D), T0)
    assert valid_signers(motion, signed(motion, C), state) == frozenset(ids(C))
    split_refused("quorum_not_reached", state, motion, signed(motion, C))


# Signatures that don't count


def test_signature_by_a_non_member_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C), T0)
    split_refused("not_in_group", state, motion, signed(motion, C, MALLORY))


def test_signature_for_another_motion_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    other = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    assert other.id != motion.id  # each draws its own new group id
    split_refused("invalid_motion", state, motion, [*signed(motion, C), *signed(other, D)])


def test_statement_that_is_not_a_motion_signature_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C), T0)
    vouch = sign_statement(C, "vouch", NETWORK, T0, {"motion": motion.id, "group": GROUP})
    with pytest.raises(RuleViolation) as info:
        valid_signers(motion, [vouch], state)
    assert info.value.code == "invalid_motion"


def test_split_event_carrying_signatures_of_another_type_is_malformed(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C), T0)
    vouch = sign_statement(C, "vouch", NETWORK, T0, {"motion": motion.id, "group": GROUP})
    fields: dict[str, Value] = {"motion": pack(motion.statement), "signatures": [pack(vouch)]}
    event = sign_event(A, NETWORK, state, "split", T0, fields)
    with pytest.raises(RuleViolation) as info:
        apply(state, event, rules=RULES)
    assert info.value.code == "invalid_event"


# Motions that may not pass


def test_moving_every_member_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(A, B, C, D), T0)
    split_refused("invalid_motion", state, motion, signed(motion, B, C, D))


def test_moving_no_one_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, [], T0)
    split_refused("invalid_motion", state, motion, [])


def test_moving_a_non_member_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, MALLORY), T0)
    split_refused("invalid_motion", state, motion, signed(motion, C, MALLORY))


def test_motion_naming_a_member_twice_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, C), T0)
    split_refused("invalid_motion", state, motion, signed(motion, C))


def test_motion_for_another_group_is_refused(state: RosterState) -> None:
    other = cell(A, B, C, D, group=OTHER_GROUP)
    motion = make_split_motion(A, NETWORK, other, ids(C), T0)
    with pytest.raises(RuleViolation) as info:
        required_signers(state, motion)
    assert info.value.code == "wrong_group"
    split_refused("wrong_group", state, motion, signed(motion, C))


def test_motion_replayed_after_its_members_left_is_refused(state: RosterState) -> None:
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    signatures = signed(motion, C, D)
    after = split(state, motion, signatures)
    split_refused("invalid_motion", after, motion, signatures)


def test_carried_out_motion_cannot_be_carried_out_again_after_members_rejoin(
    state: RosterState,
) -> None:
    # Fails today (see the report to the parent session): nothing records that a
    # motion took effect, and its `head` is never checked, so once C and D are
    # back in the group any member can replay the old split with the old
    # signatures and move them out again without their consent.
    motion = make_split_motion(A, NETWORK, state, ids(C, D), T0)
    signatures = signed(motion, C, D)
    after = split(state, motion, signatures)
    for newcomer in (C, D):
        fields = certified_add(A, NETWORK, GROUP, bundle(newcomer), T0 + 20, (B,))
        after = apply(after, sign_event(A, NETWORK, after, "add", T0 + 20, fields), rules=RULES)
    assert set(after.members) == set(state.members)
    with pytest.raises(RuleViolation):
        split(after, motion, signatures, by=B)


# Parsing


def test_statement_that_is_not_a_motion_is_refused() -> None:
    vouch = sign_statement(A, "vouch", NETWORK, T0, {"group": GROUP})
    with pytest.raises(RuleViolation) as info:
        parse_motion(vouch)
    assert info.value.code == "invalid_motion"


def test_motion_of_an_unknown_kind_is_refused(state: RosterState) -> None:
    fields: dict[str, Value] = {"group": GROUP, "kind": "coup", "terms": {}, "head": state.head}
    with pytest.raises(RuleViolation) as info:
        parse_motion(sign_statement(A, "motion", NETWORK, T0, fields))
    assert info.value.code == "invalid_motion"


def test_motion_without_terms_is_refused(state: RosterState) -> None:
    fields: dict[str, Value] = {"group": GROUP, "kind": "split", "terms": [], "head": state.head}
    with pytest.raises(RuleViolation) as info:
        parse_motion(sign_statement(A, "motion", NETWORK, T0, fields))
    assert info.value.code == "invalid_motion"


@pytest.mark.parametrize(
    "terms",
    [
        {"new_group": bytes(16)},
        {"moved": [b"short"], "new_group": bytes(16)},
        {"moved": [bytes(32)]},
        {"moved": [bytes(32)], "new_group": bytes(15)},
    ],
    ids=["no moved", "short id", "no new group", "short new group"],
)
def test_split_with_malformed_terms_is_refused(state: RosterState, terms: dict[str, Value]) -> None:
    fields: dict[str, Value] = {"group": GROUP, "kind": "split", "terms": terms, "head": state.head}
    motion = parse_motion(sign_statement(A, "motion", NETWORK, T0, fields))
    with pytest.raises(RuleViolation) as info:
        split_terms(motion)
    assert info.value.code == "invalid_motion"
