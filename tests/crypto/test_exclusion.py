"""Tests of crypto.exclusion: expulsion by quorum and self-revocation, as revocations and in logs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from crypto.chains import make_revocation, parse_revocation, verify_revocation_list
from crypto.encoding import Value
from crypto.errors import ChainError, CryptoError, InvalidSignature, RuleViolation
from crypto.exclusion import (
    check_grounds,
    expulsion_grounds,
    make_expel_motion,
    make_freeze_motion,
    make_self_revocation,
    open_reason,
)
from crypto.keys import IdentityKey
from crypto.motion_rules import check_opening
from crypto.motions import Motion, sign_motion, split_event_fields
from crypto.network import DAY, Genesis, Policy, make_genesis
from crypto.roster import GroupRules, RosterState, apply, make_group, sign_event
from crypto.statements import Statement, pack, verify_statement
from tests.crypto.helpers import T0, fixed_key, flip
from tests.crypto.test_roster import NETWORK, OTHER_NETWORK, bundle, epoch_event, kem_key

A, B, C, D, E = (fixed_key(name) for name in "ABCDE")
MALLORY = fixed_key("mallory")
POLICY = Policy(cell_min=2, cell_max=12, vouches=1, vetting_seconds=0)
RULES = GroupRules(POLICY, frozenset(k.member_id for k in (A, B, C, D, E)))
AT = T0 + 40 * DAY


def cell(*keys: IdentityKey, group: bytes | None = None) -> RosterState:
    return make_group(A, NETWORK, T0, [bundle(k) for k in keys], rules=RULES, group=group).state


def expel_motion(state: RosterState, subject: IdentityKey, by: IdentityKey = A) -> Motion:
    return make_expel_motion(by, NETWORK, state, subject.member_id, "sold us out", AT - 100)


def revocation(
    state: RosterState,
    motion: Motion,
    signers: Sequence[IdentityKey],
    *,
    by: IdentityKey | None = None,
    seq: int = 0,
    prev: bytes = bytes(32),
) -> Statement:
    signatures = [sign_motion(k, NETWORK, motion, AT - 10) for k in signers]
    grounds = expulsion_grounds(state, motion, signatures)
    author = by or (signers[-1] if signers else A)
    subject = motion.terms["member"]
    assert isinstance(subject, bytes)
    return make_revocation(
        author, NETWORK, subject, AT, seq=seq, prev=prev, grounds=grounds
    ).statement


def expel_event(state: RosterState, revoked: Statement, by: IdentityKey = A) -> Statement:
    subject = revoked.fields["subject"]
    fields = {"member": subject, "reason": "expelled", "revocation": pack(revoked)}
    return sign_event(by, NETWORK, state, "remove", AT + 1, fields)


# --- An expulsion that passes ---------------------------------------------------------


def test_a_majority_of_the_others_expels_and_the_log_carries_it_out_once() -> None:
    state = cell(A, B, C, D, E)  # four others: a majority is three
    motion = expel_motion(state, E)
    check_opening(state, motion, RULES, AT)
    revoked = revocation(state, motion, [B, C])
    grounds = check_grounds(revoked, E.member_id, RULES)
    assert grounds.kind == "expelled" and grounds.signers == {A.member_id, B.member_id, C.member_id}
    after = apply(state, expel_event(state, revoked), rules=RULES)
    assert E.member_id not in after.members and after.needs_rekey
    assert motion.id in after.motions_done
    # Carried out once: the same expulsion can't be applied again (E is gone anyway).
    with pytest.raises(RuleViolation):
        apply(after, expel_event(after, revoked), rules=RULES)


def test_the_reason_opens_for_the_others_and_not_for_the_subject() -> None:
    state = cell(A, B, C)
    motion = expel_motion(state, C)
    assert open_reason(motion, B.member_id, kem_key(B.member_id.hex())) == "sold us out"
    assert open_reason(motion, C.member_id, kem_key(C.member_id.hex())) is None
    # B's box under A's key, or a box moved to another recipient: nothing opens.
    assert open_reason(motion, B.member_id, kem_key(A.member_id.hex())) is None


def test_an_expulsion_is_checked_by_anyone_from_the_revocation_alone() -> None:
    state = cell(A, B, C, D, E)
    revoked = revocation(state, expel_motion(state, E), [B, C])
    genesis = _genesis()
    chain = verify_revocation_list(genesis, [_renetworked(revoked, genesis)])
    assert chain.by_subject[E.member_id].grounds == "expelled"


# --- Refused --------------------------------------------------------------------------


def test_too_few_signatures_are_refused() -> None:
    state = cell(A, B, C, D, E)
    revoked = revocation(state, expel_motion(state, E), [B])
    with pytest.raises(RuleViolation, match="quorum_not_reached|2 of the 3"):
        check_grounds(revoked, E.member_id, RULES)
    with pytest.raises(RuleViolation):
        apply(state, expel_event(state, revoked), rules=RULES)


def test_the_subject_never_counts_and_never_moves_their_own_expulsion() -> None:
    state = cell(A, B, C, D, E)
    motion = expel_motion(state, E)
    with pytest.raises(RuleViolation, match="subject"):
        check_grounds(revocation(state, motion, [B, E]), E.member_id, RULES)
    with pytest.raises(RuleViolation):
        make_expel_motion(E, NETWORK, state, E.member_id, "me", AT)


def test_a_signer_from_outside_the_group_is_refused() -> None:
    state = cell(A, B, C, D, E)
    motion = expel_motion(state, E)
    with pytest.raises((RuleViolation, KeyError)):
        revocation(state, motion, [B, MALLORY])  # no proof can show Mallory on the roster
    # A forged proof for Mallory (his leaf swapped in) does not climb to the root.
    signatures = [sign_motion(k, NETWORK, motion, AT - 10) for k in (B, C)]
    grounds = expulsion_grounds(state, motion, signatures)
    proofs = grounds["proofs"]
    assert isinstance(proofs, list) and isinstance(proofs[2], list)
    proofs[2][0:2] = [MALLORY.member_id, MALLORY.public_key().raw]  # in place of C
    grounds["signatures"] = [
        pack(signatures[0]),
        pack(sign_motion(MALLORY, NETWORK, motion, AT - 10)),
    ]
    forged = make_revocation(B, NETWORK, E.member_id, AT, grounds=grounds).statement
    with pytest.raises(RuleViolation, match="not on the committed roster|invalid_proof"):
        check_grounds(forged, E.member_id, RULES)


def test_a_stale_roster_is_refused_where_the_expulsion_takes_effect() -> None:
    state = cell(A, B, C, D, E)
    motion = expel_motion(state, E)
    revoked = revocation(state, motion, [B, C])
    left = apply(
        state,
        sign_event(D, NETWORK, state, "remove", AT, {"member": D.member_id, "reason": "left"}),
        rules=RULES,
    )
    with pytest.raises(RuleViolation, match="stale_roster|roster changed"):
        apply(left, expel_event(left, revoked), rules=RULES)


def test_the_revocation_must_name_the_motions_subject_and_reason_must_match() -> None:
    state = cell(A, B, C, D, E)
    revoked = revocation(state, expel_motion(state, E), [B, C])
    with pytest.raises(RuleViolation, match="another member"):
        check_grounds(revoked, D.member_id, RULES)
    fields = {"member": E.member_id, "reason": "revoked", "revocation": pack(revoked)}
    with pytest.raises(RuleViolation, match="expelled"):
        apply(state, sign_event(A, NETWORK, state, "remove", AT + 1, fields), rules=RULES)


def test_an_expulsion_carried_into_another_group_removes_the_member_there_on_its_own_proof() -> (
    None
):
    home = cell(A, B, C, D, E)
    revoked = revocation(home, expel_motion(home, E), [B, C])
    other = cell(A, E, group=bytes(range(16)))
    after = apply(other, expel_event(other, revoked), rules=RULES)
    assert E.member_id not in after.members
    assert after.motions_done == other.motions_done  # the motion was not this group's


def test_flipped_bits_wrong_network_and_replays_are_refused() -> None:
    state = cell(A, B, C, D, E)
    revoked = revocation(state, expel_motion(state, E), [B, C])
    with pytest.raises(InvalidSignature):
        verify_statement(
            flip(revoked.body, len(revoked.body) - 300), revoked.signature, "revocation", NETWORK
        )
    with pytest.raises(CryptoError):
        verify_statement(flip(revoked.body, 40), revoked.signature, "revocation", NETWORK)
    with pytest.raises(CryptoError):
        verify_statement(revoked.body, revoked.signature, "revocation", OTHER_NETWORK)
    # Replayed into the chain a second time: the chain refuses a second revocation of E.
    genesis = _genesis()
    first = _renetworked(revoked, genesis)
    with pytest.raises(ChainError):
        verify_revocation_list(genesis, [first, first])


def test_a_signature_for_another_motion_is_refused() -> None:
    state = cell(A, B, C, D, E)
    motion = expel_motion(state, E)
    other = expel_motion(state, D)
    signatures = [sign_motion(B, NETWORK, other, AT - 10), sign_motion(C, NETWORK, motion, AT - 10)]
    grounds = expulsion_grounds(state, motion, signatures)
    forged = make_revocation(C, NETWORK, E.member_id, AT, grounds=grounds).statement
    with pytest.raises(RuleViolation, match="another motion"):
        check_grounds(forged, E.member_id, RULES)


def test_a_publisher_who_did_not_sign_is_refused() -> None:
    state = cell(A, B, C, D, E)
    revoked = revocation(state, expel_motion(state, E), [B, C], by=D)
    with pytest.raises(RuleViolation, match="signers"):
        check_grounds(revoked, E.member_id, RULES)


# --- Self-revocation ------------------------------------------------------------------


def test_a_self_revocation_is_published_only_by_its_holder() -> None:
    held = make_self_revocation(E, NETWORK, B.member_id, T0)
    grounds = {"grounds": "self", "self": pack(held)}
    published = make_revocation(B, NETWORK, E.member_id, AT, grounds=grounds).statement
    assert check_grounds(published, E.member_id, RULES).kind == "self"
    by_other = make_revocation(C, NETWORK, E.member_id, AT, grounds=grounds).statement
    with pytest.raises(RuleViolation, match="holds"):
        check_grounds(by_other, E.member_id, RULES)
    with pytest.raises(RuleViolation, match="subject"):
        check_grounds(published, D.member_id, RULES)
    with pytest.raises(RuleViolation):
        make_self_revocation(E, NETWORK, E.member_id, T0)
    # In a log: removed as revoked, not as expelled.
    state = cell(A, B, E)
    fields = {"member": E.member_id, "reason": "revoked", "revocation": pack(published)}
    after = apply(state, sign_event(A, NETWORK, state, "remove", AT + 1, fields), rules=RULES)
    assert E.member_id not in after.members


def test_a_steward_revocation_still_needs_a_steward() -> None:
    plain = make_revocation(MALLORY, NETWORK, E.member_id, AT).statement
    with pytest.raises(RuleViolation, match="steward"):
        check_grounds(plain, E.member_id, RULES)
    with pytest.raises(ChainError, match="steward"):
        parse_revocation(_renetworked(plain, _genesis()), _genesis())


# --- helpers --------------------------------------------------------------------------


_GENESIS: list[Genesis] = []


def _genesis() -> Genesis:
    """A genesis with A its steward (its id is not NETWORK: statements are signed again for it)."""
    if not _GENESIS:
        _GENESIS.append(make_genesis(A, POLICY, T0))
    return _GENESIS[0]


def _renetworked(revoked: Statement, genesis: Genesis) -> Statement:
    """The revocation, motion and signatures built again for `genesis`'s network."""
    network = genesis.network_id
    bundles = [bundle(k, network=network) for k in (A, B, C, D, E)]
    state = make_group(A, network, T0, bundles, rules=RULES).state
    kind = revoked.fields.get("grounds", "steward")
    subject = revoked.fields["subject"]
    assert isinstance(subject, bytes)
    keys = {k.member_id: k for k in (A, B, C, D, E, MALLORY)}
    if kind != "expelled":
        return make_revocation(keys[revoked.author], network, subject, AT).statement
    motion = make_expel_motion(A, network, state, subject, "sold us out", AT - 100)
    signatures = [sign_motion(k, network, motion, AT - 10) for k in (B, C)]
    grounds = expulsion_grounds(state, motion, signatures)
    return make_revocation(C, network, subject, AT, grounds=grounds).statement


