"""A group's signed history, and what one member could see: read from verified logs only.

The rule it keeps: every entry `spokes log` shows and every fact `spokes
exposure` states comes from a roster log this client holds after syncing
and replays itself with the rule book (crypto/roster.py), chained to the
pinned genesis: never from a list the server sends. Who is on a roster when,
which key periods were sealed to them, who issued whose certificate: each is
read off the replayed states and the statements the events carry. What no
log this client holds can show is said to be unknown, never guessed.

Everything above `History` does no I/O; `History` syncs the logs first
(client/rosters.py) and adds the names this client verified (client/profiles.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from client.errors import ClientError
from client.profiles import Profiles
from client.rosters import Rosters
from client.sdk import Client, parse_member
from crypto import roster
from crypto.chains import parse_admission, parse_revocation, parse_verdict
from crypto.councils import link_terms
from crypto.encoding import b32e
from crypto.errors import CryptoError
from crypto.exclusion import check_grounds, open_reason
from crypto.keys import member_id_text
from crypto.motions import Motion, parse_motion
from crypto.roster import GroupRules, RosterState
from crypto.statements import Statement, get_bytes, get_str, unpack

# --- One group's history -----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One event of a verified log, with the roster state before and after it."""

    event: Statement
    before: RosterState | None
    after: RosterState

    @property
    def seq(self) -> int:
        return self.after.seq


def replay(events: Sequence[Statement], rules: GroupRules) -> tuple[Step, ...]:
    """Each event of the log from its create on, with the states the rule book gives."""
    steps: list[Step] = []
    state: RosterState | None = None
    for event in events:
        after = roster.apply(state, event, rules=rules)
        steps.append(Step(event, state, after))
        state = after
    return tuple(steps)


@dataclass(frozen=True)
class LogEntry:
    """One event of a group's history as a person reads it.

    `type` is what happened (`founded`, `admitted`, `left`, `revoked`,
    `expelled`, `rekey`, `split`, `elected`, `recalled`, `linked`,
    `seat_changed`; an operation this client does not describe: its op
    name); `author` signed the roster event; `subject` is the member it is
    about. The rest is what the event carries, where it carries it.
    """

    seq: int
    type: str
    op: str
    author: bytes
    at: int
    subject: bytes | None = None
    # founded: the founding members; split: the members it moved;
    # seat_changed: whoever left the council by it.
    members: tuple[bytes, ...] = ()
    # Who signed what the event carries out: the motion's opener first, then
    # each signature (expelled: from the revocation); revoked: who signed the
    # revocation (a steward, or the holder who published one made in advance).
    signers: tuple[bytes, ...] = ()
    issuer: bytes | None = None  # admitted: who issued the admission certificate
    vouchers: tuple[bytes, ...] = ()  # admitted: whose vouches it carries
    grounds: str | None = None  # revoked/expelled: steward, self or expelled
    # split: the new cell; linked/seat_changed: the seat's group; a council's
    # founding: the group its founder's seat is for.
    group: bytes | None = None
    epoch: int | None = None  # rekey: the key period it begins
    motion: bytes | None = None  # the id of the motion the event carries out
    origin: bytes | None = None  # founded by a split: the split event's id
    reason: str | None = None  # expelled: the reason, if it was sealed to me


ReasonOpener = Callable[[Motion], str | None]
Describe = Callable[[Step, GroupRules, ReasonOpener | None], LogEntry]


def _entry(step: Step, type_: str) -> LogEntry:
    event = step.event
    op = event.fields.get("op")
    return LogEntry(step.seq, type_, op if isinstance(op, str) else "?", event.author, event.time)


def carried_motion(statement: Statement) -> tuple[Motion, tuple[bytes, ...]]:
    """The motion a statement carries (`motion`, `signatures`) and who signed it: the
    opener first (opening is signing), then each signature of that motion, once."""
    network = statement.network or b""
    motion = parse_motion(unpack(statement.fields.get("motion"), "motion", network))
    signers = [motion.statement.author]
    raw = statement.fields.get("signatures")
    for packed in raw if isinstance(raw, list) else []:
        signature = unpack(packed, "motion-sign", network)
        if signature.fields.get("motion") == motion.id and signature.author not in signers:
            signers.append(signature.author)
    return motion, tuple(signers)


def _member_term(motion: Motion) -> bytes | None:
    member = motion.terms.get("member")
    return member if isinstance(member, bytes) and len(member) == 32 else None


