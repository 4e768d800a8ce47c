"""Tests of crypto.statements: signed, canonical, domain-separated membership facts."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from crypto.encoding import Value, b64e, decode, encode
from crypto.errors import CryptoError, InvalidSignature, InvalidStatement
from crypto.keys import IdentityKey
from crypto.statements import (
    MAX_BODY_BYTES,
    Statement,
    from_wire,
    get_bytes,
    get_int,
    get_optional_bytes,
    get_str,
    pack,
    sign_statement,
    signing_context,
    statement_id,
    unpack,
    verify_statement,
)
from tests.crypto.helpers import T0, fixed_bytes, fixed_key, flip, header, reverify, sign_raw

ALICE = fixed_key("alice")
BOB = fixed_key("bob")
NETWORK = fixed_bytes("network", 32)
OTHER_NETWORK = fixed_bytes("other network", 32)
VOUCH_FIELDS: dict[str, Value] = {
    "subject": fixed_bytes("subject", 32),
    "cell": fixed_bytes("cell", 16),
    "admission": fixed_bytes("admission", 32),
}


def vouch(key: IdentityKey = ALICE, time: int = T0, network: bytes = NETWORK) -> Statement:
    return sign_statement(key, "vouch", network, time, dict(VOUCH_FIELDS))


# Round trips


def test_signed_statement_verifies_and_keeps_its_fields() -> None:
    made = vouch()
    checked = reverify(made, "vouch", NETWORK)
    assert checked == made
    assert checked.fields == made.fields
    assert checked.type == "vouch"
    assert checked.author == ALICE.member_id
    assert checked.author_key == ALICE.public_key()
    assert checked.time == T0
    assert checked.network == NETWORK
    assert checked.bytes_field("subject", 32) == VOUCH_FIELDS["subject"]
    assert checked.fields["v"] == 1


def test_body_is_the_canonical_encoding_of_header_and_fields() -> None:
    made = vouch()
    assert made.body == encode({**VOUCH_FIELDS, **header(ALICE, "vouch", NETWORK)})
    assert decode(made.body) == made.fields


def test_signature_covers_the_labelled_type_and_body() -> None:
    made = vouch()
    assert signing_context("vouch") == b"spokes/v1/statement/vouch\x00"
    ALICE.public_key().verify(b"spokes/v1/statement/vouch\x00", made.body, made.signature)


def test_wire_form_round_trips() -> None:
    made = vouch()
    wire = made.to_wire()
    assert wire == {"body": b64e(made.body), "sig": b64e(made.signature)}
    assert from_wire(wire, "vouch", NETWORK) == made


def test_packed_form_round_trips() -> None:
    made = vouch()
    packed = pack(made)
    assert unpack(decode(encode(packed)), "vouch", NETWORK) == made


def test_genesis_style_statement_without_network_verifies_with_none() -> None:
    made = sign_statement(ALICE, "genesis", None, T0, {"x": 1})
    assert "network" not in made.fields
    assert made.network is None
    assert reverify(made, "genesis", None) == made


def test_typed_field_accessors() -> None:
    made = sign_statement(ALICE, "note", NETWORK, T0, {"n": 3, "s": "hi", "b": b"xy"})
    assert made.int_field("n") == 3
    assert made.str_field("s") == "hi"
    assert made.bytes_field("b") == b"xy"
    with pytest.raises(InvalidStatement):
        made.str_field("s", max_len=1)
    with pytest.raises(InvalidStatement):
        made.bytes_field("b", 3)
    with pytest.raises(InvalidStatement):
        made.int_field("s")


# Stable, distinct ids (what replay detection keys on)


def test_statement_id_is_the_labelled_hash_of_the_body() -> None:
    made = vouch()
    assert made.id == hashlib.sha256(b"spokes/v1/statement-id\x00" + made.body).digest()
    assert made.id == statement_id(made.body)


def test_same_statement_signed_twice_has_the_same_bytes_and_id() -> None:
    first, second = vouch(), vouch()
    assert first.body == second.body and first.signature == second.signature
    assert first.id == second.id
    assert reverify(first, "vouch", NETWORK).id == first.id


def test_distinct_statements_have_distinct_ids() -> None:
    ids = {
        vouch().id,
        vouch(time=T0 + 1).id,
        vouch(key=BOB).id,
        vouch(network=OTHER_NETWORK).id,
        sign_statement(ALICE, "block", NETWORK, T0, dict(VOUCH_FIELDS)).id,
    }
    assert len(ids) == 5


# Tampering


def test_every_flipped_bit_in_the_body_is_refused() -> None:
    made = vouch()
    for index in range(len(made.body)):
        for bit in range(8):
            with pytest.raises((InvalidStatement, InvalidSignature)):
                verify_statement(flip(made.body, index, 1 << bit), made.signature, "vouch", NETWORK)


def test_every_flipped_bit_in_the_signature_is_refused() -> None:
    made = vouch()
    for index in range(len(made.signature)):
        for bit in range(8):
            with pytest.raises(InvalidSignature):
                verify_statement(made.body, flip(made.signature, index, 1 << bit), "vouch", NETWORK)


def test_truncated_or_extended_body_is_refused() -> None:
    made = vouch()
    with pytest.raises(InvalidStatement):
        verify_statement(made.body[:-1], made.signature, "vouch", NETWORK)
    with pytest.raises(InvalidStatement):
        verify_statement(made.body + b"\x00", made.signature, "vouch", NETWORK)


def test_statement_of_another_type_is_refused() -> None:
    made = vouch()
    with pytest.raises(InvalidStatement, match="block"):
        verify_statement(made.body, made.signature, "block", NETWORK)


def test_signature_made_for_one_type_does_not_verify_as_another() -> None:
    # A body that says "block" in every field, but signed as a vouch: the
    # type label in the signature keeps the signature from being reused.
    fields = {**VOUCH_FIELDS, **header(ALICE, "block", NETWORK)}
    body, signature = sign_raw(ALICE, "vouch", fields)
    with pytest.raises(InvalidSignature):
        verify_statement(body, signature, "block", NETWORK)
    _, block_signature = sign_raw(ALICE, "block", fields)
    assert verify_statement(body, block_signature, "block", NETWORK).type == "block"


def test_statement_of_another_network_is_refused() -> None:
    made = vouch()
    with pytest.raises(InvalidStatement, match="another network"):
        verify_statement(made.body, made.signature, "vouch", OTHER_NETWORK)


def test_statement_with_a_network_is_not_a_genesis() -> None:
    made = sign_statement(ALICE, "genesis", NETWORK, T0, {"x": 1})
    with pytest.raises(InvalidStatement, match="genesis"):
        verify_statement(made.body, made.signature, "genesis", None)


def test_statement_without_a_network_is_refused_where_one_is_expected() -> None:
    made = sign_statement(ALICE, "vouch", None, T0, dict(VOUCH_FIELDS))
    with pytest.raises(InvalidStatement, match="another network"):
        verify_statement(made.body, made.signature, "vouch", NETWORK)


def test_author_id_that_does_not_match_the_key_is_refused() -> None:
    fields = {**VOUCH_FIELDS, **header(ALICE, "vouch", NETWORK), "author": BOB.member_id}
    body, signature = sign_raw(ALICE, "vouch", fields)
    with pytest.raises(InvalidStatement, match="author"):
        verify_statement(body, signature, "vouch", NETWORK)


def test_statement_signed_by_a_key_other_than_its_author_key_is_refused() -> None:
    fields = {**VOUCH_FIELDS, **header(ALICE, "vouch", NETWORK)}
    body, signature = sign_raw(BOB, "vouch", fields)
    with pytest.raises(InvalidSignature):
        verify_statement(body, signature, "vouch", NETWORK)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("v", 2),
        ("v", 0),
        ("v", True),
        ("time", -1),
        ("time", True),
        ("time", "1800000000"),
        ("type", None),
        ("key", b"\x00" * 31),
        ("author", b"\x00" * 33),
    ],
)
def test_malformed_common_header_is_refused(change: str, value: Value) -> None:
    fields = {**VOUCH_FIELDS, **header(ALICE, "vouch", NETWORK), change: value}
    body, signature = sign_raw(ALICE, "vouch", fields)
    with pytest.raises(InvalidStatement):
        verify_statement(body, signature, "vouch", NETWORK)


@pytest.mark.parametrize("missing", ["type", "v", "author", "key", "time", "network"])
def test_missing_common_header_field_is_refused(missing: str) -> None:
    fields = {**VOUCH_FIELDS, **header(ALICE, "vouch", NETWORK)}
    del fields[missing]
    body, signature = sign_raw(ALICE, "vouch", fields)
    with pytest.raises(InvalidStatement):
        verify_statement(body, signature, "vouch", NETWORK)


@pytest.mark.parametrize("value", [None, 1, b"body", "body", [1, 2]])
def test_body_that_is_not_a_record_is_refused(value: Value) -> None:
    body = encode(value)
    with pytest.raises(InvalidStatement, match="record"):
        verify_statement(body, ALICE.sign(signing_context("vouch"), body), "vouch", NETWORK)


def test_body_with_non_canonical_encoding_is_refused_before_the_signature() -> None:
    made = vouch()
    with pytest.raises(InvalidStatement):
        verify_statement(made.body + made.body, made.signature, "vouch", NETWORK)


# Size


def _padded(pad: int) -> Statement:
    return sign_statement(ALICE, "note", NETWORK, T0, {"pad": b"\x00" * pad})


def test_body_at_the_size_limit_verifies_and_one_byte_more_is_refused() -> None:
    overhead = len(_padded(0).body)
    at_limit = _padded(MAX_BODY_BYTES - overhead)
    assert len(at_limit.body) == MAX_BODY_BYTES
    reverify(at_limit, "note", NETWORK)
    with pytest.raises(ValueError, match="too large"):
        _padded(MAX_BODY_BYTES - overhead + 1)
    over = at_limit.body[:-1] + b"\x00" * 2  # one byte more than any signer makes
    with pytest.raises(InvalidStatement, match="too large"):
        verify_statement(over, at_limit.signature, "note", NETWORK)


def test_huge_body_is_refused_without_parsing() -> None:
    with pytest.raises(InvalidStatement, match="too large"):
        verify_statement(b"\xff" * (1 << 20), b"\x00" * 64, "vouch", NETWORK)


# Signing refuses bad input


@pytest.mark.parametrize("statement_type", ["", "Vouch", "vouch!", "1vouch", "a" * 33, "vö"])
def test_bad_statement_types_are_refused_when_signing(statement_type: str) -> None:
    with pytest.raises(ValueError, match="type"):
        sign_statement(ALICE, statement_type, NETWORK, T0, {})


@pytest.mark.parametrize("name", ["type", "v", "author", "key", "time", "network"])
def test_fields_that_clash_with_the_header_are_refused_when_signing(name: str) -> None:
    with pytest.raises(ValueError, match="clash"):
        sign_statement(ALICE, "vouch", NETWORK, T0, {name: 1})


# The wire form


@pytest.mark.parametrize(
    "wire",
    [
        None,
        "body",
        [],
        [b"", b""],
        {},
        {"body": "AAAA"},
        {"sig": "AAAA"},
        {"body": 1, "sig": 2},
        {"body": None, "sig": None},
        {"body": "!!!!", "sig": "AAAA"},
        {"body": "AA AA", "sig": "AAAA"},
        {"body": "AAAA", "sig": "AAAA"},
        {"body": b64e(b"\x07\x00\x00\x00\x00"), "sig": b64e(b"\x00" * 64)},
    ],
)
def test_garbage_on_the_wire_is_refused(wire: Any) -> None:
    with pytest.raises(InvalidStatement):
        from_wire(wire, "vouch", NETWORK)


def test_wire_form_with_a_bad_signature_is_refused() -> None:
    wire = vouch().to_wire()
    wire["sig"] = b64e(b"\x00" * 64)
    with pytest.raises(InvalidSignature):
        from_wire(wire, "vouch", NETWORK)


def test_wire_form_with_non_canonical_base64_is_refused() -> None:
    made = vouch()
    wire = {"body": b64e(made.body).replace("-", "+").replace("_", "/"), "sig": "x"}
    with pytest.raises(InvalidStatement):
        from_wire(wire, "vouch", NETWORK)


@pytest.mark.parametrize(
    "value",
    [None, b"body", [b"body"], [b"a", b"b", b"c"], ["a", b"b"], [b"a", None], {"a": b"b"}],
)
def test_malformed_packed_statement_is_refused(value: Value) -> None:
    with pytest.raises(InvalidStatement, match="packed"):
        unpack(value, "vouch", NETWORK)


def test_every_refusal_is_a_crypto_error() -> None:
    assert issubclass(InvalidStatement, CryptoError)
    assert issubclass(InvalidSignature, CryptoError)


# Field helpers


def test_get_int_refuses_bools_negatives_and_other_types() -> None:
    fields: dict[str, Value] = {"t": True, "n": -1, "s": "1", "ok": 5}
    assert get_int(fields, "ok") == 5
    assert get_int(fields, "n", low=-1) == -1
    for name in ("t", "n", "s", "missing"):
        with pytest.raises(InvalidStatement):
            get_int(fields, name)
    with pytest.raises(InvalidStatement):
        get_int(fields, "ok", low=6)


def test_get_bytes_and_get_str_check_type_and_size() -> None:
    fields: dict[str, Value] = {"b": b"abc", "s": "abc"}
    assert get_bytes(fields, "b") == b"abc"
    assert get_bytes(fields, "b", 3) == b"abc"
    assert get_str(fields, "s", 3) == "abc"
    for call in (
        lambda: get_bytes(fields, "b", 4),
        lambda: get_bytes(fields, "s"),
        lambda: get_bytes(fields, "missing"),
        lambda: get_str(fields, "s", 2),
        lambda: get_str(fields, "b", 10),
    ):
        with pytest.raises(InvalidStatement):
            call()


def test_get_optional_bytes_reads_none_as_absent() -> None:
    fields: dict[str, Value] = {"none": None, "b": b"\x01" * 16, "short": b"\x01"}
    assert get_optional_bytes(fields, "none", 16) is None
    assert get_optional_bytes(fields, "missing", 16) is None
    assert get_optional_bytes(fields, "b", 16) == b"\x01" * 16
    with pytest.raises(InvalidStatement):
        get_optional_bytes(fields, "short", 16)
