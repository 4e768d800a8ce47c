"""Group messages and profiles: padded, AEAD-encrypted, signed.

A message's header (group, epoch, sender, counter) is its AES-256-GCM
associated data and is signed, with the ciphertext, by the sender's identity
key, so members can't forge each other and the server can check who sent a
message without reading it. The plaintext is padded to a size bucket so the
server learns little of its length. Inside the encryption the sender names
the roster head they saw: a member who sees a head they don't know for the
same epoch has caught the server showing different members different rosters.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto import labels
from crypto.encoding import Value, decode, encode
from crypto.epochs import MessageKey
from crypto.errors import DecryptionFailed, InvalidSignature, InvalidStatement
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.network import GROUP_ID_BYTES
from crypto.statements import get_bytes, get_int

BUCKETS = (256, 1024, 4096, 16384, 65536)
MAX_PLAINTEXT = BUCKETS[-1] - 1
TAG_BYTES = 16


def pad(data: bytes) -> bytes:
    """ISO/IEC 7816-4 padding (0x80 then zeros) up to the smallest bucket that fits."""
    for bucket in BUCKETS:
        if len(data) < bucket:
            return data + b"\x80" + bytes(bucket - len(data) - 1)
    raise ValueError(f"a message is at most {MAX_PLAINTEXT} bytes")


def unpad(padded: bytes) -> bytes:
    if len(padded) not in BUCKETS:
        raise DecryptionFailed("message is not a padded bucket")
    end = padded.rstrip(b"\x00")
    if not end.endswith(b"\x80"):
        raise DecryptionFailed("message padding is damaged")
    return end[:-1]


@dataclass(frozen=True)
class Header:
    group: bytes
    epoch: int
    sender: bytes
    counter: int

    def encode(self) -> bytes:
        return encode(
            {
                "group": self.group,
                "epoch": self.epoch,
                "sender": self.sender,
                "counter": self.counter,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        fields = decode(data)
        if not isinstance(fields, dict) or set(fields) != {"group", "epoch", "sender", "counter"}:
            raise InvalidStatement("a message header has group, epoch, sender and counter")
        return cls(
            get_bytes(fields, "group", GROUP_ID_BYTES),
            get_int(fields, "epoch"),
            get_bytes(fields, "sender", 32),
            get_int(fields, "counter"),
        )


def message_id(header: bytes) -> bytes:
    """A message's id: a hash of its header (group, epoch, sender, counter), 16 bytes."""
    return hashlib.sha256(labels.MESSAGE_ID + header).digest()[:16]


@dataclass(frozen=True)
class SealedMessage:
    header: bytes
    ciphertext: bytes
    signature: bytes


def seal_message(
    sender: IdentityKey, header: Header, message_key: MessageKey, content: dict[str, Value]
) -> SealedMessage:
    if header.sender != sender.member_id:
        raise ValueError("the header names another sender")
    header_bytes = header.encode()
    ciphertext = AESGCM(message_key.key).encrypt(
        message_key.nonce, pad(encode(content)), header_bytes
    )
    signature = sender.sign(labels.MESSAGE_SIGNATURE, header_bytes + ciphertext)
    return SealedMessage(header_bytes, ciphertext, signature)


def verify_message(message: SealedMessage, sender_key: IdentityPublicKey) -> Header:
    """Check the sender's signature over header and ciphertext; return the header."""
    header = Header.decode(message.header)
    if sender_key.member_id != header.sender:
        raise InvalidStatement("the header names another sender")
    if len(message.ciphertext) - TAG_BYTES not in BUCKETS:
        raise InvalidStatement("ciphertext is not a padded bucket")
    sender_key.verify(
        labels.MESSAGE_SIGNATURE, message.header + message.ciphertext, message.signature
    )
    return header


def open_message(message: SealedMessage, message_key: MessageKey) -> dict[str, Value]:
    """Decrypt a message whose signature was checked with verify_message."""
    try:
        padded = AESGCM(message_key.key).decrypt(
            message_key.nonce, message.ciphertext, message.header
        )
        content = decode(unpad(padded))
    except (InvalidTag, InvalidStatement) as exc:
        raise DecryptionFailed("message does not open with this key") from exc
    if not isinstance(content, dict):
        raise DecryptionFailed("message content is not a record")
    return content


PROFILE_VERSION = "version"  # the field, sealed with the profile, that counts its changes


def _profile_aad(group: bytes, epoch: int, member: bytes) -> bytes:
    return labels.PROFILE_AAD + encode({"group": group, "epoch": epoch, "member": member})


def seal_profile(
    profile_key: bytes,
    group: bytes,
    epoch: int,
    member: IdentityKey,
    profile: dict[str, Value],
    *,
    version: int,
    _nonce: bytes | None = None,
) -> bytes:
    """A member's profile for one group and epoch: nonce ‖ AES-256-GCM (padded) ‖ signature.

    Every member holds the profile key, so the member's signature is what stops
    one member from sealing a profile that opens as another's. `version` counts
    the member's profile changes (1, 2, …; re-sealing the same profile for a new
    epoch keeps it): it is sealed inside, next to the fields, so readers can
    refuse an older profile served as current, and the server can't see it.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError("a profile version is a positive integer")
    if PROFILE_VERSION in profile:
        raise ValueError(f"{PROFILE_VERSION!r} is not a profile field")
    nonce = _nonce if _nonce is not None else os.urandom(12)
    aad = _profile_aad(group, epoch, member.member_id)
    content = encode({**profile, PROFILE_VERSION: version})
    sealed = nonce + AESGCM(profile_key).encrypt(nonce, pad(content), aad)
    return sealed + member.sign(labels.PROFILE_SIGNATURE, aad + sealed)


def verify_profile(group: bytes, epoch: int, member: IdentityPublicKey, sealed: bytes) -> None:
    """Check the member's signature on a sealed profile (what the server can check)."""
    if len(sealed) < 12 + BUCKETS[0] + TAG_BYTES + 64:
        raise InvalidStatement("a sealed profile is too short")
    aad = _profile_aad(group, epoch, member.member_id)
    member.verify(labels.PROFILE_SIGNATURE, aad + sealed[:-64], sealed[-64:])


def open_profile(
    profile_key: bytes, group: bytes, epoch: int, member: IdentityPublicKey, sealed: bytes
) -> tuple[dict[str, Value], int]:
    """The profile's fields and its version; DecryptionFailed if anything does not check."""
    aad = _profile_aad(group, epoch, member.member_id)
    body = sealed[:-64]
    try:
        verify_profile(group, epoch, member, sealed)
        content = decode(unpad(AESGCM(profile_key).decrypt(body[:12], body[12:], aad)))
    except (InvalidTag, InvalidStatement, InvalidSignature, ValueError) as exc:
        raise DecryptionFailed("profile does not open with this key") from exc
    if not isinstance(content, dict):
        raise DecryptionFailed("profile is not a record")
    version = content.pop(PROFILE_VERSION, None)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DecryptionFailed("profile carries no valid version")
    return content, version
