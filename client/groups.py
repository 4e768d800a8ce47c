"""What one client knows of its groups, and the checks that keep the server honest.

The rule it keeps: nothing the server hands over about a group is believed
until it is checked against what this client already verified. A roster log
must extend the log this client holds (same events, same order, then more),
and the whole of it is replayed with crypto.roster from its create event; a
group's events must follow the last one read with no gap; a sender's
counters must strictly increase within an epoch; and the roster head a
sender names inside a message must be one this client's log has for that
epoch, or the server is showing members different rosters (equivocation).

No I/O here: client/rosters.py, client/epochs.py and client/messages.py fetch and
post; this module decides.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from client.errors import ClientError, VerificationFailed
from crypto import roster
from crypto.encoding import Value, decode, encode, encode_list_of_encoded
from crypto.epochs import EpochKeys, MessageKey, SenderChain
from crypto.errors import CryptoError
from crypto.messages import Header, SealedMessage
from crypto.network import KeyBundle, parse_key_bundle
from crypto.roster import RosterMember, RosterState
from crypto.statements import Statement, get_bytes, pack, unpack

HISTORY_LIMIT = 1000


class Equivocation(ClientError):
    """The server showed this member a roster that another member's messages contradict."""

    def __init__(self, message: str) -> None:
        super().__init__("equivocation", message)


def lying(message: str) -> VerificationFailed:
    return VerificationFailed(
        f"{message}. Nothing was accepted; the server may be faulty or lying, "
        "so tell your cell in person."
    )


# The roster log.


def extend_log(
    known: Sequence[Statement], fetched: Sequence[Statement], *, rules: roster.GroupRules
) -> RosterState:
    """Replay `fetched` from its create event, after checking it extends `known`.

    A log that drops, reorders, replaces or replays an event this client
    already verified, or that is shorter than what it verified, is refused.
    """
    if len(fetched) < len(known):
        raise lying(
            f"the server's roster log has {len(fetched)} events, fewer than the "
            f"{len(known)} this client already verified"
        )
    for position, (mine, theirs) in enumerate(zip(known, fetched, strict=False)):
        if mine.id != theirs.id:
            raise Equivocation(
                f"The server showed two different roster events at position {position} of one "
                "group's log: it is showing members different rosters (a fork). Nothing was "
                "accepted; compare the roster fingerprint of `spokes cells` with your cell in person."
            )
    try:
        return roster.verify_log(fetched, rules=rules)
    except CryptoError as exc:
        raise lying(f"the server's roster log does not verify ({exc})") from exc


@dataclass(frozen=True)
class EpochInfo:
    """One epoch as the verified log fixes it: who it covers and what binds its secret."""

    epoch: int
    roster_hash: bytes
    commitment: bytes
    members: Mapping[bytes, RosterMember]
    heads: frozenset[bytes]  # every head the log had while this epoch was current


def epoch_infos(events: Sequence[Statement], *, rules: roster.GroupRules) -> dict[int, EpochInfo]:
    """Each epoch of a verified log, with the roster heads valid while it was current.

    Kept by the log's last event (a verified log's events each name the one
    before, so the last one stands for all): asked again for the same log,
    the replay is not made again.
    """
    if not events:
        return {}
    key = (rules, events[-1].id, len(events))
    kept = _EPOCH_INFOS.get(key)
    if kept is None:
        kept = _EPOCH_INFOS[key] = _epoch_infos(events, rules)
        while len(_EPOCH_INFOS) > _EPOCH_INFOS_MAX:
            _EPOCH_INFOS.pop(next(iter(_EPOCH_INFOS)))
    return dict(kept)


_EPOCH_INFOS: dict[tuple[roster.GroupRules, bytes, int], dict[int, EpochInfo]] = {}
_EPOCH_INFOS_MAX = 1024


