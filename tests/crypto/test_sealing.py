"""Tests of crypto.sealing: HPKE boxes to a member's KEM key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import DecryptionFailed, InvalidStatement
from crypto.sealing import KemPrivateKey, KemPublicKey, KemSuite, open_sealed, seal

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "hpke.json"
INFO = b"spokes/v1/epoch-secret" + b"group-1" + (7).to_bytes(8, "big") + b"\x00" * 32
ALL_SUITES = list(KemSuite)

ENC_LEN = {KemSuite.MLKEM768_X25519: 1120, KemSuite.X25519: 32}
PRIVATE_LEN = {KemSuite.MLKEM768_X25519: 96, KemSuite.X25519: 32}
PUBLIC_LEN = {KemSuite.MLKEM768_X25519: 1216, KemSuite.X25519: 32}


@pytest.fixture(scope="module", params=ALL_SUITES, ids=lambda s: s.name)
def key(request: pytest.FixtureRequest) -> KemPrivateKey:
    suite: KemSuite = request.param
    return KemPrivateKey.generate(suite)


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# Round trips and key encodings


def test_default_suite_is_the_post_quantum_hybrid() -> None:
    assert KemPrivateKey.generate().suite is KemSuite.MLKEM768_X25519
    assert KemSuite.MLKEM768_X25519.value == "MLKEM768_X25519/HKDF_SHA256/AES_256_GCM"
    assert KemSuite.MLKEM768_X25519.code == 1
    assert KemSuite.X25519.code == 2


def test_sealed_box_opens_with_the_same_key_and_info(key: KemPrivateKey) -> None:
    box = seal(key.public_key(), b"the epoch secret", INFO)
    assert open_sealed(key, box, INFO) == b"the epoch secret"


def test_empty_plaintext_round_trips(key: KemPrivateKey) -> None:
    assert open_sealed(key, seal(key.public_key(), b"", INFO), INFO) == b""


def test_box_names_its_suite_and_has_the_expected_length(key: KemPrivateKey) -> None:
    box = seal(key.public_key(), b"abc", INFO)
    assert box[0] == key.suite.code
    assert len(box) == 1 + ENC_LEN[key.suite] + 3 + 16


def test_sealing_twice_gives_different_boxes(key: KemPrivateKey) -> None:
    assert seal(key.public_key(), b"x", INFO) != seal(key.public_key(), b"x", INFO)


def test_private_key_bytes_round_trip(key: KemPrivateKey) -> None:
    raw = key.private_bytes()
    assert len(raw) == PRIVATE_LEN[key.suite]
    again = KemPrivateKey.from_private_bytes(key.suite, raw)
    assert again.private_bytes() == raw
    assert again.public_key() == key.public_key()
    assert open_sealed(again, seal(key.public_key(), b"m", INFO), INFO) == b"m"


def test_public_key_bytes_round_trip(key: KemPrivateKey) -> None:
    public = key.public_key()
    raw = public.public_bytes()
    assert len(raw) == PUBLIC_LEN[key.suite]
    parsed = KemPublicKey.from_bytes(key.suite, raw)
    assert parsed == public
    assert hash(parsed) == hash(public)
    assert parsed.suite is key.suite


def test_public_keys_of_different_keys_differ() -> None:
    assert KemPrivateKey.generate().public_key() != KemPrivateKey.generate().public_key()
    assert KemPrivateKey.generate().public_key() != "not a key"


_HYBRID_KEY = KemPrivateKey.generate(KemSuite.MLKEM768_X25519)


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=4096), info=st.binary(max_size=256))
def test_any_plaintext_and_info_round_trip(plaintext: bytes, info: bytes) -> None:
    key = _HYBRID_KEY
    assert open_sealed(key, seal(key.public_key(), plaintext, info), info) == plaintext


# Every failure to open is the same DecryptionFailed


def _assert_refused(key: KemPrivateKey, box: bytes, info: bytes = INFO) -> None:
    with pytest.raises(DecryptionFailed) as caught:
        open_sealed(key, box, info)
    assert str(caught.value) == "sealed box does not open under this key and context"


def test_box_does_not_open_with_another_key(key: KemPrivateKey) -> None:
    box = seal(key.public_key(), b"secret", INFO)
    _assert_refused(KemPrivateKey.generate(key.suite), box)


@pytest.mark.parametrize(
    "other_info",
    [b"", INFO[:-1], INFO + b"\x00", _flip(INFO, 0), _flip(INFO, len(INFO) - 1)],
    ids=["empty", "truncated", "extended", "first-byte", "last-byte"],
)
def test_box_does_not_open_under_another_info(key: KemPrivateKey, other_info: bytes) -> None:
    box = seal(key.public_key(), b"secret", INFO)
    _assert_refused(key, box, other_info)


def test_flipped_bit_anywhere_is_refused(key: KemPrivateKey) -> None:
    plaintext = b"sixteen byte msg"
    box = seal(key.public_key(), plaintext, INFO)
    enc_end = 1 + ENC_LEN[key.suite]
    tag_start = len(box) - 16
    positions = {
        0,  # suite code
        1,  # first byte of the encapsulated key
        enc_end // 2,
        enc_end - 32,  # X25519 part of the hybrid encapsulation
        enc_end - 1,  # last byte of the encapsulated key
        enc_end,  # first byte of the ciphertext
        enc_end + len(plaintext) // 2,
        tag_start - 1,  # last ciphertext byte
        tag_start,  # first tag byte
        len(box) - 1,  # last tag byte
    }
    for position in sorted(positions):
        _assert_refused(key, _flip(box, position))


def test_every_truncation_is_refused(key: KemPrivateKey) -> None:
    box = seal(key.public_key(), b"secret", INFO)
    for length in sorted({0, 1, 2, 32, ENC_LEN[key.suite], ENC_LEN[key.suite] + 1, len(box) - 1}):
        _assert_refused(key, box[:length])


def test_appended_bytes_are_refused(key: KemPrivateKey) -> None:
    box = seal(key.public_key(), b"secret", INFO)
    _assert_refused(key, box + b"\x00")


def test_unknown_suite_code_is_refused(key: KemPrivateKey) -> None:
    box = seal(key.public_key(), b"secret", INFO)
    for code in (0, 3, 255):
        _assert_refused(key, bytes([code]) + box[1:])


def test_box_for_one_suite_does_not_open_with_a_key_of_another() -> None:
    hybrid = KemPrivateKey.generate(KemSuite.MLKEM768_X25519)
    classic = KemPrivateKey.generate(KemSuite.X25519)
    _assert_refused(classic, seal(hybrid.public_key(), b"m", INFO))
    _assert_refused(hybrid, seal(classic.public_key(), b"m", INFO))


def test_relabelled_suite_code_is_refused() -> None:
    # Same X25519 key material under both suites: relabelling the box must
    # still not open it.
    hybrid = KemPrivateKey.generate(KemSuite.MLKEM768_X25519)
    classic = KemPrivateKey.from_private_bytes(KemSuite.X25519, hybrid.private_bytes()[64:])
    box = seal(classic.public_key(), b"m", INFO)
    _assert_refused(hybrid, bytes([KemSuite.MLKEM768_X25519.code]) + box[1:])


# Malformed keys


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("delta", [-1, 1])
def test_public_key_of_wrong_length_is_refused(suite: KemSuite, delta: int) -> None:
    with pytest.raises(InvalidStatement):
        KemPublicKey.from_bytes(suite, b"\x01" * (PUBLIC_LEN[suite] + delta))


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
def test_public_key_with_low_order_x25519_point_is_refused(suite: KemSuite) -> None:
    good = KemPrivateKey.generate(suite).public_key().public_bytes()
    for point in (bytes(32), b"\x01" + bytes(31)):
        with pytest.raises(InvalidStatement):
            KemPublicKey.from_bytes(suite, good[:-32] + point)


def test_hybrid_public_key_with_out_of_range_mlkem_coefficients_is_refused() -> None:
    good = KemPrivateKey.generate().public_key().public_bytes()
    with pytest.raises(InvalidStatement):
        KemPublicKey.from_bytes(KemSuite.MLKEM768_X25519, b"\xff" * 1184 + good[1184:])


def test_public_key_of_the_other_suite_is_refused() -> None:
    classic = KemPrivateKey.generate(KemSuite.X25519).public_key().public_bytes()
    with pytest.raises(InvalidStatement):
        KemPublicKey.from_bytes(KemSuite.MLKEM768_X25519, classic)


@pytest.mark.parametrize("suite", ALL_SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("delta", [-1, 1])
def test_private_key_of_wrong_length_is_refused(suite: KemSuite, delta: int) -> None:
    with pytest.raises(InvalidStatement):
        KemPrivateKey.from_private_bytes(suite, b"\x01" * (PRIVATE_LEN[suite] + delta))


# Known-answer vectors


def _vectors() -> list[dict[str, Any]]:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert doc["origin"].startswith("generated by tests/vectors/make_hpke_vectors.py")
    vectors: list[dict[str, Any]] = doc["vectors"]
    return vectors


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["suite"])
def test_known_answer_vector_opens(vector: dict[str, Any]) -> None:
    suite = KemSuite(vector["suite"])
    key = KemPrivateKey.from_private_bytes(suite, bytes.fromhex(vector["private_key"]))
    assert key.public_key().public_bytes() == bytes.fromhex(vector["public_key"])
    ciphertext = bytes.fromhex(vector["ciphertext"])
    info = bytes.fromhex(vector["info"])
    assert open_sealed(key, ciphertext, info) == bytes.fromhex(vector["plaintext"])
    _assert_refused(key, ciphertext, info + b"x")


def test_vectors_cover_every_suite() -> None:
    assert {KemSuite(v["suite"]) for v in _vectors()} == set(KemSuite)
