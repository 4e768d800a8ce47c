"""Invite codes, the encrypted invite payload, and redemption proofs.

An invite code is 136 random bits plus a 24-bit checksum, written as 32
base32 letters in groups of four so it can be read aloud. From the secret,
HKDF-SHA256 derives three unrelated values under separate labels:

- the lookup id, which the server indexes the invite by;
- the payload key, which seals the payload (genesis, inviter chain, note)
  so the server can't read it, padded to a size bucket so its length says
  little about the note;
- the proof key, an Ed25519 seed. The server stores only its public half,
  and a newcomer signs their join statement with it: the server can check
  the proof, but neither the server nor a database thief can make one.

The inviter's client re-derives the proof key from the code it made, so it
also checks the proof itself instead of trusting the server's word.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import labels, padding
from crypto.encoding import Value, b32d, b32e, decode, encode
from crypto.errors import DecryptionFailed, InvalidCode, InvalidStatement
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.network import GROUP_ID_BYTES, KeyBundle
from crypto.statements import Statement, get_bytes, get_int, sign_statement

SECRET_BYTES = 17
CHECKSUM_BYTES = 3
LOOKUP_ID_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
# A sealed payload is at most this long (the server's limit); the plaintext is
# padded to one of these sizes, the last filling that limit exactly, so the
# payload's length does not give away the note's (or the name's).
MAX_SEALED_PAYLOAD = 48 * 1024
PAYLOAD_BUCKETS = (1024, 4096, 16384, MAX_SEALED_PAYLOAD - _NONCE_BYTES - _TAG_BYTES)
# Letters people confuse with base32 ones, mapped to what they meant.
_LOOKALIKES = str.maketrans({"0": "o", "1": "l", "8": "b"})


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=labels.INVITE_HKDF_SALT, info=info)
    return hkdf.derive(secret)


def _checksum(secret: bytes) -> bytes:
    return hashlib.sha256(labels.INVITE_CHECKSUM + secret).digest()[:CHECKSUM_BYTES]


@dataclass(frozen=True)
class InviteCode:
    secret: bytes

    @classmethod
    def generate(cls) -> InviteCode:
        return cls(os.urandom(SECRET_BYTES))

    @classmethod
    def parse(cls, text: str) -> InviteCode:
        """Read a code as a person typed it: any case, spaces and dashes ignored."""
        cleaned = "".join(ch for ch in text.lower() if ch not in " -\t\n").translate(_LOOKALIKES)
        if len(cleaned) != 32:
            raise InvalidCode("an invite code has 32 letters and digits; check you have all of it")
        try:
            raw = b32d(cleaned)
        except ValueError as exc:
            raise InvalidCode("this invite code has characters that can't be in one") from exc
        secret, check = raw[:SECRET_BYTES], raw[SECRET_BYTES:]
        if _checksum(secret) != check:
            raise InvalidCode("this invite code is mistyped: compare it letter by letter")
        return cls(secret)

    @property
    def text(self) -> str:
        letters = b32e(self.secret + _checksum(self.secret))
        return "-".join(letters[i : i + 4] for i in range(0, len(letters), 4))

    @property
    def lookup_id(self) -> bytes:
        return _derive(self.secret, labels.INVITE_LOOKUP, LOOKUP_ID_BYTES)

    @property
    def payload_key(self) -> bytes:
        return _derive(self.secret, labels.INVITE_PAYLOAD_KEY, 32)

    def _proof_key(self) -> ed25519.Ed25519PrivateKey:
        seed = _derive(self.secret, labels.INVITE_PROOF_KEY, 32)
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)

    @property
    def proof_public_key(self) -> bytes:
        return self._proof_key().public_key().public_bytes_raw()

    def prove(self, join: Statement) -> bytes:
        """The redemption proof: the proof key's signature over the join body."""
        return self._proof_key().sign(labels.INVITE_PROOF + join.body)

    def seal_payload(self, payload: dict[str, Value], *, _nonce: bytes | None = None) -> bytes:
        nonce = _nonce if _nonce is not None else os.urandom(_NONCE_BYTES)
        aad = labels.INVITE_PAYLOAD_AAD + self.lookup_id
        plain = padding.pad(encode(payload), PAYLOAD_BUCKETS)
        return nonce + AESGCM(self.payload_key).encrypt(nonce, plain, aad)

    def open_payload(self, sealed: bytes) -> dict[str, Value]:
        aad = labels.INVITE_PAYLOAD_AAD + self.lookup_id
        try:
            plain = AESGCM(self.payload_key).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad
            )
            payload = decode(padding.unpad(plain, PAYLOAD_BUCKETS))
        except (InvalidTag, ValueError, InvalidStatement, DecryptionFailed) as exc:
            raise DecryptionFailed("the invite payload does not open with this code") from exc
        if not isinstance(payload, dict):
            raise DecryptionFailed("the invite payload does not open with this code")
        return payload


def verify_proof(proof_public_key: bytes, join: Statement, proof: bytes) -> None:
    """Raise InvalidSignature unless `proof` was made with the invite's proof key."""
    IdentityPublicKey(proof_public_key).verify(labels.INVITE_PROOF, join.body, proof)


@dataclass(frozen=True)
class Invite:
    """The inviter's signed record of an invite: lookup id, proof key, cell, expiry."""

    statement: Statement
    lookup_id: bytes
    proof_public_key: bytes
    cell: bytes
    expires: int


def make_invite(
    inviter: IdentityKey, network: bytes, code: InviteCode, cell: bytes, time: int, expires: int
) -> Invite:
    statement = sign_statement(
        inviter,
        "invite",
        network,
        time,
        {
            "lookup": code.lookup_id,
            "proof_key": code.proof_public_key,
            "cell": cell,
            "expires": expires,
        },
    )
    return parse_invite(statement)


def parse_invite(statement: Statement) -> Invite:
    if statement.type != "invite":
        raise InvalidStatement("not an invite")
    fields = statement.fields
    invite = Invite(
        statement,
        get_bytes(fields, "lookup", LOOKUP_ID_BYTES),
        get_bytes(fields, "proof_key", 32),
        get_bytes(fields, "cell", GROUP_ID_BYTES),
        get_int(fields, "expires"),
    )
    if invite.expires <= statement.time:
        raise InvalidStatement("invite expires before it was made")
    return invite


@dataclass(frozen=True)
class Join:
    """A newcomer's signed request to redeem an invite with their new keys."""

    statement: Statement
    lookup_id: bytes
    key_bundle_id: bytes


def make_join(
    newcomer: IdentityKey, network: bytes, lookup_id: bytes, bundle: KeyBundle, time: int
) -> Join:
    statement = sign_statement(
        newcomer, "join", network, time, {"invite": lookup_id, "key_bundle": bundle.statement.id}
    )
    return parse_join(statement)


def parse_join(statement: Statement) -> Join:
    if statement.type != "join":
        raise InvalidStatement("not a join statement")
    return Join(
        statement,
        get_bytes(statement.fields, "invite", LOOKUP_ID_BYTES),
        get_bytes(statement.fields, "key_bundle", 32),
    )
