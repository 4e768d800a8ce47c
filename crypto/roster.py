"""The roster-log rule book: which signed events may extend a group's log.

A group's roster log is a hash chain of `roster` statements: event n names
event n-1's id as `prev` and carries `seq` n. The rule this module keeps:
`apply(state, event)` returns the next state or raises RuleViolation, and a
state only comes from applying every event from `create` on. The server runs
it before appending (under a compare-and-swap on the head); clients run it
over the whole log they receive, so a server that drops, reorders, forges or
replays an event is caught.

Operations:
- `create` (seq 0): kind, level, parent, the founding members' key bundles,
  and `origin` (the split event it came from, or null).
- `add`: a vetted newcomer's key bundle and admission certificate id.
- `remove`: a member and a reason: `left` (only by themself) or `revoked`.
- `epoch`: the next epoch number, the roster hash it covers, and the
  commitment to its secret (epochs.py).
- `split`: a motion and the signatures that carry it (motions.py); the moved
  members leave this group for the new one.
Any change to the members makes the current epoch stale: until an `epoch`
event covers the new roster, no message may be sent in the group.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from crypto import labels
from crypto.encoding import Value, encode
from crypto.errors import CryptoError, RuleViolation
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.network import GROUP_ID_BYTES, KeyBundle, parse_key_bundle
from crypto.statements import (
    Statement,
    get_bytes,
    get_int,
    get_str,
    pack,
    sign_statement,
    unpack,
)

ZERO_HEAD = bytes(32)
# Removal by others (expulsion, revocation) needs a quorum or a steward and
# comes with exclusion (part 4); until then a member can only leave.
REMOVE_REASONS = ("left",)


@dataclass(frozen=True)
class RosterMember:
    member_id: bytes
    key: IdentityPublicKey
    kem_suite: str
    kem_public: bytes


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

    @property
    def roster_hash(self) -> bytes:
        return roster_hash(self.members.values())

    @property
    def needs_rekey(self) -> bool:
        """True while the current epoch (if any) does not cover the current members."""
        return self.changed_since_epoch or self.epoch_roster != self.roster_hash

    def member(self, member_id: bytes) -> RosterMember:
        found = self.members.get(member_id)
        if found is None:
            raise RuleViolation("not_in_group", "not a member of this group")
        return found


def roster_hash(members: Iterable[RosterMember]) -> bytes:
    """A hash of who is in the group with which keys, independent of order."""
    rows: list[Value] = [
        [m.member_id, m.key.raw, m.kem_suite, m.kem_public]
        for m in sorted(members, key=lambda m: m.member_id)
    ]
    return hashlib.sha256(labels.ROSTER_HASH + encode(rows)).digest()


def _member_from_bundle(bundle: KeyBundle) -> RosterMember:
    statement = bundle.statement
    return RosterMember(statement.author, statement.author_key, bundle.suite, bundle.kem_public)


def sign_event(
    key: IdentityKey,
    network: bytes,
    state: RosterState | None,
    op: str,
    time: int,
    fields: dict[str, Value],
    *,
    group: bytes | None = None,
) -> Statement:
    """Sign the event that extends `state` (None for a create, with `group`)."""
    if state is None:
        if group is None:
            raise ValueError("a create event names its group")
        position: dict[str, Value] = {"group": group, "seq": 0, "prev": ZERO_HEAD}
    else:
        position = {"group": state.group, "seq": state.seq + 1, "prev": state.head}
    return sign_statement(key, "roster", network, time, {**fields, **position, "op": op})


def create_fields(
    kind: str, level: int, parent: bytes | None, bundles: Sequence[KeyBundle], origin: bytes | None
) -> dict[str, Value]:
    return {
        "kind": kind,
        "level": level,
        "parent": parent,
        "members": [pack(b.statement) for b in bundles],
        "origin": origin,
    }


def apply(
    state: RosterState | None,
    event: Statement,
    *,
    cell_max: int,
    now: int | None = None,
) -> RosterState:
    """The state after `event`, or RuleViolation if the event may not extend `state`."""
    try:
        return _apply(state, event, cell_max, now)
    except RuleViolation:
        raise
    except CryptoError as exc:
        raise RuleViolation("invalid_event", f"roster event is malformed: {exc}") from exc


def _apply(
    state: RosterState | None, event: Statement, cell_max: int, now: int | None
) -> RosterState:
    if event.type != "roster":
        raise RuleViolation("invalid_event", "not a roster event")
    fields = event.fields
    group = get_bytes(fields, "group", GROUP_ID_BYTES)
    seq = get_int(fields, "seq")
    prev = get_bytes(fields, "prev", 32)
    op = get_str(fields, "op", 16)
    network = event.network
    if network is None:
        raise RuleViolation("invalid_event", "a roster event names its network")
    if state is None:
        if op != "create" or seq != 0 or prev != ZERO_HEAD:
            raise RuleViolation("invalid_event", "a roster log starts with a create event")
        return _create(event, group, network, cell_max, now)
    if group != state.group:
        raise RuleViolation("wrong_group", "this event belongs to another group")
    if seq != state.seq + 1 or prev != state.head:
        raise RuleViolation("stale_head", "this event does not extend the current head of the log")
    if event.author not in state.members:
        raise RuleViolation("not_in_group", "only members of the group can extend its log")
    after = _OPS.get(op)
    if after is None:
        raise RuleViolation("invalid_event", f"unknown roster operation {op!r}")
    changed = after(state, event, network, cell_max, now)
    return replace(changed, seq=seq, head=event.id)


def _create(
    event: Statement, group: bytes, network: bytes, cell_max: int, now: int | None
) -> RosterState:
    fields = event.fields
    kind = get_str(fields, "kind", 16)
    level = get_int(fields, "level")
    if kind not in ("cell", "council") or (kind == "cell") != (level == 0):
        raise RuleViolation("invalid_event", "cells are level 0 and councils above it")
    parent = fields.get("parent")
    if parent is not None and (not isinstance(parent, bytes) or len(parent) != GROUP_ID_BYTES):
        raise RuleViolation("invalid_event", "bad parent group id")
    origin = fields.get("origin")
    if origin is not None and (not isinstance(origin, bytes) or len(origin) != 32):
        raise RuleViolation("invalid_event", "bad origin event id")
    raw = fields.get("members")
    if not isinstance(raw, list) or not 1 <= len(raw) <= cell_max:
        raise RuleViolation("group_full", f"a group is created with 1 to {cell_max} members")
    members: dict[bytes, RosterMember] = {}
    for packed in raw:
        member = _member_from_bundle(parse_key_bundle(unpack(packed, "key-bundle", network), now))
        members[member.member_id] = member
    if len(members) != len(raw):
        raise RuleViolation("invalid_event", "a member is listed twice")
    if event.author not in members:
        raise RuleViolation("not_in_group", "the creator of a group is one of its members")
    return RosterState(
        group,
        kind,
        level,
        parent if isinstance(parent, bytes) else None,
        0,
        event.id,
        members,
        0,
        None,
        None,
    )


def _add(
    state: RosterState, event: Statement, network: bytes, cell_max: int, now: int | None
) -> RosterState:
    bundle = parse_key_bundle(unpack(event.fields.get("bundle"), "key-bundle", network), now)
    get_bytes(event.fields, "admission", 32)
    member = _member_from_bundle(bundle)
    if member.member_id in state.members:
        raise RuleViolation("already_in_group", "this member is already in the group")
    if len(state.members) >= cell_max:
        raise RuleViolation("group_full", "the group is full: it must split before it can grow")
    return replace(
        state, members={**state.members, member.member_id: member}, changed_since_epoch=True
    )


def _remove(
    state: RosterState, event: Statement, network: bytes, cell_max: int, now: int | None
) -> RosterState:
    member_id = get_bytes(event.fields, "member", 32)
    reason = get_str(event.fields, "reason", 16)
    state.member(member_id)
    if reason not in REMOVE_REASONS:
        raise RuleViolation("invalid_event", f"unknown removal reason {reason!r}")
    if reason == "left" and event.author != member_id:
        raise RuleViolation("not_allowed", "only a member themself can leave")
    if len(state.members) == 1:
        raise RuleViolation("not_allowed", "the last member can't leave a group")
    remaining = {k: v for k, v in state.members.items() if k != member_id}
    return replace(state, members=remaining, changed_since_epoch=True)


def _epoch(
    state: RosterState, event: Statement, network: bytes, cell_max: int, now: int | None
) -> RosterState:
    epoch = get_int(event.fields, "epoch")
    covered = get_bytes(event.fields, "roster", 32)
    commitment = get_bytes(event.fields, "commitment", 32)
    if epoch != state.epoch + 1:
        raise RuleViolation("stale_epoch", "an epoch event must name the next epoch number")
    if covered != state.roster_hash:
        raise RuleViolation("wrong_roster", "the epoch does not cover the group's current members")
    return replace(
        state, epoch=epoch, epoch_roster=covered, commitment=commitment, changed_since_epoch=False
    )


def _split(
    state: RosterState, event: Statement, network: bytes, cell_max: int, now: int | None
) -> RosterState:
    from crypto.motions import check_split

    motion_id, moved = check_split(state, event, network)
    if motion_id in state.motions_done:
        raise RuleViolation("stale_motion", "this motion has already been carried out")
    remaining = {k: v for k, v in state.members.items() if k not in moved}
    return replace(
        state,
        members=remaining,
        changed_since_epoch=True,
        motions_done=state.motions_done | {motion_id},
    )


_OPS = {"add": _add, "remove": _remove, "epoch": _epoch, "split": _split}


@dataclass(frozen=True)
class GroupCreation:
    """A group's first roster event and the state it founds."""

    statement: Statement
    state: RosterState

    @property
    def group_id(self) -> bytes:
        return self.state.group


