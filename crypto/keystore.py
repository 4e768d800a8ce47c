"""Sealing of the local keystore under the member's passphrase.

The rule it keeps: a keystore blob describes itself (its Argon2id cost, salt
and nonce travel in its header), the whole header is authenticated as AES-GCM
associated data, and every way a blob can fail to open raises the same
``KeystoreError`` with the same message.

Blob layout (all integers big-endian)::

    magic  b"SPKS"                 4 bytes
    format version (1)             1 byte
    Argon2id time_cost             4 bytes
    Argon2id memory_kib            4 bytes
    Argon2id parallelism           4 bytes
    salt                          16 bytes
    AES-GCM nonce                 12 bytes
    AES-256-GCM ciphertext + tag   (AAD = the 45 header bytes above)

The AES key is Argon2id (v1.3, 32-byte output) over the NFC-normalised UTF-8
passphrase and the salt. This module reads no clock: calibrating the cost is
done by the caller's ``measure`` function.

A client that re-reads and re-writes its keystore often derives the key once
(``derive_key`` from an existing blob, ``new_key`` for a new one) and keeps
the ``KeystoreKey``: ``seal_with_key`` re-seals under the same salt and cost
with a fresh random nonce, and ``open_with_key`` opens only a blob whose
header carries that same salt and cost.
"""

from __future__ import annotations

import math
import os
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.errors import KeystoreError

__all__ = [
    "DEFAULT_PARAMS",
    "MAX_CALIBRATED_MEMORY_KIB",
    "KdfParams",
    "KeystoreKey",
    "calibrate",
    "derive_key",
    "new_key",
    "open_keystore",
    "open_with_key",
    "read_params",
    "seal_keystore",
    "seal_with_key",
]

_MAGIC = b"SPKS"
_FORMAT_VERSION = 1
_HEADER = struct.Struct(">4sBIII16s12s")
_SALT_LEN = 16
_NONCE_LEN = 12
_KEY_LEN = 32
_TAG_LEN = 16

# Bounds refuse absurd costs read from a tampered file before any work is
# done: a huge memory_kib would exhaust the device, a zero one is no KDF.
_MIN_TIME, _MAX_TIME = 1, 100
_MIN_MEMORY_KIB, _MAX_MEMORY_KIB = 8, 4 * 1024 * 1024  # 8 KiB .. 4 GiB
_MIN_PARALLELISM, _MAX_PARALLELISM = 1, 16

