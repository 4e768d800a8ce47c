"""Tests of crypto.chains: admission certificates, revocations, chain verification."""

from __future__ import annotations

import pytest

from crypto.chains import (
    MAX_CHAIN_LENGTH,
    make_admission,
    make_revocation,
    parse_admission,
    parse_revocation,
    revocation_times,
    verify_chain,
)
from crypto.encoding import Value
from crypto.errors import ChainError, InvalidStatement
from crypto.network import DAY, Policy
from crypto.statements import sign_statement
from tests.crypto.helpers import (
    PROBATION,
    T0,
    World,
    fixed_bytes,
    fixed_key,
    reverify,
)

T1 = T0 + DAY
T2 = T1 + PROBATION
T3 = T2 + PROBATION


@pytest.fixture
def world() -> World:
    """F (steward) admitted A, A admitted B, B admitted C, each right after probation."""
    w = World(extra_stewards=("S",))
    w.admit("F", "A", T1)
    w.admit("A", "B", T2)
    w.admit("B", "C", T3)
    return w


def revoked(world: World, *subjects: tuple[str, int]) -> dict[bytes, int]:
    steward = world.members["F"].key
    return revocation_times(
        [make_revocation(steward, world.network, world.members[n].id, t) for n, t in subjects]
    )


# Chains that verify


def test_three_deep_chain_verifies(world: World) -> None:
    c = world.members["C"]
    assert len(c.chain) == 3
    assert verify_chain(world.genesis, c.public, c.chain, {}) == c.chain


def test_each_member_along_the_chain_verifies(world: World) -> None:
    for name in ("A", "B", "C"):
        member = world.members[name]
        verify_chain(world.genesis, member.public, member.chain, {})


def test_chain_from_a_second_steward_verifies(world: World) -> None:
    d = world.admit("S", "D", T1)
    verify_chain(world.genesis, d.public, d.chain, {})


def test_stewards_have_an_empty_chain(world: World) -> None:
    for name in ("F", "S"):
        assert verify_chain(world.genesis, world.members[name].public, [], {}) == ()


def test_chain_of_certificates_from_the_wire_verifies(world: World) -> None:
    c = world.members["C"]
    parsed = [parse_admission(reverify(a.statement, "admission", world.network)) for a in c.chain]
    verify_chain(world.genesis, c.public, parsed, {})


# Chains that don't


def test_member_without_a_chain_is_refused(world: World) -> None:
    with pytest.raises(ChainError, match="no certificate chain"):
        verify_chain(world.genesis, world.members["C"].public, [], {})
    with pytest.raises(ChainError, match="no certificate chain"):
        verify_chain(world.genesis, fixed_key("stranger").public_key(), [], {})


def test_chain_that_stops_short_of_the_genesis_is_refused(world: World) -> None:
    c = world.members["C"]
    with pytest.raises(ChainError, match="reach the genesis"):
        verify_chain(world.genesis, c.public, c.chain[:2], {})


def test_chain_from_a_steward_of_another_network_is_refused(world: World) -> None:
    elsewhere = World(founder="G")
    x = elsewhere.admit("G", "X", T1)
    # Re-issued for this network by a steward this genesis doesn't know.
    forged = world.certify(elsewhere.members["G"].key, x.public, T1)
    with pytest.raises(ChainError, match="reach the genesis"):
        verify_chain(world.genesis, x.public, [forged], {})


def test_chain_with_a_broken_link_is_refused(world: World) -> None:
    c, a = world.members["C"], world.members["A"]
    with pytest.raises(ChainError, match="broken"):
        verify_chain(world.genesis, c.public, [c.admission, a.admission], {})


def test_chain_with_links_out_of_order_is_refused(world: World) -> None:
    c = world.members["C"]
    with pytest.raises(ChainError, match="broken"):
        verify_chain(world.genesis, c.public, [c.chain[0], c.chain[2], c.chain[1]], {})


def test_certificate_for_another_key_is_refused(world: World) -> None:
    c, b = world.members["C"], world.members["B"]
    with pytest.raises(ChainError, match="admits someone else"):
        verify_chain(world.genesis, b.public, c.chain, {})
    with pytest.raises(ChainError, match="admits someone else"):
        verify_chain(world.genesis, fixed_key("stranger").public_key(), c.chain, {})


def test_certificate_from_another_network_is_refused(world: World) -> None:
    # Same founder key, another genesis: every signature verifies, only the
    # network in the certificate tells them apart.
    elsewhere = World()
    assert elsewhere.members["F"].key.member_id == world.members["F"].key.member_id
    assert elsewhere.network != world.network
    a = elsewhere.admit("F", "A", T1)
    with pytest.raises(ChainError, match="another network"):
        verify_chain(world.genesis, a.public, a.chain, {})
    # ... even when only one link of the chain is from elsewhere.
    b = world.members["B"]
    with pytest.raises(ChainError, match="another network"):
        verify_chain(world.genesis, b.public, [b.admission, a.admission], {})


def test_certificate_signed_during_the_issuers_probation_is_refused(world: World) -> None:
    early = world.admit("A", "E", T1 + PROBATION - 1)
    with pytest.raises(ChainError, match="probation"):
        verify_chain(world.genesis, early.public, early.chain, {})


def test_certificate_signed_right_at_the_end_of_probation_verifies(world: World) -> None:
    on_time = world.admit("A", "E", T1 + PROBATION)
    verify_chain(world.genesis, on_time.public, on_time.chain, {})


def test_certificate_dated_before_the_issuers_own_is_refused(world: World) -> None:
    backdated = world.admit("A", "E", T1 - 1)
    with pytest.raises(ChainError, match="probation"):
        verify_chain(world.genesis, backdated.public, backdated.chain, {})