# --- Emergency freeze -------------------------------------------------------------------


def freeze_event(
    state: RosterState,
    kind: str,
    subject: IdentityKey,
    signers: Sequence[IdentityKey],
    *,
    by: IdentityKey = A,
    at: int = AT,
) -> Statement:
    opener, *others = signers
    motion = make_freeze_motion(opener, NETWORK, state, subject.member_id, kind, at - 100)
    signatures = [sign_motion(k, NETWORK, motion, at - 10) for k in others]
    fields: dict[str, Value] = {
        "member": subject.member_id,
        **split_event_fields(motion, signatures),
    }
    return sign_event(by, NETWORK, state, kind, at, fields)


def lapse_event(state: RosterState, subject: IdentityKey, by: IdentityKey, at: int) -> Statement:
    return sign_event(by, NETWORK, state, "unfreeze", at, {"member": subject.member_id})


def test_two_cellmates_freeze_a_member_out_of_every_epoch_from_then_on() -> None:
    state = cell(A, B, C, D, E)
    frozen = apply(state, freeze_event(state, "freeze", E, [A, B]), rules=RULES)
    assert E.member_id in frozen.members and E.member_id in frozen.frozen
    assert E.member_id not in frozen.readers and frozen.needs_rekey
    # An epoch covering every member, E included, is refused; one without E is taken.
    with pytest.raises(RuleViolation, match="current members"):
        apply(frozen, epoch_event(frozen, A, roster=state.roster_hash), rules=RULES)
    rekeyed = apply(frozen, epoch_event(frozen, A), rules=RULES)
    assert not rekeyed.needs_rekey
    # E signs nothing the group accepts now, not even a leave.
    leave = {"member": E.member_id, "reason": "left"}
    with pytest.raises(RuleViolation, match="frozen"):
        apply(rekeyed, sign_event(E, NETWORK, rekeyed, "remove", AT + 5, leave), rules=RULES)


