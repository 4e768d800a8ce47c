"""Tests of the roster rules that take every membership fact from the log itself.

Each rule closes a hole a hostile review found (issue 7): an add carries its
vetting evidence and is judged against the log's own members; only stewards
found a cell from nothing; a split-made cell is believed only through the
split event; a split keeps both cells at the minimum; a revocation removes
its member and nobody else.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from crypto.chains import make_admission, make_revocation, make_verdict
from crypto.encoding import Value
from crypto.errors import InvalidStatement, RuleViolation
from crypto.keys import IdentityKey
from crypto.motions import (
    make_split_motion,
    parse_motion,
    sign_motion,
    split_event_fields,
    split_terms,
)
from crypto.network import DAY, KeyBundle, make_key_bundle
from crypto.quorum import required_vouches
from crypto.roster import (
    GroupCreation,
    GroupRules,
    RosterState,
    add_fields,
    apply,
    create_fields,
    make_group,
    parse_group_creation,
    sign_event,
)
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.splits import check_split_creation, find_split_creation
from crypto.statements import Statement, pack, sign_statement, unpack
from tests.crypto.helpers import T0, certified_add, fixed_bytes, fixed_key, group_rules

NETWORK = fixed_bytes("evidence network", 32)
GROUP = fixed_bytes("evidence group", 16)
OTHER_GROUP = fixed_bytes("evidence other group", 16)
STEWARD = fixed_key("evidence steward")
A, B, C, D, E, F = (fixed_key(f"evidence {n}") for n in "ABCDEF")
INFORMANT = fixed_key("evidence informant")
CONFEDERATE = fixed_key("evidence confederate")
VETTING = 3 * DAY


@functools.cache
def bundle(key: IdentityKey) -> KeyBundle:
    kem = KemPrivateKey.from_private_bytes(
        KemSuite.X25519, fixed_bytes(f"kem {key.member_id.hex()}", 32)
    )
    return make_key_bundle(
        key, NETWORK, KemSuite.X25519.value, kem.public_key().public_bytes(), T0, T0 + 365 * DAY
    )


def rules(*, vouches: int = 2, cell_min: int = 2, vetting: int = 0) -> GroupRules:
    base = group_rules(STEWARD, cell_min=cell_min, cell_max=12, vouches=vouches)
    return GroupRules(replace(base.policy, vetting_seconds=vetting), base.stewards)


def founding(*others: IdentityKey, rules_: GroupRules) -> RosterState:
    """The steward's founding cell, grown by adds (each certified by the steward, vouched by all)."""
    state = make_group(STEWARD, NETWORK, T0, [bundle(STEWARD)], group=GROUP, rules=rules_).state
    for key in others:
        vouchers = tuple(k for k in (STEWARD, A, B, C, D, E, F) if k.member_id in state.members)
        fields = certified_add(STEWARD, NETWORK, GROUP, bundle(key), T0, vouchers[1:])
        state = apply(state, sign_event(STEWARD, NETWORK, state, "add", T0, fields), rules=rules_)
    return state


def add(
    state: RosterState,
    by: IdentityKey,
    newcomer: IdentityKey,
    vouchers: tuple[IdentityKey, ...] = (),
    *,
    group: bytes | None = None,
    time: int = T0 + 10,
) -> Statement:
    fields = certified_add(by, NETWORK, group or state.group, bundle(newcomer), T0, vouchers)
    return sign_event(by, NETWORK, state, "add", time, fields)


def refused(code: str, state: RosterState | None, event: Statement, rules_: GroupRules) -> None:
    with pytest.raises(RuleViolation) as info:
        apply(state, event, rules=rules_)
    assert info.value.code == code, info.value


# Founding cells


def test_only_stewards_found_a_cell_from_nothing() -> None:
    # The fake-cell attack: an informant signs a create holding themself and the victim.
    fields = create_fields("cell", 0, None, [bundle(INFORMANT), bundle(A)], None)
    event = sign_event(INFORMANT, NETWORK, None, "create", T0, fields, group=OTHER_GROUP)
    refused("invalid_origin", None, event, rules())


def test_the_stewards_founding_cell_is_accepted_and_marked() -> None:
    state = founding(rules_=rules())
    assert state.founding