def _founded(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    fields = step.event.fields
    members = tuple(b.author for b in roster.carried_bundles(step.event))
    seat_group, origin = fields.get("seat_group"), fields.get("origin")
    return replace(
        _entry(step, "founded"),
        members=members,
        group=seat_group if isinstance(seat_group, bytes) else None,
        origin=origin if isinstance(origin, bytes) else None,
    )


def _admitted(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    event = step.event
    network = event.network or b""
    certificate = roster.carried_certificate(event)
    issuer = None if certificate is None else parse_admission(certificate).issuer
    raw = event.fields.get("vouches")
    vouchers = tuple(
        parse_verdict(unpack(v, "vouch", network)).author
        for v in (raw if isinstance(raw, list) else [])
    )
    joined = [b.author for b in roster.carried_bundles(event)]
    return replace(
        _entry(step, "admitted"),
        subject=joined[0] if joined else None,
        issuer=issuer,
        vouchers=vouchers,
    )


def _removed(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    """`remove`: its reason names the entry (left, revoked, expelled, or a later one as is)."""
    fields = step.event.fields
    member = get_bytes(fields, "member", 32)
    why = get_str(fields, "reason", 16)
    entry = replace(_entry(step, why), subject=member)
    if fields.get("revocation") is None:
        return entry
    if why == "review":  # a council seat's holder under review: the expulsion above them
        revocation = parse_revocation(
            unpack(fields.get("revocation"), "revocation", step.event.network or b"")
        )
        return replace(
            entry, type="seat_lost_to_review", grounds="expelled", members=(revocation.subject,)
        )
    revocation = parse_revocation(
        unpack(fields.get("revocation"), "revocation", step.event.network or b"")
    )
    grounds = check_grounds(revocation.statement, member, rules)
    if grounds.motion is None:
        by = grounds.holder if grounds.holder is not None else revocation.statement.author
        return replace(entry, grounds=grounds.kind, signers=(by,))
    motion, signers = carried_motion(revocation.statement)
    return replace(
        entry,
        grounds=grounds.kind,
        signers=signers,
        motion=motion.id,
        reason=None if reason is None else reason(motion),
    )


def _rekeyed(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    return replace(_entry(step, "rekey"), epoch=step.after.epoch)


def _split(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    motion, signers = carried_motion(step.event)
    moved, new_group = roster.carried_split(step.event) or (frozenset(), None)
    return replace(
        _entry(step, "split"),
        members=tuple(sorted(moved)),
        group=new_group,
        signers=signers,
        motion=motion.id,
    )


def _by_motion(type_: str) -> Describe:
    """An event about one member (its `member`, else its motion's) with the motion it
    carries out, if any, and that motion's signers."""

    def describe(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
        return replace(_other(step, rules, reason), type=type_)

    return describe


def _joined(step: Step) -> list[bytes]:
    before = {} if step.before is None else step.before.members
    return sorted(m for m in step.after.members if m not in before)


def _linked(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    motion, signers = carried_motion(step.event)
    joined = _joined(step)
    return replace(
        _entry(step, "linked"),
        subject=joined[0] if joined else None,
        group=link_terms(motion),
        signers=signers,
        motion=motion.id,
    )


def _seated(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    group = get_bytes(step.event.fields, "seat_group", 16)
    seat = step.after.seats.get(group)
    before = {} if step.before is None else step.before.members
    gone = tuple(sorted(m for m in before if m not in step.after.members))
    holder = None if seat is None else seat.holder
    return replace(_entry(step, "seat_changed"), subject=holder, group=group, members=gone)


def _other(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    """An operation this table does not describe: its op name, its member, its signers."""
    op = step.event.fields.get("op")
    member = step.event.fields.get("member")
    entry = replace(
        _entry(step, op if isinstance(op, str) else "?"),
        subject=member if isinstance(member, bytes) and len(member) == 32 else None,
    )
    if step.event.fields.get("motion") is None:
        return entry
    try:
        motion, signers = carried_motion(step.event)
    except CryptoError:
        return entry
    return replace(
        entry, subject=entry.subject or _member_term(motion), signers=signers, motion=motion.id
    )


def _reviewed(step: Step, rules: GroupRules, reason: ReasonOpener | None) -> LogEntry:
    """An expulsion's review: about the expelled member, putting `members` under review."""
    before = {} if step.before is None else step.before.review
    reviewed = sorted(m for m in step.after.review if m not in before)
    expelled = next(iter(step.after.review[m][1] for m in reviewed), None)
    if expelled is None:  # only the sponsor was touched: on hold
        held = [m for m in step.after.holds if step.before is None or m not in step.before.holds]
        return replace(_entry(step, "review"), members=tuple(sorted(held)))
    return replace(_entry(step, "review"), subject=expelled, members=tuple(reviewed))


# What each roster operation is called in a group's history, and what is read from it.
# A new operation is one line here (an event about a member: `_by_motion(TYPE)`);
# one not listed is shown by its op name, with its `member` and signers if it has them.
ENTRIES: Mapping[str, Describe] = {
    "create": _founded,
    "add": _admitted,
    "remove": _removed,
    "epoch": _rekeyed,
    "split": _split,
    "elect": _by_motion("elected"),
    "recall": _by_motion("recalled"),
    "link": _linked,
    "seat": _seated,
    "freeze": _by_motion("frozen"),
    "unfreeze": _by_motion("unfrozen"),  # without a motion: the freeze lapsed
    "review": _reviewed,
    "clear": _by_motion("review_cleared"),
    "suspend": _by_motion("suspended"),
    "restore": _by_motion("sponsor_restored"),
}


def describe(step: Step, rules: GroupRules, reason: ReasonOpener | None = None) -> LogEntry:
    op = step.event.fields.get("op")
    return ENTRIES.get(op if isinstance(op, str) else "", _other)(step, rules, reason)


def group_history(
    events: Sequence[Statement], rules: GroupRules, reason: ReasonOpener | None = None
) -> list[LogEntry]:
    """A verified log's history, oldest first, one entry per event (replayed here again:
    a log that does not verify raises RuleViolation). `reason` opens an expulsion's
    reason where it was sealed to the reader."""
    return [describe(step, rules, reason) for step in replay(events, rules)]


# --- What one member could see ---------------------------------------------------------


@dataclass(frozen=True)
class HeldLog:
    """A group's log as this client holds it, verified: `current` for a group of mine now,
    False for a cell a split moved me out of (its log then ends at that split)."""

    group: bytes
    events: tuple[Statement, ...]
    current: bool


@dataclass(frozen=True)
class EpochAt:
    """A key period, and the roster event that began it."""

    epoch: int
    seq: int
    at: int


@dataclass(frozen=True)
class Stay:
    """One time a member was on a group's roster, by its log: from the event that put
    them on it to the one that took them off (None: on it where the log ends)."""

    group: bytes
    kind: str
    level: int
    since: LogEntry
    until: LogEntry | None
    epochs: tuple[EpochAt, ...]  # key periods begun while they were on it: sealed to them

    @property
    def first_epoch(self) -> EpochAt | None:
        return self.epochs[0] if self.epochs else None


def stays(member: bytes, events: Sequence[Statement], rules: GroupRules) -> list[Stay]:
    """Every time `member` was on the roster of a verified log, oldest first."""
    return _stays_in(member, _read(events, rules))


@dataclass(frozen=True)
class ReadLog:
    """A verified log replayed once: each step and its entry, side by side."""

    steps: tuple[Step, ...]
    entries: tuple[LogEntry, ...]


def _read(events: Sequence[Statement], rules: GroupRules) -> ReadLog:
    steps = replay(events, rules)
    return ReadLog(steps, tuple(describe(step, rules) for step in steps))


def _stays_in(member: bytes, log: ReadLog) -> list[Stay]:
    found: list[Stay] = []
    current: Stay | None = None
    for step, entry in zip(log.steps, log.entries, strict=True):
        state = step.after
        on = member in state.members
        was = step.before is not None and member in step.before.members
        if on and not was:
            current = Stay(state.group, state.kind, state.level, entry, None, ())
        elif was and not on and current is not None:
            found.append(replace(current, until=entry))
            current = None
        elif on and current is not None and step.before is not None:
            if state.epoch != step.before.epoch and member in state.readers:
                began = EpochAt(state.epoch, step.seq, step.event.time)
                current = replace(current, epochs=(*current.epochs, began))
    if current is not None:
        found.append(current)
    return found


@dataclass(frozen=True)
class SharedGroup:
    """A group of mine the member is on now: since when, and what they hold there."""

    stay: Stay
    members: int  # on its roster now: each of them known to the member, with their profile
    spokesperson: bool
    seat_for: bytes | None  # a council: the group whose seat they hold
    frozen_since: int | None = None  # frozen: no key period is sealed to them meanwhile


@dataclass(frozen=True)
class LastSeen:
    """Where a member left every log this client holds: the event and, for a split, the
    cell it moved them to (whose roster is beyond this client)."""

    group: bytes
    entry: LogEntry
    moved_to: bytes | None


@dataclass(frozen=True)
class Invitee:
    member: bytes
    invited_by: bytes | None  # their direct issuer (the member, for a direct invitee)
    direct: bool
    groups: tuple[bytes, ...]  # groups of mine they are on now
    last_seen: LastSeen | None  # when on none of them


@dataclass(frozen=True)
class Exposure:
    """What `member` can see, as far as the logs this client verified show it."""

    member: bytes
    groups: tuple[SharedGroup, ...]
    past: tuple[Stay, ...]  # earlier times on a roster, and cells a split moved me out of
    invited_by: bytes | None
    steward: bool  # a steward of the genesis: invited by nobody
    invitees: tuple[Invitee, ...]
    unknown: tuple[str, ...]


def exposure_of(member: bytes, logs: Sequence[HeldLog], rules: GroupRules) -> Exposure:
    """What `member`, on the roster of one of my groups now, can see, by my verified logs.

    Refused (`not_in_group`) for a member on no current group of mine: what
    they could see is then nothing this client can speak for.
    """
    read = {log.group: _read(log.events, rules) for log in logs}
    finals = {log.group: read[log.group].steps[-1].after for log in logs if log.events}
    current = [log.group for log in logs if log.current and log.group in finals]
    shared = [g for g in current if member in finals[g].members]
    if not shared:
        raise ClientError(
            "not_in_group",
            f"{member_id_text(member)} is on the roster of none of your groups now, so your "
            "client can't say what they see. `spokes members cell` lists your cell; an "
            "exposure is shown for a member of your cell or of a council you sit in.",
        )
    all_stays = {g: _stays_in(member, log) for g, log in read.items()}
    groups, past = [], []
    for group, found in all_stays.items():
        for stay in found:
            if stay.until is None and group in shared:
                groups.append(_shared(stay, finals[group], member))
            else:
                past.append(stay)
    issuers = direct_issuers(read.values(), finals.values())
    invitees = _invitees(member, issuers, finals, read, current)
    unknown = _unknown(member, groups, finals, read, current)
    return Exposure(
        member,
        tuple(sorted(groups, key=lambda s: (s.stay.level, s.stay.group))),
        tuple(sorted(past, key=lambda s: s.since.at)),
        issuers.get(member),
        member in rules.stewards,
        invitees,
        unknown,
    )


def _shared(stay: Stay, state: RosterState, member: bytes) -> SharedGroup:
    seat = next((g for g, s in state.seats.items() if s.holder == member), None)
    return SharedGroup(
        stay, len(state.members), state.spokesperson == member, seat, state.frozen.get(member)
    )


def direct_issuers(logs: Iterable[ReadLog], finals: Iterable[RosterState]) -> dict[bytes, bytes]:
    """Who issued each member's admission certificate, by the logs this client holds.

    From each `add` event's certificate; for a member whose add is in no log
    held (a cell made by a split of a cell I never saw), from the invite
    lines the logs fix: X issued M's if M's line is X's line plus X (a line
    is the chain of issuers up to a steward, so one member stands at each depth).
    """
    issuers: dict[bytes, bytes] = {}
    lines: dict[bytes, frozenset[bytes]] = {}
    for log in logs:
        for entry in log.entries:
            if entry.type == "admitted" and entry.subject and entry.issuer:
                issuers[entry.subject] = entry.issuer
    for state in finals:
        lines.update(state.lines)
    for member, line in lines.items():
        if member in issuers:
            continue
        for candidate in line:
            known = lines.get(candidate)
            if known is not None and known | {candidate} == line:
                issuers[member] = candidate
                break
    return issuers


def _invitees(
    member: bytes,
    issuers: Mapping[bytes, bytes],
    finals: Mapping[bytes, RosterState],
    read: Mapping[bytes, ReadLog],
    current: Sequence[bytes],
) -> tuple[Invitee, ...]:
    """The member's invitees among everyone my logs show: direct ones, then those their
    invites led to (by the invite lines), each with where I see them."""
    lines: dict[bytes, frozenset[bytes]] = {}
    for state in finals.values():
        lines.update(state.lines)
    below = {m for m, line in lines.items() if member in line} | {
        m for m, issuer in issuers.items() if issuer == member
    }
    found = []
    for invitee in sorted(below, key=lambda m: (issuers.get(m) != member, m)):
        groups = tuple(g for g in current if invitee in finals[g].members)
        last = None if groups else _last_seen(invitee, read)
        direct = issuers.get(invitee) == member
        found.append(Invitee(invitee, issuers.get(invitee), direct, groups, last))
    return tuple(found)


def _last_seen(member: bytes, read: Mapping[bytes, ReadLog]) -> LastSeen | None:
    """The latest event, in any log held, that took `member` off a roster."""
    ended = [
        (stay.until.at, group, stay.until)
        for group, log in read.items()
        for stay in _stays_in(member, log)
        if stay.until is not None
    ]
    if not ended:
        return None
    _, group, entry = max(ended, key=lambda e: (e[0], e[2].seq))
    moved_to = entry.group if entry.type == "split" else None
    return LastSeen(group, entry, moved_to)


def _unknown(
    member: bytes,
    groups: Sequence[SharedGroup],
    finals: Mapping[bytes, RosterState],
    read: Mapping[bytes, ReadLog],
    current: Sequence[bytes],
) -> tuple[str, ...]:
    """What no log this client holds can show about what the member sees, said plainly."""
    said = []
    councils = [finals[g] for g in current if finals[g].kind == "council"]
    for shared in groups:
        stay = shared.stay
        if shared.spokesperson:
            seated = any(
                (s := c.seats.get(stay.group)) is not None and s.holder == member for c in councils
            )
            if not seated:
                said.append(
                    f"They are spokesperson of {stay.kind} {b32e(stay.group)}: they may hold its "
                    f"seat in a level-{stay.level + 1} council you don't sit in. Who sits there, "
                    "what is said there, and any council above it are unknown to you."
                )
        if shared.seat_for is not None and shared.seat_for not in read:
            said.append(
                f"They hold the seat of group {b32e(shared.seat_for)} in council "
                f"{b32e(stay.group)}: that group's roster, what is said there and whom they "
                "invited there are unknown to you."
            )
        origin = stay.since.origin
        if origin is not None and not any(
            any(s.event.id == origin for s in log.steps) for log in read.values()
        ):
            said.append(
                f"They came to {b32e(stay.group)} by a split of a cell whose log you don't hold: "
                "who they knew there and what they read there are unknown to you."
            )
    said.append(
        "Cells other than yours and councils you don't sit in are beyond what your client can "
        "verify: whom they know there, and where invitees of theirs went after leaving your "
        "groups, are unknown to you."
    )
    said.append(
        "What they already read stays read: removing them protects only what is sent after "
        "the next key period without them."
    )
    return tuple(said)


# --- For the commands ------------------------------------------------------------------


@dataclass(frozen=True)
class GroupLog:
    """`spokes log GROUP`: a group's verified history and the names I verified there."""

    group: bytes
    kind: str
    level: int
    read_only: bool  # a cell a split moved me out of: its log ends at that split
    entries: tuple[LogEntry, ...]
    names: dict[bytes, str]


@dataclass(frozen=True)
class ExposureView:
    exposure: Exposure
    names: dict[bytes, str]


class History:
    """Group histories and members' exposure, from the logs this client verified."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.profiles = Profiles(client)

    def _reason(self, motion: Motion) -> str | None:
        try:
            return open_reason(motion, self.client.me, self.client.state.kem)
        except CryptoError:
            return None

    async def log(self, group_text: str) -> GroupLog:
        """The history of my cell, a council I sit in, or a cell a split moved me out of
        (its kept log, up to that split), synced and replayed first."""
        group = await self.rosters.group(group_text)
        record = self.client.state.record(group)
        if record.left_at is None:
            record, state = await self.rosters.sync_roster(group)
            names = (await self.profiles.names(record, state)).verified
        else:
            state = roster.verify_log(record.events, rules=self.client.rules())
            names = dict(record.names)
        entries = group_history(record.events, self.client.rules(), self._reason)
        self.client.save()
        return GroupLog(
            group, state.kind, state.level, record.left_at is not None, tuple(entries), names
        )

    async def exposure(self, member_text: str) -> ExposureView:
        """What a member of my cell, or of a council I sit in, can see (`spokes exposure`)."""
        member = parse_member(member_text)
        current = await self.rosters.sync_groups()
        logs = [HeldLog(g, tuple(self.client.state.record(g).events), True) for g in current]
        left = self.rosters.left_cells()
        logs += [HeldLog(r.group_id, tuple(r.events), False) for r in left]
        found = exposure_of(member, logs, self.client.rules())
        names: dict[bytes, str] = {}
        for record in left:
            names.update(record.names)
        for group in current:
            record = self.client.state.record(group)
            state = roster.verify_log(record.events, rules=self.client.rules())
            names.update((await self.profiles.names(record, state)).verified)
        self.client.save()
        return ExposureView(found, names)