def test_a_freeze_needs_its_count_and_never_the_subject_or_a_frozen_signer() -> None:
    state = cell(A, B, C, D, E)
    with pytest.raises(RuleViolation, match="quorum_not_reached|1 of the 2"):
        apply(state, freeze_event(state, "freeze", E, [A]), rules=RULES)
    with pytest.raises(RuleViolation, match="neither frozen nor the subject"):
        apply(state, freeze_event(state, "freeze", E, [A, E]), rules=RULES)
    frozen = apply(state, freeze_event(state, "freeze", E, [A, B]), rules=RULES)
    with pytest.raises(RuleViolation, match="frozen member"):
        apply(frozen, freeze_event(frozen, "freeze", D, [E, C]), rules=RULES)
    with pytest.raises(RuleViolation, match="frozen member|neither frozen"):
        apply(frozen, freeze_event(frozen, "freeze", D, [C, E]), rules=RULES)
    # A frozen member is not frozen twice.
    with pytest.raises(RuleViolation, match="frozen already"):
        apply(frozen, freeze_event(frozen, "freeze", E, [A, B]), rules=RULES)


def test_a_freeze_is_lifted_by_the_same_count_or_lapses_after_its_window() -> None:
    state = cell(A, B, C, D, E)
    frozen = apply(state, freeze_event(state, "freeze", E, [A, B]), rules=RULES)
    lifted = apply(frozen, freeze_event(frozen, "unfreeze", E, [C, D]), rules=RULES)
    assert not lifted.frozen and E.member_id in lifted.readers and lifted.needs_rekey
    with pytest.raises(RuleViolation, match="quorum_not_reached|1 of the 2"):
        apply(frozen, freeze_event(frozen, "unfreeze", E, [C]), rules=RULES)
    window = POLICY.freeze_seconds
    with pytest.raises(RuleViolation, match="not_lapsed|window"):
        apply(frozen, lapse_event(frozen, E, B, AT + window - 1), rules=RULES)
    # After the window anyone posts the lapse, the subject too.
    for by in (B, E):
        lapsed = apply(frozen, lapse_event(frozen, E, by, AT + window), rules=RULES)
        assert not lapsed.frozen
    with pytest.raises(RuleViolation, match="not frozen"):
        apply(state, lapse_event(state, E, B, AT + window), rules=RULES)


def test_an_expelled_frozen_member_leaves_the_freeze_with_the_roster() -> None:
    state = cell(A, B, C, D, E)
    frozen = apply(state, freeze_event(state, "freeze", E, [A, B]), rules=RULES)
    revoked = revocation(frozen, expel_motion(frozen, E), [B, C])
    after = apply(frozen, expel_event(frozen, revoked), rules=RULES)
    assert E.member_id not in after.members and not after.frozen