def _epoch_infos(events: Sequence[Statement], rules: roster.GroupRules) -> dict[int, EpochInfo]:
    infos: dict[int, EpochInfo] = {}
    state: RosterState | None = None
    for event in events:
        state = roster.apply(state, event, rules=rules)
        if state.epoch == 0 or state.commitment is None or state.epoch_roster is None:
            continue
        current = infos.get(state.epoch)
        if current is None:
            infos[state.epoch] = EpochInfo(
                state.epoch,
                state.epoch_roster,
                state.commitment,
                dict(state.readers),
                frozenset({state.head}),
            )
        else:
            infos[state.epoch] = EpochInfo(
                current.epoch,
                current.roster_hash,
                current.commitment,
                current.members,
                current.heads | {state.head},
            )
    return infos


def readable_epochs(record: GroupRecord, *, rules: roster.GroupRules) -> dict[int, EpochInfo]:
    """The epochs of a group's verified log that its messages may belong to.

    For a cell a split moved me out of, the log as it stood before that
    split: a message can't name the roster after it (nobody could send one
    then: the split made the epoch stale), so none is read from after I left.
    """
    events = record.events if record.left_at is None else record.events[: record.left_at]
    return epoch_infos(events, rules=rules)


def lineage(records: Mapping[bytes, GroupRecord], group: bytes) -> list[bytes]:
    """`group`, preceded by the cells a split moved me out of on the way to it, oldest first.

    Each step back is a cell this client kept as left (`left_at`, set only
    once the split that moved me was verified) whose log ends with the split
    that the later cell's create event names as its origin.
    """
    chain = [group]
    record = records.get(group)
    while record is not None and record.events and len(chain) <= len(records):
        origin = record.events[0].fields.get("origin")
        record = next(
            (
                r
                for r in records.values()
                if r.left_at is not None and r.events and r.events[-1].id == origin
            ),
            None,
        )
        if record is not None:
            chain.insert(0, record.group_id)
    return chain


def check_head(infos: Mapping[int, EpochInfo], epoch: int, head: object) -> None:
    """A message's inner roster head must be one this client's log has for that epoch."""
    info = infos.get(epoch)
    if not isinstance(head, bytes) or info is None or head not in info.heads:
        raise Equivocation(
            f"A message in key period {epoch} was written by someone who saw a roster this "
            "client was never shown: the server is showing members different rosters. Nothing "
            "was accepted; compare roster fingerprints (`spokes cells`) with your cell in person."
        )


def bundle_of(events: Sequence[Statement], member: bytes, network: bytes) -> KeyBundle:
    """The key bundle a verified log recorded for `member` (from create or add)."""
    for event in reversed(events):
        for statement in roster.carried_bundles(event):
            if statement.author == member:
                return parse_key_bundle(statement)
    raise ClientError(
        "not_in_group",
        "That member is not on this group's roster; `spokes members cell` lists who is.",
    )


def admission_ids(events: Sequence[Statement], network: bytes) -> dict[bytes, bytes]:
    """Member id -> the id of the admission certificate their `add` event carried."""
    found: dict[bytes, bytes] = {}
    for event in events:
        certificate = roster.carried_certificate(event)
        if certificate is not None:
            (bundle,) = roster.carried_bundles(event)
            found[bundle.author] = certificate.id
    return found


# Event order and message counters.


def event_digest(event: Any) -> bytes:
    """What identifies one event of a group's log: its seq, kind, sender and body."""
    return hashlib.sha256(encode([event.seq, event.kind, event.sender or "", event.body])).digest()


def check_seqs(cursor: int, seqs: Iterable[int]) -> int:
    """Events must follow the cursor one by one; return the new cursor."""
    expected = cursor + 1
    for seq in seqs:
        if seq != expected:
            what = "dropped" if seq > expected else "replayed or reordered"
            raise lying(f"the group's events skip from {expected - 1} to {seq}: events were {what}")
        expected += 1
    return expected - 1


def check_counter(last: dict[str, int], epoch: int, sender: bytes, counter: int) -> None:
    """Within an epoch, each sender's counters strictly increase (gaps are refused sends)."""
    key = f"{epoch}:{sender.hex()}"
    previous = last.get(key)
    if previous is not None and counter <= previous:
        raise lying(
            f"a message arrived out of order or twice (counter {counter} after {previous} "
            f"from the same sender in key period {epoch})"
        )
    last[key] = counter


