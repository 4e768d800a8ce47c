"""Tests of crypto.keystore: the passphrase-sealed local keystore."""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.errors import KeystoreError
from crypto.keystore import (
    DEFAULT_PARAMS,
    MAX_CALIBRATED_MEMORY_KIB,
    KdfParams,
    KeystoreKey,
    calibrate,
    derive_key,
    new_key,
    open_keystore,
    open_with_key,
    read_params,
    seal_keystore,
    seal_with_key,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "keystore.json"
# Argon2 at real cost is slow; tests use the smallest legal cost.
FAST = KdfParams(time_cost=1, memory_kib=8, parallelism=1)
HEADER_LEN = 45
SALT = bytes(range(16))
NONCE = bytes(range(100, 112))


def _assert_refused(passphrase: str, blob: bytes) -> None:
    with pytest.raises(KeystoreError) as caught:
        open_keystore(passphrase, blob)
    assert str(caught.value) == "wrong passphrase or damaged keystore"


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.fixture(scope="module")
def blob() -> bytes:
    return seal_keystore("hunter2 but longer", b"private keys and group secrets", FAST)


# Round trips and format


def test_sealed_keystore_opens_with_its_passphrase(blob: bytes) -> None:
    assert open_keystore("hunter2 but longer", blob) == b"private keys and group secrets"


def test_empty_plaintext_round_trips() -> None:
    assert open_keystore("p", seal_keystore("p", b"", FAST)) == b""


def test_default_params_round_trip() -> None:
    blob = seal_keystore("p", b"x", DEFAULT_PARAMS)
    assert read_params(blob) == DEFAULT_PARAMS
    assert open_keystore("p", blob) == b"x"


def test_each_seal_uses_a_fresh_salt_and_nonce() -> None:
    first, second = seal_keystore("p", b"x", FAST), seal_keystore("p", b"x", FAST)
    assert first[17:45] != second[17:45]
    assert first != second


def test_read_params_returns_the_stored_cost() -> None:
    params = KdfParams(time_cost=2, memory_kib=64, parallelism=4)
    assert read_params(seal_keystore("p", b"x", params)) == params


def test_blob_layout_matches_the_documented_format() -> None:
    # Rebuild the blob from the documented layout with the libraries directly.
    params = KdfParams(time_cost=2, memory_kib=32, parallelism=2)
    blob = seal_keystore("pass", b"plain", params, _salt=SALT, _nonce=NONCE)
    header = b"SPKS" + bytes([1]) + struct.pack(">III", 2, 32, 2) + SALT + NONCE
    assert len(header) == HEADER_LEN
    key = hash_secret_raw(b"pass", SALT, 2, 32, 2, hash_len=32, type=Type.ID)
    assert blob == header + AESGCM(key).encrypt(NONCE, b"plain", header)


def test_fixed_salt_and_nonce_give_a_deterministic_blob() -> None:
    first = seal_keystore("p", b"x", FAST, _salt=SALT, _nonce=NONCE)
    assert first == seal_keystore("p", b"x", FAST, _salt=SALT, _nonce=NONCE)


@pytest.mark.parametrize("salt, nonce", [(SALT[:15], NONCE), (SALT, NONCE + b"\x00")])
def test_fixed_salt_or_nonce_of_wrong_length_is_refused(salt: bytes, nonce: bytes) -> None:
    with pytest.raises(ValueError):
        seal_keystore("p", b"x", FAST, _salt=salt, _nonce=nonce)


@settings(max_examples=15, deadline=None)
@given(passphrase=st.text(max_size=40), plaintext=st.binary(max_size=2048))
def test_any_passphrase_and_plaintext_round_trip(passphrase: str, plaintext: bytes) -> None:
    assert open_keystore(passphrase, seal_keystore(passphrase, plaintext, FAST)) == plaintext


# Passphrase normalisation


def test_composed_and_decomposed_accents_open_the_same_keystore() -> None:
    composed, decomposed = "caf\u00e9 cr\u00e8me", "cafe\u0301 cre\u0300me"
    assert composed != decomposed
    assert open_keystore(decomposed, seal_keystore(composed, b"x", FAST)) == b"x"
    assert open_keystore(composed, seal_keystore(decomposed, b"x", FAST)) == b"x"


def test_compatibility_forms_are_not_folded() -> None:
    # NFC, not NFKC: a ligature is a different passphrase from its letters.
    _assert_refused("ffi", seal_keystore("\ufb03", b"x", FAST))


# Every failure to open is the same KeystoreError


@pytest.mark.parametrize(
    "wrong", ["hunter2 but longe", "hunter2 but longer ", "Hunter2 but longer", ""]
)
def test_wrong_passphrase_is_refused(blob: bytes, wrong: str) -> None:
    _assert_refused(wrong, blob)


@pytest.mark.parametrize(
    "position",
    [
        0,  # magic
        3,
        4,  # format version
        8,  # time_cost
        12,  # memory_kib (low byte: stays in bounds, so only the tag catches it)
        16,  # parallelism
        17,  # salt
        32,
        33,  # nonce
        44,
        45,  # first ciphertext byte
        60,
        -17,  # last ciphertext byte
        -16,  # first tag byte
        -1,  # last tag byte
    ],
)
def test_flipped_bit_anywhere_is_refused(blob: bytes, position: int) -> None:
    _assert_refused("hunter2 but longer", _flip(blob, position % len(blob)))


def test_every_truncation_is_refused(blob: bytes) -> None:
    for length in sorted({0, 1, 4, 5, 17, 44, 45, 45 + 15, 45 + 16, len(blob) - 1}):
        _assert_refused("hunter2 but longer", blob[:length])


def test_appended_bytes_are_refused(blob: bytes) -> None:
    _assert_refused("hunter2 but longer", blob + b"\x00")


def test_other_format_version_is_refused(blob: bytes) -> None:
    _assert_refused("hunter2 but longer", blob[:4] + bytes([2]) + blob[5:])


@pytest.mark.parametrize(
    "time_cost, memory_kib, parallelism",
    [
        (0, 8, 1),
        (101, 8, 1),
        (1, 7, 1),
        (1, 4 * 1024 * 1024 + 1, 1),
        (1, 2**32 - 1, 1),
        (1, 64, 0),
        (1, 64, 17),
        (1, 8, 2),  # under 8 KiB per lane
    ],
)
def test_params_out_of_bounds_in_a_tampered_header_are_refused(
    blob: bytes, time_cost: int, memory_kib: int, parallelism: int
) -> None:
    tampered = blob[:5] + struct.pack(">III", time_cost, memory_kib, parallelism) + blob[17:]
    _assert_refused("hunter2 but longer", tampered)
    with pytest.raises(KeystoreError):
        read_params(tampered)


def test_in_bounds_but_altered_params_are_refused(blob: bytes) -> None:
    tampered = blob[:5] + struct.pack(">III", 2, 8, 1) + blob[17:]
    assert read_params(tampered) == KdfParams(2, 8, 1)
    _assert_refused("hunter2 but longer", tampered)


def test_read_params_of_a_non_keystore_is_refused() -> None:
    with pytest.raises(KeystoreError):
        read_params(b"not a keystore at all, but long enough to hold a header")
    with pytest.raises(KeystoreError):
        read_params(b"SPKS")


# Parameter bounds


@pytest.mark.parametrize(
    "time_cost, memory_kib, parallelism",
    [(0, 8, 1), (101, 8, 1), (1, 7, 1), (1, 4 * 1024 * 1024 + 1, 1), (1, 8, 0), (1, 256, 17)],
)
def test_out_of_bound_params_cannot_be_built(
    time_cost: int, memory_kib: int, parallelism: int
) -> None:
    with pytest.raises(ValueError):
        KdfParams(time_cost, memory_kib, parallelism)


def test_bounds_are_inclusive() -> None:
    KdfParams(1, 8, 1)
    KdfParams(100, 4 * 1024 * 1024, 16)


def test_non_integer_params_cannot_be_built() -> None:
    with pytest.raises(ValueError):
        KdfParams(True, 8, 1)
    with pytest.raises(ValueError):
        KdfParams(1, 8.0, 1)  # type: ignore[arg-type]


def test_default_params_are_the_documented_floor() -> None:
    assert DEFAULT_PARAMS == KdfParams(time_cost=3, memory_kib=65536, parallelism=1)


# Calibration


def _cost_model(
    seconds_per_unit: float, calls: list[KdfParams] | None = None
) -> Callable[[KdfParams], float]:
    """A fake clock: one derivation costs memory * time units."""

    def measure(params: KdfParams) -> float:
        if calls is not None:
            calls.append(params)
        return seconds_per_unit * params.memory_kib * params.time_cost

    return measure


def test_calibration_returns_the_floor_when_it_is_already_slow_enough() -> None:
    assert calibrate(0.5, _cost_model(1.0)) == DEFAULT_PARAMS


def test_calibration_doubles_memory_until_the_target_is_reached() -> None:
    # Floor costs 3 * 65536 units; at 1e-6 s/unit that is ~0.2 s.
    calls: list[KdfParams] = []
    params = calibrate(0.5, _cost_model(1e-6, calls))
    assert params == KdfParams(time_cost=3, memory_kib=262144, parallelism=1)
    assert [p.memory_kib for p in calls] == [65536, 131072, 262144]


def test_calibration_grows_time_cost_once_memory_is_at_its_cap() -> None:
    calls: list[KdfParams] = []
    params = calibrate(10.0, _cost_model(1e-6, calls))
    assert params.memory_kib == MAX_CALIBRATED_MEMORY_KIB
    assert _cost_model(1e-6)(params) >= 10.0
    one_less = dataclasses.replace(params, time_cost=params.time_cost - 1)
    assert _cost_model(1e-6)(one_less) < 10.0
    assert len(calls) < 10


@settings(max_examples=200, deadline=None)
@given(
    target=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
    seconds_per_unit=st.floats(min_value=1e-12, max_value=1e-3),
)
def test_calibration_reaches_the_target_and_never_goes_below_the_floor(
    target: float, seconds_per_unit: float
) -> None:
    measure = _cost_model(seconds_per_unit)
    params = calibrate(target, measure)
    assert params.time_cost >= DEFAULT_PARAMS.time_cost
    assert params.memory_kib >= DEFAULT_PARAMS.memory_kib
    assert params.parallelism == DEFAULT_PARAMS.parallelism
    assert params.memory_kib <= MAX_CALIBRATED_MEMORY_KIB
    at_ceiling = params.time_cost == 100 and params.memory_kib == MAX_CALIBRATED_MEMORY_KIB
    assert measure(params) >= target or at_ceiling


def test_calibration_stops_at_the_bounds_on_hopeless_hardware() -> None:
    params = calibrate(1e9, _cost_model(1e-12))
    assert params == KdfParams(100, MAX_CALIBRATED_MEMORY_KIB, 1)


def test_calibration_respects_a_custom_floor() -> None:
    floor = KdfParams(4, 131072, 2)
    assert calibrate(0.0, _cost_model(1.0), floor=floor) == floor
    assert calibrate(0.0, lambda p: 0.0, floor=floor) == floor


def test_calibration_survives_a_measure_that_returns_zero() -> None:
    params = calibrate(1.0, lambda p: 0.0)
    assert params == KdfParams(100, MAX_CALIBRATED_MEMORY_KIB, 1)


# Known-answer vectors


def _vectors() -> list[dict[str, Any]]:
    doc = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert doc["origin"].startswith("generated by tests/vectors/make_keystore_vectors.py")
    vectors: list[dict[str, Any]] = doc["vectors"]
    return vectors


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_known_answer_vector(vector: dict[str, Any]) -> None:
    params = KdfParams(**vector["params"])
    blob = bytes.fromhex(vector["blob"])
    plaintext = bytes.fromhex(vector["plaintext"])
    sealed = seal_keystore(
        vector["passphrase"],
        plaintext,
        params,
        _salt=bytes.fromhex(vector["salt"]),
        _nonce=bytes.fromhex(vector["nonce"]),
    )
    assert sealed == blob
    assert read_params(blob) == params
    assert open_keystore(vector["passphrase"], blob) == plaintext


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_known_answer_vector_through_a_kept_key(vector: dict[str, Any]) -> None:
    blob = bytes.fromhex(vector["blob"])
    plaintext = bytes.fromhex(vector["plaintext"])
    key = derive_key(vector["passphrase"], blob)
    assert (key.params, key.salt) == (KdfParams(**vector["params"]), bytes.fromhex(vector["salt"]))
    assert open_with_key(key, blob) == plaintext
    nonce = bytes.fromhex(vector["nonce"])
    assert seal_with_key(key, plaintext, _nonce=nonce) == blob
    made = new_key(vector["passphrase"], key.params, _salt=key.salt)
    assert made == key


# A key derived once and kept (a client re-reading its keystore under its lock)


def test_a_kept_key_reseals_under_the_same_salt_and_cost_with_a_fresh_nonce(blob: bytes) -> None:
    key = derive_key("hunter2 but longer", blob)
    again = seal_with_key(key, b"changed state")
    assert again[: HEADER_LEN - 12] == blob[: HEADER_LEN - 12]
    assert again[HEADER_LEN - 12 : HEADER_LEN] != blob[HEADER_LEN - 12 : HEADER_LEN]
    assert (
        seal_with_key(key, b"x")[HEADER_LEN - 12 : HEADER_LEN]
        != again[HEADER_LEN - 12 : HEADER_LEN]
    )
    assert open_with_key(key, again) == b"changed state"
    assert open_keystore("hunter2 but longer", again) == b"changed state"


def test_a_new_key_seals_what_the_passphrase_opens() -> None:
    key = new_key("p", FAST)
    assert open_keystore("p", seal_with_key(key, b"state")) == b"state"
    assert new_key("p", FAST).salt != key.salt


def test_the_key_never_shows_in_its_repr(blob: bytes) -> None:
    key = derive_key("hunter2 but longer", blob)
    assert key.key.hex() not in repr(key) and repr(key.key) not in repr(key)


def _refused_with_key(key: KeystoreKey, blob: bytes) -> None:
    with pytest.raises(KeystoreError) as caught:
        open_with_key(key, blob)
    assert str(caught.value) == "wrong passphrase or damaged keystore"


def test_a_key_from_the_wrong_passphrase_opens_nothing(blob: bytes) -> None:
    _refused_with_key(derive_key("hunter3 but longer", blob), blob)


def test_a_kept_key_refuses_a_blob_of_another_salt_or_cost(blob: bytes) -> None:
    key = derive_key("hunter2 but longer", blob)
    _refused_with_key(key, seal_keystore("hunter2 but longer", b"other salt", FAST))
    costlier = seal_keystore("hunter2 but longer", b"", KdfParams(2, 8, 1), _salt=key.salt)
    _refused_with_key(key, costlier)
    # Same key bytes claimed for other parameters: the header no longer matches.
    _refused_with_key(dataclasses.replace(key, params=KdfParams(2, 8, 1)), blob)


@given(st.integers(min_value=0, max_value=200))
@settings(max_examples=60, deadline=None)
def test_a_kept_key_refuses_any_flipped_bit(position: int) -> None:
    key = new_key("p", FAST, _salt=SALT)
    sealed = seal_with_key(key, b"chain keys", _nonce=NONCE)
    _refused_with_key(key, _flip(sealed, position % len(sealed)))


def test_a_kept_key_refuses_truncations_and_other_formats(blob: bytes) -> None:
    key = derive_key("hunter2 but longer", blob)
    for cut in (0, 4, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 15, len(blob) - 1):
        _refused_with_key(key, blob[:cut])
    _refused_with_key(key, blob[:4] + b"\x02" + blob[5:])
    _refused_with_key(key, blob + b"\x00")


def test_deriving_from_a_malformed_header_is_refused() -> None:
    for junk in (b"", b"SPKS", b"NOPE" + bytes(60)):
        with pytest.raises(KeystoreError):
            derive_key("p", junk)


def test_a_kept_key_of_the_wrong_size_or_a_bad_nonce_is_refused_when_sealing() -> None:
    key = new_key("p", FAST)
    with pytest.raises(ValueError):
        seal_with_key(dataclasses.replace(key, key=bytes(16)), b"")
    with pytest.raises(ValueError):
        seal_with_key(key, b"", _nonce=bytes(11))
    with pytest.raises(ValueError):
        new_key("p", FAST, _salt=bytes(15))
