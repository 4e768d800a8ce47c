"""Tests of crypto.keys: identity keys, member ids, safety numbers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

import pytest

from crypto import labels
from crypto.errors import InvalidSignature, InvalidStatement
from crypto.keys import (
    IdentityKey,
    IdentityPublicKey,
    fingerprint,
    member_id_of,
    member_id_text,
    parse_member_id,
    revocation_fingerprint,
    roster_fingerprint,
    safety_number,
)
from crypto.statements import signing_context
from tests.crypto.helpers import fixed_key, flip

DIGIT_GROUPS = re.compile(r"^\d{5}( \d{5}){5}$")
CONTEXT = signing_context("vouch")

ALICE = fixed_key("alice")
BOB = fixed_key("bob")
CAROL = fixed_key("carol")


# Signing


def test_signature_verifies_under_the_same_context_and_data() -> None:
    signature = ALICE.sign(CONTEXT, b"data")
    assert len(signature) == 64
    ALICE.public_key().verify(CONTEXT, b"data", signature)


def test_signatures_are_deterministic() -> None:
    assert ALICE.sign(CONTEXT, b"data") == ALICE.sign(CONTEXT, b"data")


def test_signature_under_another_context_is_refused() -> None:
    signature = ALICE.sign(labels.LOGIN, b"challenge")
    with pytest.raises(InvalidSignature):
        ALICE.public_key().verify(CONTEXT, b"challenge", signature)
    with pytest.raises(InvalidSignature):
        ALICE.public_key().verify(signing_context("block"), b"challenge", signature)


def test_signature_by_another_key_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        BOB.public_key().verify(CONTEXT, b"data", ALICE.sign(CONTEXT, b"data"))


def test_any_flipped_bit_in_the_signature_is_refused() -> None:
    signature = ALICE.sign(CONTEXT, b"data")
    public = ALICE.public_key()
    for index in range(len(signature)):
        for bit in range(8):
            with pytest.raises(InvalidSignature):
                public.verify(CONTEXT, b"data", flip(signature, index, 1 << bit))


def test_any_flipped_bit_in_the_message_is_refused() -> None:
    message = b"a message of some length"
    signature = ALICE.sign(CONTEXT, message)
    for index in range(len(message)):
        with pytest.raises(InvalidSignature):
            ALICE.public_key().verify(CONTEXT, flip(message, index), signature)


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_the_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(InvalidSignature, match="length"):
        ALICE.public_key().verify(CONTEXT, b"data", b"\x00" * length)


def test_signature_that_is_not_bytes_is_refused() -> None:
    with pytest.raises(InvalidSignature):
        ALICE.public_key().verify(CONTEXT, b"data", "x" * 64)  # type: ignore[arg-type]


# Key encodings


def test_private_key_bytes_round_trip() -> None:
    raw = ALICE.private_bytes()
    assert len(raw) == 32
    again = IdentityKey.from_private_bytes(raw)
    assert again.public_key() == ALICE.public_key()
    assert again.sign(CONTEXT, b"m") == ALICE.sign(CONTEXT, b"m")


def test_private_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        IdentityKey.from_private_bytes(b"\x00" * 31)


def test_generated_keys_differ() -> None:
    assert IdentityKey.generate().public_key() != IdentityKey.generate().public_key()


def test_public_keys_compare_and_hash_by_their_bytes() -> None:
    a = ALICE.public_key()
    again = IdentityPublicKey(a.raw)
    assert a == again and hash(a) == hash(again)
    assert a != BOB.public_key()
    assert a != a.raw
    assert len({a, again, BOB.public_key()}) == 2


@pytest.mark.parametrize("raw", [b"", b"\x00" * 31, b"\x00" * 33])
def test_public_key_of_the_wrong_length_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidStatement):
        IdentityPublicKey(raw)


def test_public_key_that_is_not_bytes_is_refused() -> None:
    with pytest.raises(InvalidStatement):
        IdentityPublicKey(bytearray(32))  # type: ignore[arg-type]


def test_public_key_repr_shows_the_member_id() -> None:
    assert member_id_text(ALICE.member_id) in repr(ALICE.public_key())


# Member ids


def test_member_id_is_the_labelled_hash_of_the_public_key() -> None:
    raw = ALICE.public_key().raw
    expected = hashlib.sha256(b"spokes/v1/member-id\x00" + raw).digest()
    assert member_id_of(raw) == expected
    assert ALICE.member_id == expected
    assert ALICE.public_key().member_id == expected
    assert ALICE.member_id != BOB.member_id


def test_member_id_text_round_trips() -> None:
    text = member_id_text(ALICE.member_id)
    assert len(text) == 52
    assert re.fullmatch(r"[a-z2-7]{52}", text)
    assert parse_member_id(text) == ALICE.member_id
    assert parse_member_id(text.upper()) == ALICE.member_id
    assert parse_member_id(f"  {text}\n") == ALICE.member_id


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # too short
        lambda t: t + "a",  # too long
        lambda t: t[:-4],  # a whole number of bytes, but too few
        lambda t: t + "aaaaaaaa",  # 37 bytes
        lambda t: t[:-1] + "1",  # not base32
        lambda t: t[:-1] + "b",  # non-zero trailing bits
        lambda t: t + "====",  # padding
        lambda t: t[:20] + " " + t[20:],  # a space inside
        lambda t: "",
    ],
)
def test_malformed_member_ids_are_refused(mangle: Callable[[str], str]) -> None:
    text = member_id_text(b"\x00" * 32)
    with pytest.raises(InvalidStatement, match="member id"):
        parse_member_id(mangle(text))


# Safety numbers and fingerprints


def test_safety_number_is_six_groups_of_five_digits() -> None:
    assert DIGIT_GROUPS.match(safety_number(ALICE.public_key(), BOB.public_key()))


def test_safety_number_is_the_same_from_either_side() -> None:
    a, b = ALICE.public_key(), BOB.public_key()
    assert safety_number(a, b) == safety_number(b, a)


def test_safety_number_changes_when_either_key_changes() -> None:
    a, b, c = ALICE.public_key(), BOB.public_key(), CAROL.public_key()
    number = safety_number(a, b)
    assert safety_number(a, c) != number
    assert safety_number(c, b) != number
    assert safety_number(a, a) != number


def test_safety_number_is_stable_across_key_objects() -> None:
    a, b = ALICE.public_key(), BOB.public_key()
    assert safety_number(IdentityPublicKey(a.raw), IdentityPublicKey(b.raw)) == safety_number(a, b)


def test_fingerprint_is_stable_and_distinct_per_key() -> None:
    a = ALICE.public_key()
    assert DIGIT_GROUPS.match(fingerprint(a))
    assert fingerprint(a) == fingerprint(IdentityPublicKey(a.raw))
    assert fingerprint(a) != fingerprint(BOB.public_key())


def test_fingerprint_is_not_a_safety_number() -> None:
    a = ALICE.public_key()
    assert fingerprint(a) != safety_number(a, a)


def test_roster_fingerprint_known_answer() -> None:
    group, head = bytes(range(16)), bytes(range(32))
    expected = hashlib.sha512(labels.ROSTER_FINGERPRINT + group + head).digest()
    assert roster_fingerprint(group, head) == "40627 57981 71922 73711"
    assert int.from_bytes(expected[:5], "big") % 100_000 == 40627


def test_roster_fingerprint_changes_with_group_and_head() -> None:
    group, head = bytes(16), bytes(32)
    seen = {
        roster_fingerprint(group, head),
        roster_fingerprint(flip(group, 0), head),
        roster_fingerprint(group, flip(head, 31)),
    }
    assert len(seen) == 3
    assert all(re.fullmatch(r"\d{5}( \d{5}){3}", f) for f in seen)


def test_revocation_fingerprint_known_answer_and_its_own_label() -> None:
    head = bytes(range(32))
    assert revocation_fingerprint(head) == "42862 98918 96220 13502"
    digest = hashlib.sha512(labels.REVOCATION_FINGERPRINT + head).digest()
    assert int.from_bytes(digest[:5], "big") % 100_000 == 42862
    assert revocation_fingerprint(flip(head, 0)) != revocation_fingerprint(head)
    with pytest.raises(ValueError):
        revocation_fingerprint(bytes(31))


@pytest.mark.parametrize(("group", "head"), [(bytes(15), bytes(32)), (bytes(16), bytes(31))])
def test_roster_fingerprint_refuses_wrong_sizes(group: bytes, head: bytes) -> None:
    with pytest.raises(ValueError):
        roster_fingerprint(group, head)


@pytest.mark.parametrize(
    "raw_hex",
    [
        "0100000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ],
)
def test_small_order_public_keys_are_refused(raw_hex: str) -> None:
    with pytest.raises(InvalidStatement, match="small-order"):
        IdentityPublicKey(bytes.fromhex(raw_hex))