def previous_counter(last: dict[str, int], epoch: int, sender: bytes) -> int:
    """The sender's last counter this client saw in the epoch; -1 before their first."""
    return last.get(f"{epoch}:{sender.hex()}", -1)


def check_previous(claimed: Value, seen: int, epoch: int) -> None:
    """Each message names its sender's previous accepted message: a dropped one shows.

    Counter gaps alone are legitimate (a refused send spends its counter), so
    without this a server could delete a message and renumber the rest.
    """
    if claimed != seen:
        raise lying(
            f"a message from this sender in key period {epoch} was dropped: it follows their "
            f"message {claimed!r}, but the last one this client saw was {seen}"
        )


def check_mine_served(record: GroupRecord, me: bytes) -> None:
    """Once caught up, every message of mine the server accepted must have been served.

    `prev` shows a dropped message only when its sender's next one arrives;
    the sender knows at once. A client that decides from what it has read
    (client/proposals.py: whether I already answered) checks this first.
    """
    for epoch, sent in record.sent.items():
        if sent > previous_counter(record.counters, int(epoch), me):
            raise lying(
                f"a message you sent in key period {epoch} (counter {sent}), which the server "
                "accepted, is missing from the group's events it served"
            )


def parse_message_body(body: bytes) -> SealedMessage:
    fields = decode(body)
    if not isinstance(fields, dict):
        raise lying("a message event is not a record")
    try:
        return SealedMessage(
            get_bytes(fields, "header"),
            get_bytes(fields, "ciphertext"),
            get_bytes(fields, "signature"),
        )
    except CryptoError as exc:
        raise lying(f"a message event is malformed ({exc})") from exc


def message_header(message: SealedMessage) -> Header:
    try:
        return Header.decode(message.header)
    except CryptoError as exc:
        raise lying(f"a message header is malformed ({exc})") from exc


# What is kept per group.


@dataclass
class EpochRecord:
    """An epoch's keys after its secret was forgotten: receiving chains and my sending chain."""

    keys: EpochKeys
    sending: SenderChain | None

    def next_for_sending(self) -> tuple[int, MessageKey]:
        if self.sending is None:
            raise ClientError(
                "not_in_group",
                "You are not among the senders of this key period: the group's roster changed. "
                "Run the command again to send under the next one.",
            )
        return self.sending.next_for_sending()


def new_epoch_record(keys: EpochKeys, me: bytes) -> EpochRecord:
    mine = keys.chains.get(me)
    sending = None if mine is None else SenderChain(mine.counter, mine.chain_key, {})
    return EpochRecord(keys, sending)


@dataclass(frozen=True)
class ReadMessage:
    message_id: str
    sender: str
    text: str
    sent_at: int
    cursor: int
    # The key period it was sealed in (None: kept before this was recorded).
    epoch: int | None = None
    # What its sender sealed beside the text, as sealed: read by client/proposals.py.
    proposal: dict[str, Value] | None = None
    answer: dict[str, Value] | None = None
    # A relayed message's provenance, checked against the roster (crypto/relays.py).
    provenance: dict[str, Value] | None = None
    # An alert record it carries, {"kind", "id", …} (crypto/alerts.py), if well formed.
    alert: dict[str, Value] | None = None
    # A mandate a relay up carries: an agreed proposal's id, outcome and counts.
    mandate: dict[str, Value] | None = None
    # A name for its group, as its sender gave it (a council's: `council create --name`).
    group_name: str | None = None

    @functools.cached_property
    def encoded(self) -> bytes:
        """Its canonical encoding as the keystore keeps it (made once: the message never changes)."""
        value: dict[str, Value] = {
            "message_id": self.message_id,
            "sender": self.sender,
            "text": self.text,
            "sent_at": self.sent_at,
            "cursor": self.cursor,
            "epoch": self.epoch,
        }
        # Only where sealed, so plain messages keep their old size.
        for name in ("proposal", "answer", "provenance", "alert", "mandate", "group_name"):
            if getattr(self, name) is not None:
                value[name] = getattr(self, name)
        return encode(value)