# One message for every failure to open, so a damaged file and a wrong
# passphrase look alike to whoever holds the device.
_OPEN_FAILED = "wrong passphrase or damaged keystore"


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters stored in a keystore header.

    Raises ValueError on construction if a value is out of bounds (time 1..100,
    memory 8 KiB..4 GiB and at least 8 KiB per lane, parallelism 1..16).
    """

    time_cost: int
    memory_kib: int
    parallelism: int

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("time_cost", self.time_cost, _MIN_TIME, _MAX_TIME),
            ("memory_kib", self.memory_kib, _MIN_MEMORY_KIB, _MAX_MEMORY_KIB),
            ("parallelism", self.parallelism, _MIN_PARALLELISM, _MAX_PARALLELISM),
        ):
            if type(value) is not int or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in {low}..{high}")
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError("Argon2 needs at least 8 KiB of memory per lane")


# The floor for real keystores; calibrate() only ever goes up from here.
DEFAULT_PARAMS = KdfParams(time_cost=3, memory_kib=64 * 1024, parallelism=1)
MAX_CALIBRATED_MEMORY_KIB = 1024 * 1024  # 1 GiB


def calibrate(
    target_seconds: float,
    measure: Callable[[KdfParams], float],
    *,
    floor: KdfParams = DEFAULT_PARAMS,
) -> KdfParams:
    """Find the cheapest step up from ``floor`` that costs ``target_seconds``.

    ``measure(params)`` is the caller's: it runs one derivation and returns
    how long it took, so this module reads no clock. Memory doubles first (up
    to 1 GiB), since memory is what an attacker's hardware pays for; then
    time_cost grows. Never returns less than ``floor``; stops at the bounds.
    """
    params = floor
    while True:
        elapsed = measure(params)
        if elapsed >= target_seconds:
            return params
        if params.memory_kib < MAX_CALIBRATED_MEMORY_KIB:
            memory = min(params.memory_kib * 2, MAX_CALIBRATED_MEMORY_KIB)
            params = replace(params, memory_kib=memory)
        elif params.time_cost < _MAX_TIME:
            params = replace(params, time_cost=_next_time_cost(params, elapsed, target_seconds))
        else:
            return params


def _next_time_cost(params: KdfParams, elapsed: float, target: float) -> int:
    # Cost is about linear in time_cost: jump to the estimate rather than
    # measuring every step, but always move by at least one.
    estimate = params.time_cost + 1
    if elapsed > 0 and math.isfinite(target / elapsed):
        estimate = max(estimate, math.ceil(params.time_cost * target / elapsed))
    return min(estimate, _MAX_TIME)


@dataclass(frozen=True)
class KeystoreKey:
    """An Argon2id-derived keystore key with the salt and cost it was derived for.

    The key is left out of repr so that it can't end up in a log or traceback.
    """

    params: KdfParams
    salt: bytes
    key: bytes = field(repr=False)


def new_key(passphrase: str, params: KdfParams, *, _salt: bytes | None = None) -> KeystoreKey:
    """Derive the key of a new keystore under a fresh random salt.

    ``_salt`` exists only for known-answer vectors.
    """
    salt = os.urandom(_SALT_LEN) if _salt is None else _salt
    if len(salt) != _SALT_LEN:
        raise ValueError("salt must be 16 bytes and nonce 12 bytes")
    return KeystoreKey(params, salt, _derive_key(passphrase, salt, params))


def derive_key(passphrase: str, blob: bytes) -> KeystoreKey:
    """Derive the key for an existing blob from its header's salt and cost.

    Raises KeystoreError if the header is malformed (or the cost can't be
    paid). A wrong passphrase shows only when ``open_with_key`` fails.
    """
    _, params, salt, _ = _parse_header(blob)
    try:
        return KeystoreKey(params, salt, _derive_key(passphrase, salt, params))
    except HashingError:
        raise KeystoreError(_OPEN_FAILED) from None


def seal_with_key(key: KeystoreKey, plaintext: bytes, *, _nonce: bytes | None = None) -> bytes:
    """Seal ``plaintext`` under an already-derived key, with a fresh random nonce.

    The salt and cost in the header are the key's own. ``_nonce`` exists only
    for known-answer vectors.
    """
    nonce = os.urandom(_NONCE_LEN) if _nonce is None else _nonce
    if len(key.salt) != _SALT_LEN or len(nonce) != _NONCE_LEN:
        raise ValueError("salt must be 16 bytes and nonce 12 bytes")
    if len(key.key) != _KEY_LEN:
        raise ValueError("a keystore key is 32 bytes")
    params = key.params
    header = _HEADER.pack(
        _MAGIC,
        _FORMAT_VERSION,
        params.time_cost,
        params.memory_kib,
        params.parallelism,
        key.salt,
        nonce,
    )
    return header + AESGCM(key.key).encrypt(nonce, plaintext, header)


def open_with_key(key: KeystoreKey, blob: bytes) -> bytes:
    """Open a blob sealed under ``key``'s salt and cost; raise KeystoreError on any failure.

    A blob sealed under another salt or cost (the file was re-created) is
    refused like a damaged one: derive its key again with ``derive_key``.
    """
    header, params, salt, nonce = _parse_header(blob)
    if len(blob) < _HEADER.size + _TAG_LEN or params != key.params or salt != key.salt:
        raise KeystoreError(_OPEN_FAILED)
    try:
        return AESGCM(key.key).decrypt(nonce, blob[_HEADER.size :], header)
    except (InvalidTag, ValueError):
        raise KeystoreError(_OPEN_FAILED) from None


def seal_keystore(
    passphrase: str,
    plaintext: bytes,
    params: KdfParams,
    *,
    _salt: bytes | None = None,
    _nonce: bytes | None = None,
) -> bytes:
    """Seal ``plaintext`` under ``passphrase``; return a self-describing blob.

    ``_salt`` and ``_nonce`` exist only for known-answer vectors.
    """
    if (_salt is not None and len(_salt) != _SALT_LEN) or (
        _nonce is not None and len(_nonce) != _NONCE_LEN
    ):
        raise ValueError("salt must be 16 bytes and nonce 12 bytes")
    return seal_with_key(new_key(passphrase, params, _salt=_salt), plaintext, _nonce=_nonce)


def open_keystore(passphrase: str, blob: bytes) -> bytes:
    """Open a blob made by ``seal_keystore``; raise KeystoreError on any failure."""
    _parse_header(blob)
    if len(blob) < _HEADER.size + _TAG_LEN:
        raise KeystoreError(_OPEN_FAILED)
    return open_with_key(derive_key(passphrase, blob), blob)


def read_params(blob: bytes) -> KdfParams:
    """The Argon2id parameters a blob was sealed with (to decide on a re-seal).

    Raises KeystoreError if the header is malformed. The parameters are not
    authenticated until the blob is opened.
    """
    return _parse_header(blob)[1]


def _parse_header(blob: bytes) -> tuple[bytes, KdfParams, bytes, bytes]:
    if len(blob) < _HEADER.size:
        raise KeystoreError(_OPEN_FAILED)
    header = blob[: _HEADER.size]
    magic, version, time_cost, memory_kib, parallelism, salt, nonce = _HEADER.unpack(header)
    if magic != _MAGIC or version != _FORMAT_VERSION:
        raise KeystoreError(_OPEN_FAILED)
    try:
        params = KdfParams(time_cost, memory_kib, parallelism)
    except ValueError:
        raise KeystoreError(_OPEN_FAILED) from None
    return header, params, salt, nonce


def _derive_key(passphrase: str, salt: bytes, params: KdfParams) -> bytes:
    # NFC so that the same passphrase typed on two keyboards (composed or
    # decomposed accents) derives the same key.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return hash_secret_raw(
        secret,
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=_KEY_LEN,
        type=Type.ID,
    )