def test_stewards_have_no_probation() -> None:
    world = World(policy=Policy(probation_seconds=365 * DAY))
    a = world.admit("F", "A", T0)
    verify_chain(world.genesis, a.public, a.chain, {})


# Revocation


def test_revoked_member_is_refused(world: World) -> None:
    c = world.members["C"]
    with pytest.raises(ChainError, match="revoked"):
        verify_chain(world.genesis, c.public, c.chain, revoked(world, ("C", T3 + 1)))


def test_revoked_steward_is_refused(world: World) -> None:
    with pytest.raises(ChainError, match="revoked"):
        verify_chain(world.genesis, world.members["S"].public, [], revoked(world, ("S", T1)))


def test_certificate_signed_after_the_issuers_revocation_is_refused(world: World) -> None:
    c = world.members["C"]
    for revoked_at in (T3, T3 - 1):
        with pytest.raises(ChainError, match="revoked member"):
            verify_chain(world.genesis, c.public, c.chain, revoked(world, ("B", revoked_at)))


def test_certificate_signed_before_the_issuers_revocation_still_verifies(world: World) -> None:
    c = world.members["C"]
    verify_chain(world.genesis, c.public, c.chain, revoked(world, ("B", T3 + 1)))


def test_revocation_high_up_the_chain_reaches_every_later_certificate(world: World) -> None:
    c = world.members["C"]
    with pytest.raises(ChainError, match="revoked member"):
        verify_chain(world.genesis, c.public, c.chain, revoked(world, ("A", T2)))
    verify_chain(world.genesis, c.public, c.chain, revoked(world, ("A", T2 + 1)))


def test_revocation_times_keep_the_earliest_revocation(world: World) -> None:
    times = revoked(world, ("B", T3 + 5), ("B", T3 - 5), ("C", T3 + 9))
    assert times == {world.members["B"].id: T3 - 5, world.members["C"].id: T3 + 9}


def test_revocation_by_a_non_steward_is_refused_with_the_genesis(world: World) -> None:
    a = world.members["A"]
    revocation = make_revocation(a.key, world.network, world.members["C"].id, T3)
    with pytest.raises(ChainError, match="steward"):
        parse_revocation(revocation.statement, world.genesis)
    # Without the genesis only the form is checked.
    assert parse_revocation(revocation.statement).subject == world.members["C"].id


def test_revocation_by_any_steward_is_accepted(world: World) -> None:
    for name in ("F", "S"):
        steward = world.members[name].key
        revocation = make_revocation(steward, world.network, world.members["C"].id, T3)
        again = parse_revocation(reverify(revocation.statement, "revocation", world.network))
        assert parse_revocation(again.statement, world.genesis).subject == world.members["C"].id


def test_malformed_revocations_are_refused(world: World) -> None:
    steward = world.members["F"].key
    short = sign_statement(steward, "revocation", world.network, T3, {"subject": b"\x00" * 31})
    with pytest.raises(InvalidStatement):
        parse_revocation(short)
    with pytest.raises(InvalidStatement):
        parse_revocation(sign_statement(steward, "vouch", world.network, T3, {}))


# Length


def test_chain_up_to_the_maximum_length_verifies_and_longer_is_refused() -> None:
    world = World(policy=Policy(probation_seconds=0))
    previous = "F"
    for depth in range(1, MAX_CHAIN_LENGTH + 2):
        world.admit(previous, f"m{depth}", T0 + depth)
        previous = f"m{depth}"
    longest = world.members[f"m{MAX_CHAIN_LENGTH}"]
    assert len(longest.chain) == MAX_CHAIN_LENGTH
    verify_chain(world.genesis, longest.public, longest.chain, {})
    too_long = world.members[f"m{MAX_CHAIN_LENGTH + 1}"]
    with pytest.raises(ChainError, match="too long"):
        verify_chain(world.genesis, too_long.public, too_long.chain, {})


# Admission certificates


def test_admission_names_its_subject_cell_invite_and_join(world: World) -> None:
    b, a = world.members["B"], world.members["A"]
    cert = b.admission
    assert cert.subject == b.id and cert.subject_key == b.public
    assert cert.issuer == a.id
    assert cert.cell == world.cell
    assert len(cert.invite) == 16 and len(cert.join) == 32


def test_no_one_admits_themselves(world: World) -> None:
    a = world.members["A"]
    with pytest.raises(InvalidStatement, match="themselves"):
        make_admission(a.key, world.network, a.public, world.cell, b"\x00" * 16, b"\x00" * 32, T2)


def _admission_fields(world: World) -> dict[str, Value]:
    b = world.members["B"]
    return {
        "subject": b.id,
        "subject_key": b.public.raw,
        "cell": world.cell,
        "invite": b"\x00" * 16,
        "join": b"\x00" * 32,
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("subject", fixed_bytes("someone else", 32)),
        ("subject_key", b"\x00" * 31),
        ("cell", b"\x00" * 32),
        ("invite", b"\x00" * 32),
        ("join", b"\x00" * 16),
        ("join", None),
    ],
)
def test_malformed_admission_is_refused(world: World, name: str, value: Value) -> None:
    fields = {**_admission_fields(world), name: value}
    statement = sign_statement(world.members["A"].key, "admission", world.network, T2, fields)
    with pytest.raises(InvalidStatement):
        parse_admission(statement)


def test_other_statement_is_not_an_admission(world: World) -> None:
    statement = sign_statement(
        world.members["A"].key, "vouch", world.network, T2, _admission_fields(world)
    )
    with pytest.raises(InvalidStatement):
        parse_admission(statement)
