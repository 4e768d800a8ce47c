"""The roster-log rule book: which signed events may extend a group's log.

A group's roster log is a hash chain of `roster` statements: event n names
event n-1's id as `prev` and carries `seq` n. The rule this module keeps:
`apply(state, event, rules=...)` returns the next state or raises
RuleViolation, and a state only comes from applying every event from
`create` on. The server runs it before appending (under a compare-and-swap
on the head); clients run it over the whole log they receive, so a server
that drops, reorders, forges or replays an event is caught. Every fact the
rules need is in the log itself or in the genesis (`GroupRules`): never in a
list the server keeps.

Operations:
- `create` (seq 0): kind, level, parent, the founding members' key bundles,
  and `origin` (the split event it came from, or null). A cell with no
  origin is a founding cell: only stewards found one. A cell with an
  origin is believed only through `check_split_creation` against the log
  of the cell it split from.
- `add`: a newcomer's key bundle with the evidence of their vetting: their
  admission certificate (issued by a member, for this group) and the
  vouches of other members, reaching the policy's count (a founding cell
  smaller than the count needs every member), and the vetting window passed
  unless every member vouched.
- `remove`: a member and a reason: `left` (only by themself), `revoked`
  (by any member, carrying a steward's revocation of that member, or the
  member's own published by its holder) or `expelled` (carrying a
  revocation by expulsion; in the group where the expulsion passed, its
  motion is judged against the current roster and carried out once).
- `epoch`: the next epoch number, the roster hash it covers, and the
  commitment to its secret (epochs.py).
- `split`: a motion and the signatures that carry it (motions.py); the moved
  members leave this group for the new one; both sides keep at least the
  policy's `cell_min` members.
- `elect`, `recall`: a motion and the signatures of a quorum of current
  members; they make or unmake the group's one spokesperson (elections.py).
  A spokesperson who leaves the roster is no longer spokesperson.
- `freeze`, `unfreeze` (exclusion.py): a few members suspend one at once
  (out of every epoch from then on, signing nothing) until a motion lifts
  it, an expulsion removes them, or the policy's window lapses.
- `review`, `clear`, `suspend`, `restore` (review.py): what an expulsion
  does to the expelled member's invitees and sponsor on this roster.
- councils (kind `council`, level >= 1; councils.py): `create` with the
  founder's seat, `link` (a seat for another group), `seat` (a seat changes
  hands); a council takes no `add` and no `split`.
Who must sign and how many vouches are enough are quorum.py's to say; this
module asks it. A new operation is one entry in `_OPS` (its rule here, its
quorum in quorum.py) and nothing else dispatches on an operation's name.
Any change to the members makes the current epoch stale: until an `epoch`
event covers the new roster, no message may be sent in the group.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from crypto.chains import Admission, parse_admission, parse_revocation, parse_verdict
from crypto.councils import COUNCIL, apply_link, apply_seat, create_council, vacate
from crypto.elections import apply_elect, apply_recall
from crypto.encoding import Value
from crypto.errors import CryptoError, RuleViolation
from crypto.exclusion import apply_freeze, apply_unfreeze, check_expel_commitment, check_grounds
from crypto.keys import IdentityKey
from crypto.motions import parse_motion, split_terms
from crypto.network import GROUP_ID_BYTES, KeyBundle, parse_key_bundle
from crypto.quorum import check_split, required_vouches, window_start

# Quorum rules live in quorum.py; the split size check is named here too for its callers.
from crypto.quorum import check_split_sizes as check_split_sizes
from crypto.review import (
    apply_clear,
    apply_restore,
    apply_review,
    apply_suspend,
    check_may_admit,
    check_seat_review,
)

# The state types live in roster_state.py (motions and quorum use them too);
# they are named here as well, where callers of the rule book look for them.
from crypto.roster_state import GroupRules as GroupRules
from crypto.roster_state import RosterMember as RosterMember
from crypto.roster_state import RosterState as RosterState
from crypto.roster_state import member_from_bundle
from crypto.roster_state import roster_hash as roster_hash
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
# How far ahead of a reader's clock a roster event's signed time may be (the
# server refuses statements more than this far from its own clock, too).
MAX_FUTURE_SECONDS = 300
# `left`: by the member themself. `revoked`: by any member, carrying a
# revocation of the member removed (a steward's, or their own published by
# its holder); `expelled`: carrying a revocation by expulsion (crypto/exclusion.py).
REMOVE_REASONS = ("left", "revoked", "expelled", "review")


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
    kind: str,
    level: int,
    parent: bytes | None,
    bundles: Sequence[KeyBundle],
    origin: bytes | None,
    lines: Mapping[bytes, frozenset[bytes]] | None = None,
    since: Mapping[bytes, int] | None = None,
) -> dict[str, Value]:
    """A create event's fields; `lines` gives each member's invite line (none: stewards).

    `since` (a split-made cell) carries when each member's probation counts
    from, as the splitting cell's state has it; without it, from the create.
    """
    lines = lines or {}
    extra: dict[str, Value] = {}
    if since:
        extra["since"] = [[b.statement.author, since[b.statement.author]] for b in bundles]
    return {
        **extra,
        "kind": kind,
        "level": level,
        "parent": parent,
        "members": [pack(b.statement) for b in bundles],
        "origin": origin,
        "lines": [
            [b.statement.author, list[Value](sorted(lines.get(b.statement.author, frozenset())))]
            for b in bundles
        ],
    }


def _parse_lines(
    value: Value, members: Mapping[bytes, RosterMember]
) -> dict[bytes, frozenset[bytes]]:
    """`lines` of a create event: one [member id, [issuer ids]] per member, in order."""
    if not isinstance(value, list) or len(value) != len(members):
        raise RuleViolation("invalid_event", "a create gives one invite line per member")
    lines: dict[bytes, frozenset[bytes]] = {}
    for item, member_id in zip(value, members, strict=True):
        if (
            not isinstance(item, list)
            or len(item) != 2
            or item[0] != member_id
            or not isinstance(item[1], list)
            or not all(isinstance(i, bytes) and len(i) == 32 for i in item[1])
        ):
            raise RuleViolation("invalid_event", "a member's invite line is malformed")
        lines[member_id] = frozenset(i for i in item[1] if isinstance(i, bytes))
    return lines


def _parse_since(
    value: Value, members: Mapping[bytes, RosterMember], founding: bool, time: int
) -> dict[bytes, int]:
    """`since` of a create event: one [member id, time] per member, in order (split-made only).

    Absent, probation counts from the create (stewards of the founding cell have none).
    """
    if value is None:
        return {m: 0 if founding else time for m in members}
    if founding or not isinstance(value, list) or len(value) != len(members):
        raise RuleViolation("invalid_event", "a split-made cell gives one `since` per member")
    since: dict[bytes, int] = {}
    for item, member_id in zip(value, members, strict=True):
        if not isinstance(item, list) or len(item) != 2 or item[0] != member_id:
            raise RuleViolation("invalid_event", "a member's `since` is malformed")
        at = item[1]
        if not isinstance(at, int) or not 0 <= at <= time:
            raise RuleViolation(
                "invalid_event", "a member's `since` is not a time before the create"
            )
        since[member_id] = at
    return since


def apply(
    state: RosterState | None,
    event: Statement,
    *,
    rules: GroupRules,
    now: int | None = None,
) -> RosterState:
    """The state after `event`, or RuleViolation if the event may not extend `state`."""
    try:
        return _apply(state, event, rules, now)
    except RuleViolation:
        raise
    except CryptoError as exc:
        raise RuleViolation("invalid_event", f"roster event is malformed: {exc}") from exc


def _apply(
    state: RosterState | None, event: Statement, rules: GroupRules, now: int | None
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
        return _create(event, group, network, rules, now)
    if group != state.group:
        raise RuleViolation("wrong_group", "this event belongs to another group")
    if seq != state.seq + 1 or prev != state.head:
        raise RuleViolation("stale_head", "this event does not extend the current head of the log")
    carried = (
        op in ("seat", "link")
        or (op in ("freeze", "unfreeze") and "link" in fields)
        or (op == "remove" and fields.get("reason") == "review")
    )
    if event.author not in state.members and not carried:  # see councils.py, exclusion.py
        raise RuleViolation("not_in_group", "only members of the group can extend its log")
    if event.author in state.suspended or (
        event.author in state.frozen and not (op == "unfreeze" and _lapse_of(event))
    ):
        raise RuleViolation(
            "not_allowed", "a frozen or suspended member signs nothing the group accepts"
        )
    after = _OPS.get(op)
    if after is None:
        raise RuleViolation("invalid_event", f"unknown roster operation {op!r}")
    changed = after(state, event, network, rules, now)
    return replace(changed, seq=seq, head=event.id)


def _lapse_of(event: Statement) -> bool:
    """An unfreeze of its own author without a motion: their freeze lapsing (exclusion.py)."""
    return "motion" not in event.fields and event.fields.get("member") == event.author


def _create(
    event: Statement, group: bytes, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    fields = event.fields
    kind = get_str(fields, "kind", 16)
    level = get_int(fields, "level")
    if kind == COUNCIL:
        return create_council(event, group, network, rules, now)
    if kind != "cell" or level != 0:
        raise RuleViolation("invalid_event", "a group is a cell (level 0) or a council")
    parent = fields.get("parent")
    if parent is not None and (not isinstance(parent, bytes) or len(parent) != GROUP_ID_BYTES):
        raise RuleViolation("invalid_event", "bad parent group id")
    origin = fields.get("origin")
    if origin is not None and (not isinstance(origin, bytes) or len(origin) != 32):
        raise RuleViolation("invalid_event", "bad origin event id")
    raw = fields.get("members")
    cell_max = rules.policy.cell_max
    if not isinstance(raw, list) or not 1 <= len(raw) <= cell_max:
        raise RuleViolation("group_full", f"a group is created with 1 to {cell_max} members")
    members: dict[bytes, RosterMember] = {}
    for packed in raw:
        member = member_from_bundle(parse_key_bundle(unpack(packed, "key-bundle", network), now))
        members[member.member_id] = member
    if len(members) != len(raw):
        raise RuleViolation("invalid_event", "a member is listed twice")
    if event.author not in members:
        raise RuleViolation("not_in_group", "the creator of a group is one of its members")
    founding = origin is None
    if founding and not set(members) <= rules.stewards:
        # Anyone can sign a create event; only the genesis' stewards found a
        # cell from nothing. Every other cell comes from a split, checked by
        # check_split_creation against the log it split from.
        raise RuleViolation(
            "invalid_origin", "a cell that no split created can only be the stewards' founding cell"
        )
    lines = _parse_lines(fields.get("lines"), members)
    if founding and any(lines.values()):
        raise RuleViolation("invalid_event", "stewards have no invite line")
    since = _parse_since(fields.get("since"), members, founding, event.time)
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
        founding=founding,
        lines=lines,
        since=since,
    )


def add_fields(
    bundle: KeyBundle, admission: Admission, vouches: Sequence[Statement]
) -> dict[str, Value]:
    """An `add` event's fields: the newcomer's keys and the evidence of their vetting."""
    return {
        "bundle": pack(bundle.statement),
        "certificate": pack(admission.statement),
        "vouches": [pack(v) for v in vouches],
    }


def _add(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    bundle = parse_key_bundle(unpack(event.fields.get("bundle"), "key-bundle", network), now)
    member = member_from_bundle(bundle)
    if state.kind == COUNCIL:
        raise RuleViolation("invalid_event", "a council's members come only with its seats")
    if member.member_id in state.members:
        raise RuleViolation("already_in_group", "this member is already in the group")
    if len(state.members) >= rules.policy.cell_max:
        raise RuleViolation("group_full", "the group is full: it must split before it can grow")
    certificate = _check_vetting(state, event, network, rules, member)
    check_may_admit(state, certificate.issuer, certificate.statement.time, rules)
    return replace(
        state,
        members={**state.members, member.member_id: member},
        changed_since_epoch=True,
        certificates=state.certificates | {certificate.statement.id},
        lines={
            **state.lines,
            member.member_id: state.lines[certificate.issuer] | {certificate.issuer},
        },
        since={**state.since, member.member_id: event.time},
    )


def _check_vetting(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, member: RosterMember
) -> Admission:
    """The vetting an `add` carries is complete against this log's own members; its certificate."""
    admission = parse_admission(unpack(event.fields.get("certificate"), "admission", network))
    if admission.statement.id in state.certificates:
        raise RuleViolation("admission_used", "this admission certificate already admitted once")
    if admission.subject != member.member_id or admission.subject_key != member.key:
        raise RuleViolation("key_mismatch", "the certificate admits another key than the bundle's")
    if admission.cell != state.group:
        raise RuleViolation("wrong_cell", "the certificate admits the newcomer to another cell")
    if admission.issuer not in state.members:
        raise RuleViolation("not_in_cell", "the certificate's issuer is not a member of the group")
    raw = event.fields.get("vouches")
    if not isinstance(raw, list) or len(raw) > rules.policy.cell_max:
        raise RuleViolation("invalid_event", "an add carries the list of its vouches")
    if event.time < admission.statement.time:
        raise RuleViolation("not_vetted", "the add is older than the certificate it carries")
    vouchers = {admission.issuer}
    vouched_at: dict[bytes, int] = {}
    for packed in raw:
        vouch = parse_verdict(unpack(packed, "vouch", network))
        if (
            vouch.subject != admission.subject
            or vouch.admission != admission.statement.id
            or vouch.cell != state.group
        ):
            raise RuleViolation("wrong_admission", "a vouch is about another admission")
        if vouch.author not in state.members:
            raise RuleViolation("not_in_cell", "a vouch comes from outside the group")
        if vouch.author in vouchers:
            raise RuleViolation("already_vouched", "a member's vouch is counted twice")
        if vouch.statement.time > event.time:
            raise RuleViolation("not_vetted", "the add is older than a vouch it carries")
        vouchers.add(vouch.author)
        vouched_at[vouch.author] = vouch.statement.time
    needed = required_vouches(rules.policy, len(state.members), founding=state.founding)
    if len(vouchers) < needed:
        raise RuleViolation(
            "not_vetted", f"the add carries {len(vouchers)} of the {needed} vouches needed"
        )
    # Branch diversity: when anyone on the roster stands outside the inviter's
    # invite subtree, one of them must vouch, so that an informant and the
    # people they brought in can't admit each other.
    outsiders = {m for m in state.members if not state.in_subtree_of(m, admission.issuer)}
    if outsiders and not outsiders & vouchers:
        raise RuleViolation(
            "not_vetted", "no member from outside the inviter's invite subtree vouched"
        )
    opened = window_start(
        admission.statement.time, [t for m, t in vouched_at.items() if m in outsiders]
    )
    window_ends = opened + rules.policy.vetting_seconds
    if vouchers != set(state.members) and event.time < window_ends:
        raise RuleViolation(
            "not_vetted", "the vetting window is still open and not every member has vouched"
        )
    return admission


