"""Identity keys, member ids, safety numbers.

A member id is a hash of the identity public key, so it certifies itself:
whoever shows a key and a signature proves the id, and the server never
assigns one. Signing always takes a context label (see labels.py), so a
signature made for one purpose can't be replayed for another.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature as _LibInvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from crypto import labels
from crypto.encoding import b32d, b32e
from crypto.errors import InvalidSignature, InvalidStatement

MEMBER_ID_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

# Ed25519 points of small order (libsodium's blocklist, compared without the
# sign bit). Anyone can make signatures that verify under them, so a key that
# is one would let the server or anyone else speak as that member id.
_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


class IdentityPublicKey:
    """An Ed25519 public key that verifies a member's statements."""

    __slots__ = ("_id", "_key", "_raw")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_BYTES:
            raise InvalidStatement("an identity key is 32 bytes")
        if raw[:31] + bytes([raw[31] & 0x7F]) in _SMALL_ORDER:
            raise InvalidStatement("a small-order Ed25519 key is not an identity key")
        try:
            self._key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise InvalidStatement("not an Ed25519 public key") from exc
        self._raw = raw
        self._id: bytes | None = None

    @property
    def raw(self) -> bytes:
        return self._raw

    @property
    def member_id(self) -> bytes:
        if self._id is None:
            self._id = member_id_of(self._raw)
        return self._id

    def verify(self, context: bytes, data: bytes, signature: bytes) -> None:
        """Raise InvalidSignature unless `signature` signs context + data."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
            raise InvalidSignature("signature has the wrong length")
        try:
            self._key.verify(signature, context + data)
        except _LibInvalidSignature as exc:
            raise InvalidSignature("signature does not verify") from exc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityPublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"IdentityPublicKey({member_id_text(self.member_id)})"


class IdentityKey:
    """A member's Ed25519 private identity key."""

    __slots__ = ("_key",)

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> IdentityKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> IdentityKey:
        if len(raw) != 32:
            raise ValueError("an identity private key is 32 bytes")
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(raw))

    def private_bytes(self) -> bytes:
        return self._key.private_bytes_raw()

    def public_key(self) -> IdentityPublicKey:
        return IdentityPublicKey(self._key.public_key().public_bytes_raw())

    @property
    def member_id(self) -> bytes:
        return self.public_key().member_id

    def sign(self, context: bytes, data: bytes) -> bytes:
        return self._key.sign(context + data)


def member_id_of(public_key: bytes) -> bytes:
    return hashlib.sha256(labels.MEMBER_ID + public_key).digest()


def member_id_text(member_id: bytes) -> str:
    """The printed form of a member id: 52 lowercase base32 characters."""
    return b32e(member_id)


def parse_member_id(text: str) -> bytes:
    """Parse a printed member id; raise InvalidStatement if it is not one."""
    try:
        raw = b32d(text.strip())
    except ValueError as exc:
        raise InvalidStatement("not a member id") from exc
    if len(raw) != MEMBER_ID_BYTES:
        raise InvalidStatement("not a member id")
    return raw


def _digit_groups(digest: bytes, groups: int) -> str:
    chunks = []
    for i in range(groups):
        chunk = int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100_000
        chunks.append(f"{chunk:05d}")
    return " ".join(chunks)


def safety_number(a: IdentityPublicKey, b: IdentityPublicKey) -> str:
    """The number two people compare in person: 6 groups of 5 digits.

    Symmetric (either side computes the same) and changes with either key.
    """
    first, second = sorted((a.raw, b.raw))
    digest = hashlib.sha512(labels.SAFETY_NUMBER + first + second).digest()
    return _digit_groups(digest, 6)


def fingerprint(key: IdentityPublicKey) -> str:
    """One key's own number (6 groups of 5 digits), for showing a key alone."""
    digest = hashlib.sha512(labels.FINGERPRINT + key.raw).digest()
    return _digit_groups(digest, 6)


def revocation_fingerprint(head: bytes) -> str:
    """The network's revocation list as members compare it: 4 groups of 5 digits.

    From the id of the chain's last revocation, which commits to every one
    before it (crypto.chains): the same count with another number means the
    server showed two members different revocation lists.
    """
    if len(head) != 32:
        raise ValueError("a revocation fingerprint is of a 32-byte revocation id")
    return _digit_groups(hashlib.sha512(labels.REVOCATION_FINGERPRINT + head).digest(), 4)


def roster_fingerprint(group: bytes, head: bytes) -> str:
    """A group's roster as members compare it when they meet: 4 groups of 5 digits.

    From the group id and the id of the log's last event, which chains back
    over every event before it: two members who see the same number hold the
    same log; different numbers at the same roster seq mean the server showed
    them two forks of it.
    """
    if len(group) != 16 or len(head) != 32:
        raise ValueError("a roster fingerprint is of a 16-byte group id and a 32-byte head")
    digest = hashlib.sha512(labels.ROSTER_FINGERPRINT + group + head).digest()
    return _digit_groups(digest, 4)
