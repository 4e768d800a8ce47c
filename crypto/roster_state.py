"""A group's roster state, and the genesis rules every group is judged by.

The values that the rule book (roster.py), motions (motions.py) and the
quorum rules (quorum.py) share. The rule it keeps: a `RosterState` only
ever comes from replaying a log with `crypto.roster.apply`; nothing here
decides whether an event may extend it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from crypto import labels
from crypto.encoding import Value, encode
from crypto.errors import RuleViolation
from crypto.keys import IdentityPublicKey
from crypto.network import Genesis, KeyBundle, Policy


@dataclass(frozen=True)
class GroupRules:
    """What the genesis fixes for every group: the policy and who the stewards are."""

    policy: Policy
    stewards: frozenset[bytes]

    @classmethod
    def of(cls, genesis: Genesis) -> GroupRules:
        return cls(genesis.policy, genesis.steward_ids)


@dataclass(frozen=True)
class RosterMember:
    member_id: bytes
    key: IdentityPublicKey
    kem_suite: str
    kem_public: bytes


@dataclass(frozen=True)
class SeatAnchor:
    """A council's seat: the last link of the linked group it accepted, and who holds it.

    (crypto/delegations.py checks links; the seat's holder is a council member.)
    """

    group: bytes
    link: bytes  # the motion id of the link (the linked group's election or recall)
    seq: int  # its place in the linked group's roster log
    level: int
    size: int
    root: bytes
    holder: bytes | None


@dataclass(frozen=True)
class RosterState:
    group: bytes
    kind: str
    level: int
    parent: bytes | None
    seq: int
    head: bytes
    members: Mapping[bytes, RosterMember]
    epoch: int
    epoch_roster: bytes | None
    commitment: bytes | None
    # Set by every change of members, cleared by an epoch: a member added and
    # removed again still leaves the group needing a new epoch.
    changed_since_epoch: bool = True
    motions_done: frozenset[bytes] = frozenset()
    # A cell created with the genesis (no split origin): its members are
    # stewards, and it may admit on fewer vouches than the policy while small.
    founding: bool = False
    # Every admission certificate an add of this log carried: one admission
    # admits once, so a member who left (or moved away by a split) can't be
    # added back on it.
    certificates: frozenset[bytes] = frozenset()
    # Each member's invite line: the issuers above them up to a steward (empty
    # for a steward). Kept for members who left too; only current ones are read.
    lines: Mapping[bytes, frozenset[bytes]] = field(default_factory=dict)
    # When each member's probation counts from (the time of the event that
    # put them on this cell's roster, carried over by a split; 0 for the
    # stewards of the founding cell). Kept for members who left too.
    since: Mapping[bytes, int] = field(default_factory=dict)
    # The member a carried-out `elect` made spokesperson, until a `recall` or
    # their leaving the roster (crypto/elections.py).
    spokesperson: bytes | None = None
    # The motion id of the group's last `elect` or `recall`, which the next one names.
    last_link: bytes | None = None
    # The members at that event who are still on the roster (whoever leaves
    # drops out for good): the next election needs a quorum of them too, so
    # a council that checked the last one can check this one (elections.py).
    anchor: frozenset[bytes] = frozenset()
    # A council's seats, by linked group (empty for a cell).
    seats: Mapping[bytes, SeatAnchor] = field(default_factory=dict)
    # Members frozen (crypto/exclusion.py), by the signed time of the freeze:
    # still on the roster, but no epoch is sealed to them and they sign nothing.
    frozen: Mapping[bytes, int] = field(default_factory=dict)
    # Subtree review after an expulsion (crypto/review.py): members under
    # review, by (since, the expelled issuer); those suspended (out of every
    # epoch, as if frozen, until cleared); sponsors on hold, by (since,
    # restored); and the revocations this log reviewed already.
    review: Mapping[bytes, tuple[int, bytes]] = field(default_factory=dict)
    suspended: frozenset[bytes] = frozenset()
    holds: Mapping[bytes, tuple[int, bool]] = field(default_factory=dict)
    reviewed: frozenset[bytes] = frozenset()

    def in_subtree_of(self, member_id: bytes, root: bytes) -> bool:
        """Is `member_id` the member `root` or someone `root`'s invites led to?"""
        return member_id == root or root in self.lines.get(member_id, frozenset())

    @property
    def readers(self) -> Mapping[bytes, RosterMember]:
        """The members an epoch is sealed to: all but the frozen and the suspended."""
        if not self.frozen and not self.suspended:
            return self.members
        return {
            m: v
            for m, v in self.members.items()
            if m not in self.frozen and m not in self.suspended
        }

    @property
    def roster_hash(self) -> bytes:
        """What an epoch covers: its readers (a freeze, like any change of them, needs a rekey)."""
        return roster_hash(self.readers.values())

    @property
    def needs_rekey(self) -> bool:
        """True while the current epoch (if any) does not cover the current members."""
        return self.changed_since_epoch or self.epoch_roster != self.roster_hash

    def member(self, member_id: bytes) -> RosterMember:
        found = self.members.get(member_id)
        if found is None:
            raise RuleViolation("not_in_group", "not a member of this group")
        return found


def member_from_bundle(bundle: KeyBundle) -> RosterMember:
    """The roster entry a key bundle makes: the author's identity key and their KEM key."""
    statement = bundle.statement
    return RosterMember(statement.author, statement.author_key, bundle.suite, bundle.kem_public)


def roster_hash(members: Iterable[RosterMember]) -> bytes:
    """A hash of who is in the group with which keys, independent of order."""
    rows: list[Value] = [
        [m.member_id, m.key.raw, m.kem_suite, m.kem_public]
        for m in sorted(members, key=lambda m: m.member_id)
    ]
    return hashlib.sha256(labels.ROSTER_HASH + encode(rows)).digest()