def make_group(
    key: IdentityKey,
    network: bytes,
    time: int,
    bundles: Sequence[KeyBundle],
    *,
    kind: str = "cell",
    level: int = 0,
    parent: bytes | None = None,
    origin: bytes | None = None,
    group: bytes | None = None,
    cell_max: int = 100,
) -> GroupCreation:
    """Sign the create event of a new group (a fresh random id unless `group` is given)."""
    group_id = group if group is not None else os.urandom(GROUP_ID_BYTES)
    event = sign_event(
        key,
        network,
        None,
        "create",
        time,
        create_fields(kind, level, parent, bundles, origin),
        group=group_id,
    )
    return parse_group_creation(event, cell_max=cell_max)


def parse_group_creation(
    event: Statement, *, cell_max: int, now: int | None = None
) -> GroupCreation:
    return GroupCreation(event, apply(None, event, cell_max=cell_max, now=now))


def verify_log(
    events: Sequence[Statement], *, cell_max: int, now: int | None = None
) -> RosterState:
    """Replay a whole log from its create event; raise RuleViolation at the first bad event."""
    state: RosterState | None = None
    for event in events:
        state = apply(state, event, cell_max=cell_max, now=now)
    if state is None:
        raise RuleViolation("invalid_event", "an empty roster log")
    return state