def _history_bytes(history: Sequence[ReadMessage]) -> bytes:
    return encode_list_of_encoded([m.encoded for m in history])


def _history_of(value: Value) -> list[ReadMessage]:
    """A kept history: one bytes value (a list of messages in a keystore from before)."""
    if isinstance(value, bytes):
        return list(_decoded_history(value))
    return [ReadMessage(**cast(dict[str, object], m)) for m in cast(list[Value], value)]  # type: ignore[arg-type]


@functools.lru_cache(maxsize=256)
def _decoded_history(data: bytes) -> tuple[ReadMessage, ...]:
    items = decode(data)
    if not isinstance(items, list):
        raise ValueError("a kept history is not a list")
    return tuple(ReadMessage(**cast(dict[str, object], m)) for m in items)  # type: ignore[arg-type]


@dataclass
class GroupRecord:
    """One group as this client knows it; mutable while a command runs, then saved whole."""

    group_id: bytes
    events: list[Statement] = field(default_factory=list)
    # The last event checked and absorbed: where verification (and the feed) resumes.
    cursor: int = 0
    # What each view has shown, apart from `cursor` and from each other: `read`
    # shows history after read_cursor, `watch` after watch_cursor (None: never
    # watched, so a first watch starts at what is absorbed).
    read_cursor: int = 0
    watch_cursor: int | None = None
    # The relay daemon's own (client/daemon.py), apart from watch's and read's.
    daemon_cursor: int | None = None
    epochs: dict[int, EpochRecord] = field(default_factory=dict)
    unreadable: set[int] = field(default_factory=set)  # epochs from before I joined
    counters: dict[str, int] = field(default_factory=dict)
    heads_seen: dict[int, set[bytes]] = field(default_factory=dict)
    history: list[ReadMessage] = field(default_factory=list)
    profile_epoch: int = 0
    # The highest profile version seen per member: an older one is a replay.
    profile_versions: dict[bytes, int] = field(default_factory=dict)
    # My last accepted counter per epoch, named in my next message as "prev".
    sent: dict[str, int] = field(default_factory=dict)
    # The last name each member's verified profile gave in this group: who is
    # who in its history, even after they left it (client/profiles.py).
    names: dict[bytes, str] = field(default_factory=dict)
    # Set when a profile or roster event arrives: `names` is fetched again then.
    names_stale: bool = True
    # Set once a verified split moved me out of this cell (client/rosters.py):
    # the roster seq of that split, where its kept log ends. The cell is then
    # read-only: its messages up to the split, never anything after it.
    left_at: int | None = None
    # Members a roster event removed on a revocation (an expulsion, a steward's,
    # their own) or froze, by the group event seq of that event: a message of
    # theirs the server delivers after it is the lying alarm (client/messages.py);
    # an unfreeze lets them write again.
    cut_off: dict[bytes, int] = field(default_factory=dict)
    # What the event at `cursor` was (event_digest): the server's log must still hold it
    # there when this client next reads on (a database restored to an older point, or a
    # rewritten log, would otherwise go unseen: new events reusing the lost seqs).
    cursor_digest: bytes | None = None

    def advance(self, event: Any) -> None:
        """The cursor moves to `event` (an api.GroupEvent this client checked and absorbed)."""
        self.cursor = event.seq
        self.cursor_digest = event_digest(event)

    def remember(self, message: ReadMessage) -> None:
        self.history.append(message)
        del self.history[:-HISTORY_LIMIT]

    def to_value(self) -> dict[str, Value]:
        return {
            "events": [pack(e) for e in self.events],
            "cursor": self.cursor,
            "read_cursor": self.read_cursor,
            "watch_cursor": self.watch_cursor,
            "daemon_cursor": self.daemon_cursor,
            "epochs": {str(n): _epoch_value(r) for n, r in self.epochs.items()},
            "unreadable": list[Value](sorted(self.unreadable)),
            "counters": dict[str, Value](self.counters),
            "heads_seen": {str(n): list[Value](sorted(h)) for n, h in self.heads_seen.items()},
            # One bytes value: encoded from each message's kept encoding, and
            # decoded once per distinct history (_history_of), so a keystore
            # written and read around every relay does not walk each message.
            "history": _history_bytes(self.history),
            "profile_epoch": self.profile_epoch,
            "profile_versions": {m.hex(): v for m, v in self.profile_versions.items()},
            "sent": dict[str, Value](self.sent),
            "names": {m.hex(): n for m, n in self.names.items()},
            "names_stale": self.names_stale,
            "left_at": self.left_at,
            "cut_off": {m.hex(): seq for m, seq in self.cut_off.items()},
            "cursor_digest": self.cursor_digest,
        }

    @classmethod
    def from_value(cls, group_id: bytes, value: Value, network: bytes | None) -> GroupRecord:
        raw = cast(dict[str, Value], value)
        return cls(
            group_id=group_id,
            # Re-verified on read, like every statement in the keystore.
            events=[unpack(e, "roster", network) for e in cast(list[Value], raw["events"])],
            cursor=cast(int, raw["cursor"]),
            # A keystore from before the views had cursors: read has shown what is absorbed.
            read_cursor=cast(int, raw.get("read_cursor", raw["cursor"])),
            watch_cursor=cast(int | None, raw.get("watch_cursor")),
            daemon_cursor=cast(int | None, raw.get("daemon_cursor")),
            epochs={
                int(n): _epoch_from_value(group_id, int(n), r)
                for n, r in cast(dict[str, Value], raw["epochs"]).items()
            },
            unreadable=set(cast(list[int], raw["unreadable"])),
            counters=dict(cast(dict[str, int], raw["counters"])),
            heads_seen={
                int(n): set(cast(list[bytes], h))
                for n, h in cast(dict[str, Value], raw["heads_seen"]).items()
            },
            history=_history_of(raw["history"]),
            profile_epoch=cast(int, raw["profile_epoch"]),
            profile_versions={
                bytes.fromhex(m): cast(int, v)
                for m, v in cast(dict[str, Value], raw.get("profile_versions") or {}).items()
            },
            sent=dict(cast(dict[str, int], raw.get("sent", {}))),
            names={
                bytes.fromhex(m): cast(str, n)
                for m, n in cast(dict[str, Value], raw.get("names") or {}).items()
            },
            names_stale=cast(bool, raw.get("names_stale", True)),
            left_at=cast("int | None", raw.get("left_at")),
            cut_off={
                bytes.fromhex(m): cast(int, seq)
                for m, seq in cast(dict[str, Value], raw.get("cut_off") or {}).items()
            },
            cursor_digest=cast("bytes | None", raw.get("cursor_digest")),
        )


