"""The network genesis and its policy, key bundles, and group creation.

The genesis statement holds the stewards' keys and the policy; the network
id is the hash of its body, and every client pins it. Nothing in a genesis
is secret-bearing: the network's name travels only inside encrypted invite
payloads, so the server never learns it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from crypto import labels
from crypto.encoding import Value
from crypto.errors import InvalidStatement
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.sealing import KemPublicKey, KemSuite
from crypto.statements import (
    Statement,
    get_bytes,
    get_int,
    get_str,
    sign_statement,
    verify_statement,
)

NETWORK_ID_BYTES = 32
GROUP_ID_BYTES = 16
HOUR = 3600
DAY = 24 * HOUR

# Public key sizes per KEM suite, checked before a key is ever used.
KEM_PUBLIC_BYTES = {
    labels.KEM_SUITE_DEFAULT: 1184 + 32,
    "X25519/HKDF_SHA256/AES_256_GCM": 32,
}
EXPULSION_QUORUMS = ("majority", "two-thirds", "all")
QUORUMS = EXPULSION_QUORUMS  # `majority` is more than half; `two-thirds` rounds up
# Policy fields a genesis may lack (it was signed before they existed): their defaults hold.
LATER_FIELDS = frozenset(
    {"freeze_signers", "freeze_seconds", "review_subtree", "sponsor_cooldown_seconds"}
)


def _later_field(value: dict[str, Value], name: str) -> Any:
    if name == "review_subtree":
        flag = value.get(name)
        if not isinstance(flag, bool):
            raise InvalidStatement("policy field 'review_subtree' is true or false")
        return flag
    return get_int(value, name)


def cells_can_split(cell_min: int, cell_max: int) -> bool:
    """Whether a full cell can always split into two that each keep the minimum.

    A cell refuses admissions at `cell_max` members and splits by a motion
    that leaves both cells at least `cell_min` (crypto.quorum.check_split_sizes),
    so a full cell can split only if cell_max >= 2 * cell_min; with less, a
    full cell could neither grow nor split.
    """
    return cell_max >= 2 * cell_min


@dataclass(frozen=True)
class Policy:
    """What a network's genesis fixes for every cell."""

    # A full cell must be able to split into two that each keep the minimum
    # (cell_max >= 2 * cell_min): 12 splits into 6 + 6 or 5 + 7.
    cell_min: int = 5
    cell_max: int = 12
    vouches: int = 2
    probation_seconds: int = 30 * DAY
    invite_quota: int = 3
    invite_expiry_seconds: int = 72 * HOUR
    vetting_seconds: int = 72 * HOUR
    expulsion_quorum: str = "majority"
    review_seconds: int = 14 * DAY
    # Who signs an election or a recall of a spokesperson: of the group's members.
    election_quorum: str = "majority"
    # Seats a council holds at most (one per linked group).
    council_max: int = 50
    # Alerts that may leave a member's group (scope up or network) per 24 hours.
    wide_alerts_per_day: int = 3
    # An epoch is retired after this long or this many messages, whichever first.
    epoch_seconds: int = 7 * DAY
    epoch_messages: int = 10_000
    # Cellmates whose signatures freeze a member at once (crypto/exclusion.py),
    # and how long a freeze holds unless lifted or followed by an expulsion.
    freeze_signers: int = 2
    freeze_seconds: int = 48 * HOUR
    # Subtree review (crypto/review.py): false reviews an expelled member's
    # direct invitees, true their whole invite subtree; and how long after an
    # expulsion its sponsor may not invite, even once their cell restored it.
    review_subtree: bool = False
    sponsor_cooldown_seconds: int = 30 * DAY

    def __post_init__(self) -> None:
        checks = [
            (
                2 <= self.cell_min and self.cell_max <= 100,
                f"cell_min ({self.cell_min}) must be at least 2 and cell_max "
                f"({self.cell_max}) at most 100",
            ),
            (cells_can_split(self.cell_min, self.cell_max), self._split_bounds_message()),
            (
                1 <= self.vouches <= self.cell_max,
                f"vouches ({self.vouches}) must be between 1 and cell_max ({self.cell_max})",
            ),
            (
                0 <= self.probation_seconds <= 365 * DAY,
                "probation must be between 0 and 365 days",
            ),
            (1 <= self.invite_quota <= 100, "invite quota must be between 1 and 100"),
            (
                HOUR <= self.invite_expiry_seconds <= 30 * DAY,
                "invite expiry must be 1 hour to 30 days",
            ),
            (
                0 <= self.vetting_seconds <= 30 * DAY,
                "vetting window must be 0 to 30 days",
            ),
            (self.expulsion_quorum in EXPULSION_QUORUMS, "unknown expulsion quorum"),
            (self.election_quorum in QUORUMS, "unknown election quorum"),
            (2 <= self.council_max <= 1000, "a council must allow 2 to 1,000 seats"),
            (
                0 <= self.wide_alerts_per_day <= 100,
                "wide alerts per member and day must be 0 to 100",
            ),
            (
                0 <= self.review_seconds <= 90 * DAY,
                "review window must be 0 to 90 days",
            ),
            (
                HOUR <= self.epoch_seconds <= 90 * DAY,
                "a key period must last 1 hour to 90 days",
            ),
            (
                100 <= self.epoch_messages <= 1_000_000,
                "a key period must allow 100 to 1,000,000 messages",
            ),
            (1 <= self.freeze_signers <= 10, "a freeze needs 1 to 10 signatures"),
            (isinstance(self.review_subtree, bool), "review_subtree is true or false"),
            (
                0 <= self.sponsor_cooldown_seconds <= 365 * DAY,
                "a sponsor's cool-down must be 0 to 365 days",
            ),
            (
                HOUR <= self.freeze_seconds <= 30 * DAY,
                "a freeze must last 1 hour to 30 days",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidStatement(f"bad policy: {message}")

    def _split_bounds_message(self) -> str:
        """Why these cell bounds are refused, and which values would do."""
        would_do = [f"cell_max {v} or more" for v in [2 * self.cell_min] if v <= 100]
        if self.cell_max >= 4:
            would_do.insert(0, f"cell_min {self.cell_max // 2} or less")
        return (
            f"a full cell (cell_max {self.cell_max}) could not split into two cells of at least "
            f"cell_min {self.cell_min}: cell_max must be at least twice cell_min "
            f"({', or '.join(would_do)})"
        )

    def to_value(self) -> dict[str, Value]:
        return {
            "cell_min": self.cell_min,
            "cell_max": self.cell_max,
            "vouches": self.vouches,
            "probation_seconds": self.probation_seconds,
            "invite_quota": self.invite_quota,
            "invite_expiry_seconds": self.invite_expiry_seconds,
            "vetting_seconds": self.vetting_seconds,
            "expulsion_quorum": self.expulsion_quorum,
            "review_seconds": self.review_seconds,
            "election_quorum": self.election_quorum,
            "council_max": self.council_max,
            "wide_alerts_per_day": self.wide_alerts_per_day,
            "epoch_seconds": self.epoch_seconds,
            "epoch_messages": self.epoch_messages,
            "freeze_signers": self.freeze_signers,
            "freeze_seconds": self.freeze_seconds,
            "review_subtree": self.review_subtree,
            "sponsor_cooldown_seconds": self.sponsor_cooldown_seconds,
        }

    @classmethod
    def from_value(cls, value: Value) -> Policy:
        # The freeze fields came with part 4: a genesis signed before has the defaults.
        known = set(cls().to_value())
        if not isinstance(value, dict) or not known - LATER_FIELDS <= set(value) <= known:
            raise InvalidStatement("policy has missing or unknown fields")
        later: dict[str, Any] = {
            name: _later_field(value, name) for name in LATER_FIELDS if name in value
        }
        return cls(
            cell_min=get_int(value, "cell_min"),
            cell_max=get_int(value, "cell_max"),
            vouches=get_int(value, "vouches"),
            probation_seconds=get_int(value, "probation_seconds"),
            invite_quota=get_int(value, "invite_quota"),
            invite_expiry_seconds=get_int(value, "invite_expiry_seconds"),
            vetting_seconds=get_int(value, "vetting_seconds"),
            expulsion_quorum=get_str(value, "expulsion_quorum", 16),
            review_seconds=get_int(value, "review_seconds"),
            election_quorum=get_str(value, "election_quorum", 16),
            council_max=get_int(value, "council_max"),
            wide_alerts_per_day=get_int(value, "wide_alerts_per_day"),
            epoch_seconds=get_int(value, "epoch_seconds"),
            epoch_messages=get_int(value, "epoch_messages"),
            **later,
        )


@dataclass(frozen=True)
class Genesis:
    statement: Statement
    network_id: bytes
    stewards: tuple[IdentityPublicKey, ...]
    policy: Policy

    @property
    def steward_ids(self) -> frozenset[bytes]:
        return frozenset(k.member_id for k in self.stewards)


def network_id_of(genesis_body: bytes) -> bytes:
    return hashlib.sha256(labels.NETWORK_ID + genesis_body).digest()


def make_genesis(
    founder: IdentityKey,
    policy: Policy,
    time: int,
    extra_stewards: tuple[IdentityPublicKey, ...] = (),
) -> Genesis:
    stewards = [founder.public_key().raw] + [k.raw for k in extra_stewards]
    statement = sign_statement(
        founder,
        "genesis",
        None,
        time,
        {
            "nonce": os.urandom(16),
            "stewards": list(stewards),
            "policy": policy.to_value(),
        },
    )
    return parse_genesis(statement)


def parse_genesis(statement: Statement) -> Genesis:
    fields = statement.fields
    if statement.type != "genesis" or statement.network is not None:
        raise InvalidStatement("not a genesis statement")
    get_bytes(fields, "nonce", 16)
    raw_stewards = fields.get("stewards")
    if not isinstance(raw_stewards, list) or not 1 <= len(raw_stewards) <= 32:
        raise InvalidStatement("a genesis names 1 to 32 stewards")
    stewards = tuple(IdentityPublicKey(k) for k in raw_stewards if isinstance(k, bytes))
    if len(stewards) != len(raw_stewards) or len(set(stewards)) != len(stewards):
        raise InvalidStatement("stewards must be distinct 32-byte keys")
    if statement.author_key not in stewards:
        raise InvalidStatement("a genesis is signed by one of its stewards")
    policy = Policy.from_value(fields.get("policy"))
    return Genesis(statement, network_id_of(statement.body), stewards, policy)


def verify_genesis(body: bytes, signature: bytes, expected_id: bytes | None = None) -> Genesis:
    """Verify a genesis from elsewhere; with `expected_id`, pin it to that network."""
    genesis = parse_genesis(verify_statement(body, signature, "genesis", None))
    if expected_id is not None and genesis.network_id != expected_id:
        raise InvalidStatement("this genesis is not the pinned network")
    return genesis


@dataclass(frozen=True)
class KeyBundle:
    """A member's published KEM key, signed by their identity key."""

    statement: Statement
    suite: str
    kem_public: bytes
    expires: int


def make_key_bundle(
    key: IdentityKey,
    network: bytes,
    suite: str,
    kem_public: bytes,
    time: int,
    expires: int,
) -> KeyBundle:
    statement = sign_statement(
        key,
        "key-bundle",
        network,
        time,
        {"suite": suite, "kem_public": kem_public, "expires": expires},
    )
    return parse_key_bundle(statement)


def parse_key_bundle(statement: Statement, now: int | None = None) -> KeyBundle:
    if statement.type != "key-bundle":
        raise InvalidStatement("not a key bundle")
    suite = get_str(statement.fields, "suite", 64)
    size = KEM_PUBLIC_BYTES.get(suite)
    if size is None:
        raise InvalidStatement(f"unknown KEM suite {suite!r}")
    kem_public = get_bytes(statement.fields, "kem_public", size)
    # A key of the right length that is no key (a low-order X25519 point, a
    # malformed ML-KEM key) would pass every rule and then make every epoch
    # sealed to its group fail: refuse it where it enters.
    KemPublicKey.from_bytes(KemSuite(suite), kem_public)
    expires = get_int(statement.fields, "expires")
    if expires <= statement.time:
        raise InvalidStatement("key bundle expires before it was made")
    if now is not None and now >= expires:
        raise InvalidStatement("key bundle has expired")
    return KeyBundle(statement, suite, kem_public, expires)