# Adds carry their vetting


def test_an_add_with_enough_vouches_from_members_is_accepted() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    after = apply(state, add(state, A, C, (B,)), rules=r)
    assert C.member_id in after.members


def test_an_add_short_of_the_policys_vouches_is_not_vetted() -> None:
    r = rules(vouches=3)
    state = founding(A, B, rules_=r)
    refused("not_vetted", state, add(state, A, C, (B,)), r)


def test_a_small_founding_cell_needs_every_member_instead() -> None:
    r = rules(vouches=3)
    state = founding(A, rules_=r)
    assert required_vouches(r.policy, len(state.members), founding=state.founding) == 2
    refused("not_vetted", state, add(state, A, C), r)
    assert C.member_id in apply(state, add(state, A, C, (STEWARD,)), rules=r).members


def test_a_vouch_from_outside_the_group_does_not_count() -> None:
    r = rules()
    state = founding(A, rules_=r)
    refused("not_in_cell", state, add(state, A, C, (INFORMANT,)), r)


def test_a_certificate_issued_by_an_outsider_is_refused() -> None:
    # A member of the group posts the add of someone an outsider certified.
    r = rules()
    state = founding(A, B, rules_=r)
    admission = make_admission(
        INFORMANT,
        NETWORK,
        CONFEDERATE.public_key(),
        GROUP,
        fixed_bytes("invite c", 16),
        fixed_bytes("join c", 32),
        T0,
    )
    vouch = make_verdict("vouch", B, NETWORK, admission, T0).statement
    fields = add_fields(bundle(CONFEDERATE), admission, [vouch])
    refused("not_in_cell", state, sign_event(A, NETWORK, state, "add", T0 + 5, fields), r)


def test_a_certificate_for_another_cell_is_refused() -> None:
    # The member-of-another-cell attack: an admission that names another group.
    r = rules()
    state = founding(A, B, rules_=r)
    refused("wrong_cell", state, add(state, A, C, (B,), group=OTHER_GROUP), r)


def test_a_vouch_counted_twice_is_refused() -> None:
    r = rules(vouches=3)
    state = founding(A, B, rules_=r)
    refused("already_vouched", state, add(state, A, C, (B, B)), r)


def test_the_inviters_own_vouch_is_not_a_second_one() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    refused("already_vouched", state, add(state, A, C, (A,)), r)


def test_a_vouch_for_another_admission_is_refused() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    other = make_admission(
        A, NETWORK, D.public_key(), GROUP, fixed_bytes("i", 16), fixed_bytes("j", 32), T0
    )
    stray = make_verdict("vouch", B, NETWORK, other, T0).statement
    fields = certified_add(A, NETWORK, GROUP, bundle(C), T0)
    fields["vouches"] = [pack(stray)]
    refused("wrong_admission", state, sign_event(A, NETWORK, state, "add", T0 + 5, fields), r)


def test_a_certificate_over_another_key_is_refused() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    fields = certified_add(A, NETWORK, GROUP, bundle(C), T0, (B,))
    fields["bundle"] = pack(bundle(D).statement)
    refused("key_mismatch", state, sign_event(A, NETWORK, state, "add", T0 + 5, fields), r)


def test_an_add_without_its_evidence_is_refused() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    fields: dict[str, Value] = {"bundle": pack(bundle(C).statement)}
    refused("invalid_event", state, sign_event(A, NETWORK, state, "add", T0 + 5, fields), r)


def test_the_vetting_window_holds_an_add_unless_every_member_vouched() -> None:
    r = rules(vetting=VETTING)
    state = founding(A, B, rules_=r)
    refused("not_vetted", state, add(state, A, C, (B,), time=T0 + VETTING - 1), r)
    assert C.member_id in apply(state, add(state, A, C, (B,), time=T0 + VETTING), rules=r).members
    unanimous = add(state, A, C, (B, STEWARD), time=T0 + 1)
    assert C.member_id in apply(state, unanimous, rules=r).members


# Splits


