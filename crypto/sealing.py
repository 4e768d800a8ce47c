"""HPKE sealing (RFC 9180) to a member's KEM key.

The rule it keeps: a sealed box names its suite in its first byte, is bound to
the caller's ``info`` context, and every way it can fail to open raises the
same ``DecryptionFailed`` with the same message, so a caller (or an attacker
watching one) never learns which check failed.

Wire format of a sealed box::

    suite code (1 byte) || HPKE enc (encapsulated key) || AEAD ciphertext+tag

Key bytes:

- ``MLKEM768_X25519``: private = ML-KEM-768 seed (64) || X25519 private (32);
  public = ML-KEM-768 public (1184) || X25519 public (32).
- ``X25519``: private = X25519 private (32); public = X25519 public (32).
"""

from __future__ import annotations

import enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from crypto.errors import DecryptionFailed, InvalidStatement

__all__ = [
    "KemPrivateKey",
    "KemPublicKey",
    "KemSuite",
    "open_sealed",
    "seal",
]

_MLKEM768_SEED_LEN = 64
_MLKEM768_PUBLIC_LEN = 1184
_X25519_LEN = 32

# One message for every failure to open: which check failed is not for the
# caller (or an attacker probing a decryption oracle) to know.
_OPEN_FAILED = "sealed box does not open under this key and context"

# Any fixed scalar works: X25519 clamps it to a multiple of the cofactor, so
# a low-order public point gives the all-zero shared secret for every scalar.
_PROBE_KEY = x25519.X25519PrivateKey.from_private_bytes(b"\x01" * _X25519_LEN)


class KemSuite(enum.Enum):
    """An HPKE suite a KEM key belongs to; the value is the suite id."""

    MLKEM768_X25519 = "MLKEM768_X25519/HKDF_SHA256/AES_256_GCM"
    X25519 = "X25519/HKDF_SHA256/AES_256_GCM"

    @property
    def code(self) -> int:
        """The byte that names this suite at the start of every sealed box."""
        return _CODE_OF_SUITE[self]


_CODE_OF_SUITE: dict[KemSuite, int] = {
    KemSuite.MLKEM768_X25519: 1,
    KemSuite.X25519: 2,
}
_SUITE_OF_CODE: dict[int, KemSuite] = {c: s for s, c in _CODE_OF_SUITE.items()}

_HPKE_SUITES: dict[KemSuite, hpke.Suite] = {
    KemSuite.MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
    KemSuite.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}

_HpkePublic = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey
_HpkePrivate = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey


class KemPublicKey:
    """A member's public KEM key; build it with ``from_bytes``."""

    __slots__ = ("_hpke", "_mlkem", "_suite", "_x25519")

    def __init__(
        self,
        suite: KemSuite,
        mlkem_key: mlkem.MLKEM768PublicKey | None,
        x25519_key: x25519.X25519PublicKey,
    ) -> None:
        # Internal: use from_bytes() or KemPrivateKey.public_key().
        self._suite = suite
        self._mlkem = mlkem_key
        self._x25519 = x25519_key
        self._hpke: _HpkePublic
        if mlkem_key is None:
            self._hpke = x25519_key
        else:
            self._hpke = hpke.MLKEM768X25519PublicKey(mlkem_key, x25519_key)

    @classmethod
    def from_bytes(cls, suite: KemSuite, data: bytes) -> KemPublicKey:
        """Parse a public key of ``suite``; raise InvalidStatement if malformed."""
        if suite is KemSuite.MLKEM768_X25519:
            if len(data) != _MLKEM768_PUBLIC_LEN + _X25519_LEN:
                raise InvalidStatement("bad KEM public key")
            try:
                mlkem_key = mlkem.MLKEM768PublicKey.from_public_bytes(data[:_MLKEM768_PUBLIC_LEN])
            except ValueError:
                raise InvalidStatement("bad KEM public key") from None
            x_key = _parse_x25519_public(data[_MLKEM768_PUBLIC_LEN:])
            return cls(suite, mlkem_key, x_key)
        if len(data) != _X25519_LEN:
            raise InvalidStatement("bad KEM public key")
        return cls(suite, None, _parse_x25519_public(data))

    @property
    def suite(self) -> KemSuite:
        return self._suite

    def public_bytes(self) -> bytes:
        """The raw public key bytes of this suite (see the module docstring)."""
        x_raw = self._x25519.public_bytes_raw()
        if self._mlkem is None:
            return x_raw
        return self._mlkem.public_bytes_raw() + x_raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KemPublicKey):
            return NotImplemented
        return self._suite is other._suite and self.public_bytes() == other.public_bytes()

    def __hash__(self) -> int:
        return hash((self._suite, self.public_bytes()))

    def __repr__(self) -> str:
        return f"<KemPublicKey {self._suite.name} {self.public_bytes()[-8:].hex()}…>"