def _chain_value(chain: SenderChain) -> dict[str, Value]:
    return {
        "counter": chain.counter,
        "chain_key": chain.chain_key,
        "skipped": {str(n): [k.key, k.nonce] for n, k in chain.skipped.items()},
    }


def _chain_from_value(value: Value) -> SenderChain:
    raw = cast(dict[str, Value], value)
    skipped = {
        int(n): MessageKey(*cast(list[bytes], k))
        for n, k in cast(dict[str, Value], raw["skipped"]).items()
    }
    return SenderChain(cast(int, raw["counter"]), cast(bytes, raw["chain_key"]), skipped)


def _epoch_value(record: EpochRecord) -> dict[str, Value]:
    return {
        "profile_key": record.keys.profile_key,
        "chains": {m.hex(): _chain_value(c) for m, c in record.keys.chains.items()},
        "sending": None if record.sending is None else _chain_value(record.sending),
    }


def _epoch_from_value(group: bytes, epoch: int, value: Value) -> EpochRecord:
    raw = cast(dict[str, Value], value)
    chains = {
        bytes.fromhex(m): _chain_from_value(c)
        for m, c in cast(dict[str, Value], raw["chains"]).items()
    }
    keys = EpochKeys(group, epoch, cast(bytes, raw["profile_key"]), chains)
    sending = None if raw["sending"] is None else _chain_from_value(raw["sending"])
    return EpochRecord(keys, sending)