def split_of(state: RosterState, moved: tuple[IdentityKey, ...], r: GroupRules) -> Statement:
    motion = make_split_motion(moved[0], NETWORK, state, [k.member_id for k in moved], T0 + 20)
    signatures = [sign_motion(k, NETWORK, motion, T0 + 21) for k in moved[1:]]
    return sign_event(
        moved[0], NETWORK, state, "split", T0 + 22, split_event_fields(motion, signatures)
    )


def test_a_split_below_the_minimum_is_refused() -> None:
    r = rules(cell_min=3)
    state = founding(A, B, C, D, rules_=r)
    refused("below_minimum", state, split_of(state, (A,), r), r)
    refused("below_minimum", state, split_of(state, (A, B, C), r), r)
    # Five members can't split into two cells of three.
    assert len(state.members) == 5


def test_a_split_that_keeps_both_cells_at_the_minimum_is_accepted() -> None:
    r = rules(cell_min=2)
    state = founding(A, B, C, rules_=r)
    after = apply(state, split_of(state, (A, B), r), rules=r)
    assert set(after.members) == {STEWARD.member_id, C.member_id}


def new_cell(
    state: RosterState, split: Statement, members: tuple[IdentityKey, ...], r: GroupRules
) -> GroupCreation:
    _, new_group = split_terms(parse_motion(unpack(split.fields["motion"], "motion", NETWORK)))
    fields = create_fields("cell", 0, None, [bundle(k) for k in members], split.id, state.lines)
    event = sign_event(members[0], NETWORK, None, "create", T0 + 23, fields, group=new_group)
    return parse_group_creation(event, rules=r)


def test_the_cell_a_split_made_is_accepted_through_the_split() -> None:
    r = rules()
    state = founding(A, B, C, rules_=r)
    split = split_of(state, (A, B), r)
    check_split_creation(state, split, new_cell(state, split, (A, B), r), rules=r)


def test_a_cell_that_adds_someone_the_split_did_not_move_is_refused() -> None:
    r = rules()
    state = founding(A, B, C, rules_=r)
    split = split_of(state, (A, B), r)
    with pytest.raises(RuleViolation) as info:
        check_split_creation(state, split, new_cell(state, split, (A, B, C), r), rules=r)
    assert info.value.code == "invalid_origin"


def test_a_cell_whose_origin_is_no_split_of_the_log_is_refused() -> None:
    # The fake-cell attack with a random origin: no event of the log made it.
    r = rules()
    state = founding(A, B, C, rules_=r)
    log_event = sign_event(
        STEWARD,
        NETWORK,
        None,
        "create",
        T0,
        create_fields("cell", 0, None, [bundle(STEWARD)], None),
        group=GROUP,
    )
    fields = create_fields("cell", 0, None, [bundle(INFORMANT), bundle(A)], fixed_bytes("x", 32))
    fake = sign_event(INFORMANT, NETWORK, None, "create", T0, fields, group=OTHER_GROUP)
    with pytest.raises(RuleViolation) as info:
        find_split_creation([log_event], parse_group_creation(fake, rules=r), rules=r)
    assert info.value.code == "invalid_origin"
    assert A.member_id in state.members


# Revocation


def revoked_remove(
    state: RosterState, by: IdentityKey, member: IdentityKey, steward: IdentityKey
) -> Statement:
    revocation = make_revocation(steward, NETWORK, member.member_id, T0 + 30)
    fields: dict[str, Value] = {
        "member": member.member_id,
        "reason": "revoked",
        "revocation": pack(revocation.statement),
    }
    return sign_event(by, NETWORK, state, "remove", T0 + 31, fields)


def test_a_revoked_member_is_removed_by_any_member_with_the_revocation() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    after = apply(state, revoked_remove(state, B, A, STEWARD), rules=r)
    assert A.member_id not in after.members
    assert after.needs_rekey


def test_a_revocation_signed_by_a_non_steward_removes_nobody() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    refused("not_allowed", state, revoked_remove(state, B, A, INFORMANT), r)


def test_a_revocation_of_someone_else_removes_nobody() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    revocation = make_revocation(STEWARD, NETWORK, C.member_id, T0 + 30)
    fields: dict[str, Value] = {
        "member": A.member_id,
        "reason": "revoked",
        "revocation": pack(revocation.statement),
    }
    refused("wrong_member", state, sign_event(B, NETWORK, state, "remove", T0 + 31, fields), r)