def _remove(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    member_id = get_bytes(event.fields, "member", 32)
    reason = get_str(event.fields, "reason", 16)
    state.member(member_id)
    if reason not in REMOVE_REASONS:
        raise RuleViolation("invalid_event", f"unknown removal reason {reason!r}")
    if reason == "left" and event.author != member_id:
        raise RuleViolation("not_allowed", "only a member themself can leave")
    if reason in ("revoked", "expelled"):
        state = _revoked(state, event, network, rules, member_id, reason)
    if reason == "review":  # a council seat's holder under review (review.py)
        state = check_seat_review(state, event, network, rules)
    if len(state.members) == 1:
        raise RuleViolation("not_allowed", "the last member can't leave a group")
    remaining = {k: v for k, v in state.members.items() if k != member_id}
    return _without_leavers(
        replace(
            state,
            members=remaining,
            frozen={k: v for k, v in state.frozen.items() if k != member_id},
            review={k: v for k, v in state.review.items() if k != member_id},
            suspended=state.suspended - {member_id},
            holds={k: v for k, v in state.holds.items() if k != member_id},
            changed_since_epoch=True,
        )
    )


def _revoked(
    state: RosterState,
    event: Statement,
    network: bytes,
    rules: GroupRules,
    member_id: bytes,
    reason: str,
) -> RosterState:
    """A removal carrying a revocation: of this member, its grounds proven, of the reason's kind.

    Where the expulsion passed in this very group, its motion is judged
    against this roster (crypto/exclusion.py): the roster it committed to
    is the current one, and it is carried out once.
    """
    revocation = parse_revocation(unpack(event.fields.get("revocation"), "revocation", network))
    if revocation.subject != member_id:
        raise RuleViolation("wrong_member", "the revocation is of another member")
    grounds = check_grounds(revocation.statement, member_id, rules)
    if (reason == "expelled") != (grounds.kind == "expelled"):
        raise RuleViolation(
            "invalid_event", "an expulsion is removed as expelled, other revocations as revoked"
        )
    motion = grounds.motion
    if motion is None or motion.group != state.group:
        return state
    if motion.id in state.motions_done:
        raise RuleViolation("stale_motion", "this motion has already been carried out")
    check_expel_commitment(state, motion)
    return replace(state, motions_done=state.motions_done | {motion.id})


def _without_leavers(state: RosterState) -> RosterState:
    """Whoever left is out of the election anchor for good, and no longer spokesperson."""
    spokesperson = state.spokesperson if state.spokesperson in state.members else None
    left = replace(state, spokesperson=spokesperson, anchor=state.anchor & set(state.members))
    return vacate(left) if state.kind == COUNCIL else left


def _epoch(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
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
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    if state.kind == COUNCIL:
        raise RuleViolation("invalid_event", "a council does not split")
    motion_id, moved = check_split(state, event, network)
    if motion_id in state.motions_done:
        raise RuleViolation("stale_motion", "this motion has already been carried out")
    remaining = {k: v for k, v in state.members.items() if k not in moved}
    check_split_sizes(rules, len(remaining), len(moved))
    changed = replace(
        state,
        members=remaining,
        changed_since_epoch=True,
        motions_done=state.motions_done | {motion_id},
    )
    return _without_leavers(changed)


_OPS = {
    "add": _add,
    "remove": _remove,
    "epoch": _epoch,
    "split": _split,
    "elect": apply_elect,
    "recall": apply_recall,
    "link": apply_link,
    "seat": apply_seat,
    "freeze": apply_freeze,
    "unfreeze": apply_unfreeze,
    "review": apply_review,
    "clear": apply_clear,
    "suspend": apply_suspend,
    "restore": apply_restore,
}


# Reading what an event of a verified log carries, by its operation: callers
# ask these rather than comparing `op` themselves.


def carried_bundles(event: Statement) -> list[Statement]:
    """The key-bundle statements an event puts on the roster: a create's members, an add's one,
    a council's new seat holder's (`link`, and `seat` when it seats someone)."""
    op, network = event.fields.get("op"), event.network or b""
    if op == "create":
        raw = event.fields.get("members")
        items = raw if isinstance(raw, list) else []
        return [unpack(item, "key-bundle", network) for item in items]
    if op == "add":
        return [unpack(event.fields.get("bundle"), "key-bundle", network)]
    if op == "link":
        seat = event.fields.get("seat")
        if isinstance(seat, dict):
            return [unpack(seat.get("bundle"), "key-bundle", network)]
    if op == "seat" and event.fields.get("bundle") is not None:
        return [unpack(event.fields.get("bundle"), "key-bundle", network)]
    return []


def carried_certificate(event: Statement) -> Statement | None:
    """The admission certificate an `add` carries; None for every other operation."""
    if event.fields.get("op") != "add":
        return None
    return unpack(event.fields.get("certificate"), "admission", event.network or b"")


def carried_split(event: Statement) -> tuple[frozenset[bytes], bytes] | None:
    """A `split` event's moved members and new group; None for every other operation."""
    if event.fields.get("op") != "split":
        return None
    network = event.network or b""
    return split_terms(parse_motion(unpack(event.fields.get("motion"), "motion", network)))


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
    lines: Mapping[bytes, frozenset[bytes]] | None = None,
    since: Mapping[bytes, int] | None = None,
    rules: GroupRules,
) -> GroupCreation:
    """Sign the create event of a new group (a fresh random id unless `group` is given).

    A cell made by a split gives each member's invite line (`lines`, as the
    splitting cell's state has them); the founding cell's stewards have none.
    """
    group_id = group if group is not None else os.urandom(GROUP_ID_BYTES)
    event = sign_event(
        key,
        network,
        None,
        "create",
        time,
        create_fields(kind, level, parent, bundles, origin, lines, since),
        group=group_id,
    )
    return parse_group_creation(event, rules=rules)


def parse_group_creation(
    event: Statement, *, rules: GroupRules, now: int | None = None
) -> GroupCreation:
    return GroupCreation(event, apply(None, event, rules=rules, now=now))


def verify_log(
    events: Sequence[Statement], *, rules: GroupRules, now: int | None = None
) -> RosterState:
    """Replay a whole log from its create event; raise RuleViolation at the first bad event.

    Each event names the one before it, so a chain of events that each name
    the one before stands, by its last event's id, for the whole log up to
    it: states replayed before (without `now`) are kept by that id, and a log
    whose first events chain up to one of them is replayed from there on.
    """
    state: RosterState | None = None
    start = 0
    if now is None:
        chained = 0  # events[:chained] each name the event before them
        while chained < len(events) and events[chained].fields.get("prev") == (
            events[chained - 1].id if chained else ZERO_HEAD
        ):
            chained += 1
        for position in range(chained, 0, -1):
            key = (rules, events[position - 1].id)
            known = _REPLAYED.pop(key, None)
            if known is not None:
                _REPLAYED[key] = known  # used: the last to be let go
                if known.seq == position - 1:
                    state, start = known, position
                    break
    for event in events[start:]:
        state = apply(state, event, rules=rules, now=now)
    if state is None:
        raise RuleViolation("invalid_event", "an empty roster log")
    if now is None and start < len(events):
        state = _read_only(state)  # handed to every later caller of this log
        _REPLAYED[(rules, state.head)] = state
        while len(_REPLAYED) > _REPLAYED_MAX:
            _REPLAYED.pop(next(iter(_REPLAYED)))
    return state


def _read_only(state: RosterState) -> RosterState:
    return replace(
        state,
        members=MappingProxyType(dict(state.members)),
        lines=MappingProxyType(dict(state.lines)),
        since=MappingProxyType(dict(state.since)),
        seats=MappingProxyType(dict(state.seats)),
    )


# Logs replayed in this process, by their last event's id (see verify_log).
_REPLAYED: dict[tuple[GroupRules, bytes], RosterState] = {}
_REPLAYED_MAX = 4096
