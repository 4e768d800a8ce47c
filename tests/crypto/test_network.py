"""Tests of crypto.network: the genesis and its policy, key bundles, group creation."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest

from crypto import labels
from crypto.encoding import Value
from crypto.errors import InvalidSignature, InvalidStatement
from crypto.keys import IdentityKey
from crypto.network import (
    DAY,
    HOUR,
    KEM_PUBLIC_BYTES,
    LATER_FIELDS,
    Policy,
    make_genesis,
    make_key_bundle,
    network_id_of,
    parse_genesis,
    parse_key_bundle,
    verify_genesis,
)
from crypto.statements import Statement, sign_statement, verify_statement
from tests.crypto.helpers import T0, fixed_bytes, fixed_key, flip, reverify

FOUNDER = fixed_key("founder")
SECOND = fixed_key("second steward")
OUTSIDER = fixed_key("outsider")
NETWORK = fixed_bytes("network", 32)
X25519 = "X25519/HKDF_SHA256/AES_256_GCM"


def genesis_statement(
    author: IdentityKey = FOUNDER,
    stewards: Value = None,
    policy: Value = None,
    network: bytes | None = None,
    nonce: Value = b"\x00" * 16,
) -> Statement:
    fields: dict[str, Value] = {
        "nonce": nonce,
        "stewards": stewards if stewards is not None else [FOUNDER.public_key().raw],
        "policy": policy if policy is not None else Policy().to_value(),
    }
    return sign_statement(author, "genesis", network, T0, fields)


# Genesis


def test_genesis_names_its_founder_as_steward_and_keeps_its_policy() -> None:
    policy = Policy(cell_min=3, cell_max=9, vouches=3)
    genesis = make_genesis(FOUNDER, policy, T0, (SECOND.public_key(),))
    assert genesis.stewards == (FOUNDER.public_key(), SECOND.public_key())
    assert genesis.steward_ids == {FOUNDER.member_id, SECOND.member_id}
    assert genesis.policy == policy
    assert genesis.statement.network is None
    assert genesis.statement.time == T0


def test_network_id_is_the_labelled_hash_of_the_genesis_body() -> None:
    genesis = make_genesis(FOUNDER, Policy(), T0)
    expected = hashlib.sha256(b"spokes/v1/network-id\x00" + genesis.statement.body).digest()
    assert genesis.network_id == expected == network_id_of(genesis.statement.body)


def test_genesis_verifies_from_its_bytes_and_pins_to_its_id() -> None:
    genesis = make_genesis(FOUNDER, Policy(), T0)
    body, signature = genesis.statement.body, genesis.statement.signature
    assert verify_genesis(body, signature) == genesis
    assert verify_genesis(body, signature, genesis.network_id) == genesis


def test_genesis_of_another_network_is_refused_when_pinned() -> None:
    genesis = make_genesis(FOUNDER, Policy(), T0)
    other = make_genesis(FOUNDER, Policy(), T0)
    assert other.network_id != genesis.network_id  # the nonce makes each network new
    with pytest.raises(InvalidStatement, match="pinned"):
        verify_genesis(other.statement.body, other.statement.signature, genesis.network_id)


def test_tampered_genesis_is_refused() -> None:
    genesis = make_genesis(FOUNDER, Policy(), T0)
    body, signature = genesis.statement.body, genesis.statement.signature
    with pytest.raises((InvalidStatement, InvalidSignature)):
        verify_genesis(flip(body, len(body) // 2), signature)
    with pytest.raises(InvalidSignature):
        verify_genesis(body, flip(signature, 0))


def test_genesis_not_signed_by_a_steward_is_refused() -> None:
    statement = genesis_statement(author=OUTSIDER)
    with pytest.raises(InvalidStatement, match="steward"):
        parse_genesis(statement)
    with pytest.raises(InvalidStatement, match="steward"):
        verify_genesis(statement.body, statement.signature)


def test_genesis_signed_by_a_second_steward_is_accepted() -> None:
    stewards: Value = [FOUNDER.public_key().raw, SECOND.public_key().raw]
    genesis = parse_genesis(genesis_statement(author=SECOND, stewards=stewards))
    assert SECOND.public_key() in genesis.stewards


def test_genesis_that_names_a_network_is_refused() -> None:
    statement = genesis_statement(network=NETWORK)
    with pytest.raises(InvalidStatement, match="genesis"):
        verify_genesis(statement.body, statement.signature)


def test_statement_of_another_type_is_not_a_genesis() -> None:
    statement = sign_statement(FOUNDER, "vouch", None, T0, {"x": 1})
    with pytest.raises(InvalidStatement):
        parse_genesis(statement)
    with pytest.raises(InvalidStatement):
        verify_genesis(statement.body, statement.signature)


@pytest.mark.parametrize(
    "stewards",
    [
        [],
        [FOUNDER.public_key().raw] * 2,
        [FOUNDER.public_key().raw, b"\x00" * 31],
        [FOUNDER.public_key().raw, "not a key"],
        [FOUNDER.public_key().raw] + [fixed_key(f"s{i}").public_key().raw for i in range(32)],
        b"not a list",
    ],
    ids=["none", "repeated", "short key", "text", "33 stewards", "not a list"],
)
def test_genesis_with_bad_stewards_is_refused(stewards: Value) -> None:
    with pytest.raises(InvalidStatement):
        parse_genesis(genesis_statement(stewards=stewards))


def test_genesis_with_32_stewards_is_accepted() -> None:
    keys: list[Value] = [FOUNDER.public_key().raw]
    keys += [fixed_key(f"s{i}").public_key().raw for i in range(31)]
    assert len(parse_genesis(genesis_statement(stewards=keys)).stewards) == 32


@pytest.mark.parametrize("nonce", [None, b"\x00" * 15, b"\x00" * 17, "x" * 16])
def test_genesis_without_a_16_byte_nonce_is_refused(nonce: Value) -> None:
    with pytest.raises(InvalidStatement, match="nonce"):
        parse_genesis(genesis_statement(nonce=nonce))


# Policy


def test_default_policy_is_valid_and_round_trips() -> None:
    policy = Policy()
    assert Policy.from_value(policy.to_value()) == policy


def test_every_field_of_a_policy_round_trips() -> None:
    policy = Policy(
        cell_min=2,
        cell_max=100,
        vouches=100,
        probation_seconds=0,
        invite_quota=100,
        invite_expiry_seconds=30 * DAY,
        vetting_seconds=0,
        expulsion_quorum="all",
        review_seconds=90 * DAY,
        election_quorum="two-thirds",
        council_max=1000,
    )
    assert Policy.from_value(policy.to_value()) == policy


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cell_min", 1),
        ("cell_min", 7),  # a full cell of the default 12 could not split into two of 7
        ("cell_max", 9),  # nor a full cell of 9 into two of the default 5
        ("cell_max", 101),
        ("vouches", 0),
        ("vouches", 13),  # above the default cell_max
        ("probation_seconds", -1),
        ("probation_seconds", 365 * DAY + 1),
        ("invite_quota", 0),
        ("invite_quota", 101),
        ("invite_expiry_seconds", HOUR - 1),
        ("invite_expiry_seconds", 30 * DAY + 1),
        ("vetting_seconds", -1),
        ("vetting_seconds", 30 * DAY + 1),
        ("expulsion_quorum", "most"),
        ("review_seconds", -1),
        ("review_seconds", 90 * DAY + 1),
        ("election_quorum", "plurality"),
        ("council_max", 1),
        ("council_max", 1001),
        ("wide_alerts_per_day", -1),
        ("wide_alerts_per_day", 101),
        ("epoch_seconds", 3600 - 1),
        ("epoch_seconds", 90 * DAY + 1),
        ("epoch_messages", 99),
        ("epoch_messages", 1_000_001),
    ],
)
def test_policy_out_of_bounds_is_refused(field: str, value: Any) -> None:
    with pytest.raises(InvalidStatement, match="bad policy"):
        replace(Policy(), **{field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cell_min", 2),
        ("cell_min", 6),  # a full cell of 12 splits into 6 + 6
        ("cell_max", 10),  # a full cell of 10 splits into 5 + 5
        ("vouches", 1),
        ("vouches", 12),
        ("probation_seconds", 365 * DAY),
        ("invite_expiry_seconds", HOUR),
        ("vetting_seconds", 30 * DAY),
        ("expulsion_quorum", "two-thirds"),
        ("review_seconds", 0),
        ("election_quorum", "all"),
        ("council_max", 2),
        ("wide_alerts_per_day", 0),
    ],
)
def test_policy_at_its_bounds_is_accepted(field: str, value: Any) -> None:
    replace(Policy(), **{field: value})


def test_policy_with_an_unknown_field_is_refused() -> None:
    value = {**Policy().to_value(), "extra": 1}
    with pytest.raises(InvalidStatement, match="unknown"):
        Policy.from_value(value)


@pytest.mark.parametrize("missing", sorted(set(Policy().to_value()) - LATER_FIELDS))
def test_policy_with_a_missing_field_is_refused(missing: str) -> None:
    value = Policy().to_value()
    del value[missing]
    with pytest.raises(InvalidStatement, match="missing"):
        Policy.from_value(value)


def test_a_policy_signed_before_the_freeze_fields_takes_their_defaults() -> None:
    value = Policy(freeze_signers=3).to_value()
    assert Policy.from_value(value).freeze_signers == 3
    for name in LATER_FIELDS:
        del value[name]
    assert Policy.from_value(value) == Policy()


@pytest.mark.parametrize(
    ("field", "value"),
    [("vouches", True), ("vouches", "2"), ("cell_max", None), ("expulsion_quorum", 1)],
)
def test_policy_field_of_the_wrong_type_is_refused(field: str, value: Value) -> None:
    with pytest.raises(InvalidStatement):
        Policy.from_value({**Policy().to_value(), field: value})


@pytest.mark.parametrize("value", [None, [], "policy"])
def test_policy_that_is_not_a_record_is_refused(value: Value) -> None:
    with pytest.raises(InvalidStatement):
        Policy.from_value(value)


def test_genesis_with_a_bad_policy_is_refused() -> None:
    policy = {**Policy().to_value(), "vouches": 0}
    with pytest.raises(InvalidStatement, match="bad policy"):
        parse_genesis(genesis_statement(policy=policy))


@pytest.mark.parametrize(("cell_min", "cell_max"), [(8, 12), (3, 5), (2, 3), (51, 100)])
def test_genesis_whose_full_cell_could_not_split_is_refused(cell_min: int, cell_max: int) -> None:
    # A steward's client would never sign one; a client that receives one
    # (from a server or an invite) refuses it all the same.
    policy = {**Policy().to_value(), "cell_min": cell_min, "cell_max": cell_max}
    statement = genesis_statement(policy=policy)
    with pytest.raises(InvalidStatement, match="could not split") as refused:
        verify_genesis(statement.body, statement.signature)
    assert f"cell_max {cell_max}" in str(refused.value)
    assert f"cell_min {cell_min}" in str(refused.value)


def test_bad_cell_bounds_are_refused_with_the_values_that_would_do() -> None:
    with pytest.raises(InvalidStatement) as refused:
        Policy(cell_min=8, cell_max=12)
    assert "cell_min 6 or less, or cell_max 16 or more" in str(refused.value)
    with pytest.raises(InvalidStatement) as refused:
        Policy(cell_min=2, cell_max=3)  # no minimum would do: only a larger maximum
    assert str(refused.value).endswith("(cell_max 4 or more)")


def test_the_default_policy_lets_a_full_cell_split_in_two_at_the_minimum() -> None:
    policy = Policy()
    assert policy.cell_max >= 2 * policy.cell_min


# Key bundles


@pytest.mark.parametrize("suite", sorted(KEM_PUBLIC_BYTES))
def test_key_bundle_round_trips_for_each_known_suite(suite: str) -> None:
    public = b"\x01" * KEM_PUBLIC_BYTES[suite]
    bundle = make_key_bundle(FOUNDER, NETWORK, suite, public, T0, T0 + DAY)
    again = parse_key_bundle(reverify(bundle.statement, "key-bundle", NETWORK), now=T0 + 1)
    assert (again.suite, again.kem_public, again.expires) == (suite, public, T0 + DAY)


def test_default_suite_has_the_hybrid_key_size() -> None:
    assert KEM_PUBLIC_BYTES[labels.KEM_SUITE_DEFAULT] == 1216


def _bundle_statement(suite: str, public: bytes, expires: int = T0 + DAY) -> Statement:
    fields: dict[str, Value] = {"suite": suite, "kem_public": public, "expires": expires}
    return sign_statement(FOUNDER, "key-bundle", NETWORK, T0, fields)


def test_key_bundle_with_an_unknown_suite_is_refused() -> None:
    with pytest.raises(InvalidStatement, match="unknown KEM suite"):
        parse_key_bundle(_bundle_statement("RSA/HKDF_SHA256/AES_256_GCM", b"\x01" * 32))


@pytest.mark.parametrize(
    ("suite", "size"), [(X25519, 31), (X25519, 33), (labels.KEM_SUITE_DEFAULT, 32)]
)
def test_key_bundle_with_the_wrong_key_size_is_refused(suite: str, size: int) -> None:
    with pytest.raises(InvalidStatement, match="kem_public"):
        parse_key_bundle(_bundle_statement(suite, b"\x01" * size))


def test_expired_key_bundle_is_refused() -> None:
    statement = _bundle_statement(X25519, b"\x01" * 32, expires=T0 + DAY)
    parse_key_bundle(statement, now=T0 + DAY - 1)
    with pytest.raises(InvalidStatement, match="expired"):
        parse_key_bundle(statement, now=T0 + DAY)


@pytest.mark.parametrize("expires", [T0, T0 - 1])
def test_key_bundle_that_expires_before_it_was_made_is_refused(expires: int) -> None:
    with pytest.raises(InvalidStatement, match="before"):
        parse_key_bundle(_bundle_statement(X25519, b"\x01" * 32, expires=expires))


def test_other_statement_is_not_a_key_bundle() -> None:
    with pytest.raises(InvalidStatement):
        parse_key_bundle(sign_statement(FOUNDER, "vouch", NETWORK, T0, {}))


def test_key_bundle_of_another_network_does_not_verify_here() -> None:
    bundle = make_key_bundle(FOUNDER, NETWORK, X25519, b"\x01" * 32, T0, T0 + DAY)
    with pytest.raises(InvalidStatement, match="another network"):
        verify_statement(
            bundle.statement.body, bundle.statement.signature, "key-bundle", fixed_bytes("x", 32)
        )