def test_an_admission_admits_once() -> None:
    # A member moved away by a split can't be added back on their old certificate.
    r = rules(cell_min=2)
    state = founding(A, B, rules_=r)
    fields = certified_add(A, NETWORK, GROUP, bundle(C), T0, (B,))
    with_c = apply(state, sign_event(A, NETWORK, state, "add", T0 + 5, fields), rules=r)
    with_d = apply(with_c, add(with_c, A, D, (B, C)), rules=r)
    away = apply(with_d, split_of(with_d, (C, D), r), rules=r)
    assert C.member_id not in away.members
    again = sign_event(A, NETWORK, away, "add", T0 + 40, fields)
    refused("admission_used", away, again, r)


# Branch diversity, from the lines the log itself carries


def test_an_add_vouched_only_inside_the_inviters_subtree_is_refused() -> None:
    # A is an outsider to B's subtree; B's invitee C vouches for B's next
    # invitee D: an informant and their confederates can't admit each other.
    r = rules(vouches=2)
    state = founding(A, B, rules_=r)
    with_c = apply(state, add(state, B, C, (A, STEWARD)), rules=r)
    assert with_c.lines[C.member_id] == {STEWARD.member_id, B.member_id}
    refused("not_vetted", with_c, add(with_c, B, D, (C,)), r)
    assert D.member_id in apply(with_c, add(with_c, B, D, (C, A)), rules=r).members


def test_no_outsider_is_needed_when_everyone_is_in_the_subtree() -> None:
    r = rules(vouches=1)
    state = founding(rules_=r)  # the steward alone: everyone is in their subtree
    assert A.member_id in apply(state, add(state, STEWARD, A), rules=r).members


def test_a_split_cell_keeps_its_members_lines_and_a_lie_about_them_is_refused() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    state = apply(state, add(state, A, C, (B, STEWARD)), rules=r)
    split = split_of(state, (B, C), r)
    made = new_cell(state, split, (B, C), r)
    assert made.state.lines[C.member_id] == {STEWARD.member_id, A.member_id}
    lied = dict(state.lines)
    lied[C.member_id] = frozenset()  # C pretends to be no one's invitee
    fields = create_fields("cell", 0, None, [bundle(B), bundle(C)], split.id, lied)
    _, new_group = split_terms(parse_motion(unpack(split.fields["motion"], "motion", NETWORK)))
    event = sign_event(B, NETWORK, None, "create", T0 + 23, fields, group=new_group)
    with pytest.raises(RuleViolation) as info:
        check_split_creation(state, split, parse_group_creation(event, rules=r), rules=r)
    assert info.value.code == "invalid_origin"


def test_a_split_cell_keeps_when_probation_began_and_an_earlier_date_is_refused() -> None:
    r = rules()
    state = founding(A, B, rules_=r)
    state = apply(state, add(state, A, C, (B, STEWARD)), rules=r)
    added_at = state.since[C.member_id]
    split = split_of(state, (B, C), r)
    _, new_group = split_terms(parse_motion(unpack(split.fields["motion"], "motion", NETWORK)))

    def created(since: dict[bytes, int] | None) -> GroupCreation:
        fields = create_fields(
            "cell", 0, None, [bundle(B), bundle(C)], split.id, state.lines, since
        )
        event = sign_event(B, NETWORK, None, "create", T0 + 23, fields, group=new_group)
        return parse_group_creation(event, rules=r)

    carried = created(dict(state.since))
    check_split_creation(state, split, carried, rules=r)
    assert carried.state.since[C.member_id] == added_at
    # Without `since`, probation counts again from the create: later, so allowed.
    fresh = created(None)
    check_split_creation(state, split, fresh, rules=r)
    assert fresh.state.since[C.member_id] == T0 + 23
    # C pretends their probation began before they were added: refused.
    with pytest.raises(RuleViolation) as info:
        check_split_creation(state, split, created({**state.since, C.member_id: 0}), rules=r)
    assert info.value.code == "invalid_origin"


