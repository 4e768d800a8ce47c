"""Epoch secrets and per-sender chains: who can read which messages.

A member who changes the roster (or any member, by policy) commits a new
epoch: a fresh 32-byte secret, sealed by HPKE to each member's KEM key with
`info` binding group, epoch, roster hash and the recipient, plus a public
commitment to the secret that the signed `epoch` roster event carries. A
server that hands a member a box sealed by someone else (anyone can seal to
a public key) is caught: the secret inside won't match the signed commitment.

From the secret, each member derives one chain per sender and then forgets
the secret. A chain step yields one message key and nonce and the next
chain key; the client keeps only the next chain key (and a bounded set of
skipped keys for messages that arrive out of order), so a used message key
can't be derived again from what it keeps: forward secrecy inside an epoch.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import labels
from crypto.encoding import Value
from crypto.errors import DecryptionFailed, RuleViolation
from crypto.roster_state import RosterState
from crypto.sealing import KemPrivateKey, KemPublicKey, KemSuite, open_sealed, seal

SECRET_BYTES = 32
MAX_SKIPPED_KEYS = 2000


def new_epoch_secret() -> bytes:
    return os.urandom(SECRET_BYTES)


def _context(group: bytes, epoch: int) -> bytes:
    return group + struct.pack(">Q", epoch)


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def commitment(secret: bytes, group: bytes, epoch: int) -> bytes:
    """The public commitment to an epoch secret, carried in the signed epoch event."""
    return _hkdf(secret, labels.EPOCH_COMMITMENT + _context(group, epoch))


def seal_info(group: bytes, epoch: int, roster: bytes, recipient: bytes) -> bytes:
    return labels.EPOCH_SECRET_INFO + _context(group, epoch) + roster + recipient


def seal_secret(
    secret: bytes,
    suite: str,
    kem_public: bytes,
    group: bytes,
    epoch: int,
    roster: bytes,
    recipient: bytes,
) -> bytes:
    public = KemPublicKey.from_bytes(KemSuite(suite), kem_public)
    return seal(public, secret, seal_info(group, epoch, roster, recipient))


def open_secret(
    private: KemPrivateKey,
    sealed: bytes,
    group: bytes,
    epoch: int,
    roster: bytes,
    recipient: bytes,
    expected_commitment: bytes,
) -> bytes:
    """Open a member's box and check it against the signed commitment."""
    secret = open_sealed(private, sealed, seal_info(group, epoch, roster, recipient))
    if not hmac.compare_digest(commitment(secret, group, epoch), expected_commitment):
        raise DecryptionFailed("the epoch secret does not match the signed commitment")
    return secret


@dataclass(frozen=True)
class EpochCommit:
    """What a member posts to start the next epoch: the event's fields and one box per member."""

    fields: dict[str, Value]
    boxes: dict[bytes, bytes]


def commit_next_epoch(secret: bytes, state: RosterState) -> EpochCommit:
    """Seal `secret` as the epoch after `state`'s to every current reader (member not frozen),
    with its commitment."""
    epoch, covered, group = state.epoch + 1, state.roster_hash, state.group
    boxes = {
        m.member_id: seal_secret(
            secret, m.kem_suite, m.kem_public, group, epoch, covered, m.member_id
        )
        for m in state.readers.values()
    }
    fields: dict[str, Value] = {
        "epoch": epoch,
        "roster": covered,
        "commitment": commitment(secret, group, epoch),
    }
    return EpochCommit(fields, boxes)


@dataclass(frozen=True)
class MessageKey:
    key: bytes
    nonce: bytes


def chain_step(chain_key: bytes) -> tuple[MessageKey, bytes]:
    """One step of a sender chain: this message's key and nonce, and the next chain key."""
    key = hmac.digest(chain_key, labels.CHAIN_MESSAGE_KEY, "sha256")
    nonce = hmac.digest(chain_key, labels.CHAIN_NONCE, "sha256")[:12]
    return MessageKey(key, nonce), hmac.digest(chain_key, labels.CHAIN_NEXT_KEY, "sha256")


@dataclass
class SenderChain:
    """One sender's chain as a client keeps it: the next counter and key, and skipped keys."""

    counter: int
    chain_key: bytes
    skipped: dict[int, MessageKey] = field(default_factory=dict)

    def next_for_sending(self) -> tuple[int, MessageKey]:
        counter = self.counter
        message_key, self.chain_key = chain_step(self.chain_key)
        self.counter += 1
        return counter, message_key

    def key_for(self, counter: int) -> MessageKey:
        """The key of message `counter`; each key is handed out once and then forgotten."""
        if counter in self.skipped:
            return self.skipped.pop(counter)
        if counter < self.counter:
            raise RuleViolation("replayed_message", "this message key was already used")
        if counter - self.counter > MAX_SKIPPED_KEYS:
            raise RuleViolation("too_far_ahead", "too many messages skipped in this chain")
        while self.counter < counter:
            skipped_key, self.chain_key = chain_step(self.chain_key)
            self.skipped[self.counter] = skipped_key
            self.counter += 1
        while len(self.skipped) > MAX_SKIPPED_KEYS:
            self.skipped.pop(min(self.skipped))
        return self.next_for_sending()[1]


@dataclass
class EpochKeys:
    """What a member keeps of one epoch after forgetting its secret."""

    group: bytes
    epoch: int
    profile_key: bytes
    chains: dict[bytes, SenderChain]


def derive_epoch_keys(
    secret: bytes, group: bytes, epoch: int, members: Iterable[bytes]
) -> EpochKeys:
    context = _context(group, epoch)
    chains = {
        member: SenderChain(0, _hkdf(secret, labels.EPOCH_SENDER_CHAIN + context + member))
        for member in members
    }
    return EpochKeys(group, epoch, _hkdf(secret, labels.EPOCH_PROFILE_KEY + context), chains)