class KemPrivateKey:
    """A member's private KEM key; build it with ``generate`` or ``from_private_bytes``."""

    __slots__ = ("_hpke", "_mlkem", "_suite", "_x25519")

    def __init__(
        self,
        suite: KemSuite,
        mlkem_key: mlkem.MLKEM768PrivateKey | None,
        x25519_key: x25519.X25519PrivateKey,
    ) -> None:
        # Internal: use generate() or from_private_bytes().
        self._suite = suite
        self._mlkem = mlkem_key
        self._x25519 = x25519_key
        self._hpke: _HpkePrivate
        if mlkem_key is None:
            self._hpke = x25519_key
        else:
            self._hpke = hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key)

    @classmethod
    def generate(cls, suite: KemSuite = KemSuite.MLKEM768_X25519) -> KemPrivateKey:
        x_key = x25519.X25519PrivateKey.generate()
        if suite is KemSuite.MLKEM768_X25519:
            return cls(suite, mlkem.MLKEM768PrivateKey.generate(), x_key)
        return cls(suite, None, x_key)

    @classmethod
    def from_private_bytes(cls, suite: KemSuite, data: bytes) -> KemPrivateKey:
        """Load a private key of ``suite``; raise InvalidStatement if malformed."""
        if suite is KemSuite.MLKEM768_X25519:
            if len(data) != _MLKEM768_SEED_LEN + _X25519_LEN:
                raise InvalidStatement("bad KEM private key")
            mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(data[:_MLKEM768_SEED_LEN])
            x_key = x25519.X25519PrivateKey.from_private_bytes(data[_MLKEM768_SEED_LEN:])
            return cls(suite, mlkem_key, x_key)
        if len(data) != _X25519_LEN:
            raise InvalidStatement("bad KEM private key")
        return cls(suite, None, x25519.X25519PrivateKey.from_private_bytes(data))

    @property
    def suite(self) -> KemSuite:
        return self._suite

    def private_bytes(self) -> bytes:
        """The raw private key bytes of this suite (see the module docstring)."""
        x_raw = self._x25519.private_bytes_raw()
        if self._mlkem is None:
            return x_raw
        return self._mlkem.private_bytes_raw() + x_raw

    def public_key(self) -> KemPublicKey:
        mlkem_pub = None if self._mlkem is None else self._mlkem.public_key()
        return KemPublicKey(self._suite, mlkem_pub, self._x25519.public_key())

    def __repr__(self) -> str:
        return f"<KemPrivateKey {self._suite.name}>"


def seal(public_key: KemPublicKey, plaintext: bytes, info: bytes) -> bytes:
    """Seal ``plaintext`` to ``public_key``, bound to the context ``info``.

    ``info`` is built by the caller and must name what the box is for (a
    domain-separation label and the ids it belongs to); the same ``info``
    must be given to ``open_sealed``.
    """
    suite = public_key.suite
    body = _HPKE_SUITES[suite].encrypt(plaintext, public_key._hpke, info=info)
    return bytes([suite.code]) + body


def open_sealed(private_key: KemPrivateKey, ciphertext: bytes, info: bytes) -> bytes:
    """Open a box made by ``seal``; raise DecryptionFailed on any failure."""
    if not ciphertext:
        raise DecryptionFailed(_OPEN_FAILED)
    suite = _SUITE_OF_CODE.get(ciphertext[0])
    if suite is None or suite is not private_key.suite:
        raise DecryptionFailed(_OPEN_FAILED)
    try:
        return _HPKE_SUITES[suite].decrypt(ciphertext[1:], private_key._hpke, info=info)
    except (InvalidTag, ValueError):
        raise DecryptionFailed(_OPEN_FAILED) from None


def _parse_x25519_public(data: bytes) -> x25519.X25519PublicKey:
    # Refuse low-order points here, where the key is parsed, rather than
    # letting every later seal() to that key fail.
    key = x25519.X25519PublicKey.from_public_bytes(data)
    try:
        _PROBE_KEY.exchange(key)
    except ValueError:
        raise InvalidStatement("bad KEM public key") from None
    return key