def test_stewards_carry_no_line_and_a_create_gives_one_per_member() -> None:
    fields = create_fields(
        "cell", 0, None, [bundle(STEWARD)], None, {STEWARD.member_id: frozenset({A.member_id})}
    )
    refused(
        "invalid_event",
        None,
        sign_event(STEWARD, NETWORK, None, "create", T0, fields, group=GROUP),
        rules(),
    )
    fields = create_fields("cell", 0, None, [bundle(STEWARD)], None)
    fields["lines"] = []
    refused(
        "invalid_event",
        None,
        sign_event(STEWARD, NETWORK, None, "create", T0, fields, group=GROUP),
        rules(),
    )


# Findings of the second review: bad keys, dated-back certificates, odd splits


def test_a_key_bundle_whose_kem_key_is_no_key_is_refused() -> None:
    # A low-order X25519 point has the right length; sealing to it fails, so
    # in a roster it would stop the whole cell from ever rekeying.
    with pytest.raises(InvalidStatement):
        make_key_bundle(A, NETWORK, KemSuite.X25519.value, bytes(32), T0, T0 + DAY)


def test_a_certificate_dated_back_does_not_shorten_the_window() -> None:
    # The inviter B dates the certificate a whole window back; A, from outside
    # B's subtree, vouches now: the window runs from A's vouch.
    r = rules(vouches=2, vetting=VETTING)
    state = founding(A, B, rules_=r)
    now = T0 + 10 * VETTING
    admission = make_admission(
        B, NETWORK, C.public_key(), GROUP, fixed_bytes("i c", 16), fixed_bytes("j c", 32), T0
    )
    vouch = make_verdict("vouch", A, NETWORK, admission, now).statement
    fields = add_fields(bundle(C), admission, [vouch])
    refused("not_vetted", state, sign_event(B, NETWORK, state, "add", now + 60, fields), r)
    later = sign_event(B, NETWORK, state, "add", now + VETTING, fields)
    assert C.member_id in apply(state, later, rules=r).members


def test_an_add_older_than_its_evidence_is_refused() -> None:
    r = rules(vouches=2)
    state = founding(A, B, rules_=r)
    fields = certified_add(A, NETWORK, GROUP, bundle(C), T0 + 100, (B, STEWARD))
    refused("not_vetted", state, sign_event(A, NETWORK, state, "add", T0 + 99, fields), r)


def test_a_split_into_its_own_group_is_refused() -> None:
    r = rules()
    state = founding(A, B, C, rules_=r)
    motion = make_split_motion(A, NETWORK, state, [A.member_id, B.member_id], T0 + 20)
    terms = {**motion.terms, "new_group": GROUP}
    statement = sign_statement(
        A,
        "motion",
        NETWORK,
        T0 + 20,
        {"group": GROUP, "kind": "split", "terms": terms, "head": state.head},
    )
    with pytest.raises(RuleViolation) as info:
        split_terms(parse_motion(statement))
    assert info.value.code == "invalid_motion"


def test_the_largest_cell_a_split_can_make_fits_in_one_statement() -> None:
    # The widest policy (cell_max 100, cell_min 2) lets a split move 98
    # members; the new cell's create event carries each one's key bundle
    # (ML-KEM-768 + X25519, about 1.6 KiB) and invite line. A statement limit
    # below that (it was 16 KiB) made a full cell of 20 unable to split.
    members = [fixed_key(f"evidence wide {n}") for n in range(98)]
    bundles = []
    for key in members:
        kem = KemPrivateKey.generate(KemSuite.MLKEM768_X25519)
        bundles.append(
            make_key_bundle(
                key, NETWORK, kem.suite.value, kem.public_key().public_bytes(), T0, T0 + DAY
            )
        )
    lines = {
        key.member_id: frozenset(fixed_bytes(f"line {n}", 32) for n in range(6)) for key in members
    }
    fields = create_fields("cell", 0, None, bundles, fixed_bytes("a split", 32), lines)
    event = sign_event(members[0], NETWORK, None, "create", T0, fields, group=OTHER_GROUP)
    assert len(event.body) > 150 * 1024
    assert unpack(pack(event), "roster", NETWORK).id == event.id
