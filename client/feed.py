"""The live feed for one member: messages printed as they arrive on the socket.

The rules it keeps: the home's lock is never held while the socket is
waited on; each batch of events is read under the lock, against the
keystore re-read from disk, and saved before the lock is let go.

A watch shows each message once, in order: it prints what a group's history
holds after the watch's own cursor (`watch_cursor`, apart from `read`'s), so
a message another command from this home absorbed meanwhile is still shown,
and one shown is not shown again. A socket lost after the watch started (a
server restart, the network) is opened again with backoff (0.2 s doubling to
5 s, with jitter, within the watch's time) and every group subscribed again
from the absorbed cursor: the server sends what came meanwhile, what was
absorbed already is skipped, and the seqs must still follow one by one. When
a verified split moves me to another cell (the feed stops the old one with
`not_found`), the watch follows me there the same way. A refusal that is not
about the connection (login refused, a lie, no longer a member) ends the
watch with its error, as does failing to connect when it starts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from client import api, verify
from client.errors import ClientError, FeedClosed, ServerError, VerificationFailed
from client.groups import EpochInfo, GroupRecord, ReadMessage, check_seqs, epoch_infos, lying
from client.messages import Messages
from client.rosters import Rosters
from client.sdk import Client
from client.transport import Feed
from crypto.encoding import b32d, b32e
from crypto.network import GROUP_ID_BYTES

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
# A connection that brought events, or stayed up this long, starts the next
# loss's backoff afresh; one that fails at once keeps it growing.
STEADY_S = BACKOFF_MAX_S
# Closes after which the watch goes on: the server went away, restarted or
# failed (1000-1014, None when the connection just dropped), or the session
# ended (4401: log in again). 1003 (we sent what it can't read) and 4403
# (no longer a member) end it.
RESUMABLE_CLOSES = frozenset({None, 1000, 1001, 1006, 1011, 1012, 1013, 1014, 4401})
# Codes of a lost or failed server, not a refusal: from the transport, or an
# `error` the feed sent before closing; or my cell was split and I moved.
MOVED = "moved_by_split"
RESUMABLE_CODES = frozenset(
    {"server_unreachable", "bad_response", "session_expired", "internal", "unavailable", MOVED}
)

Emit = Callable[[str, ReadMessage], None]
Notify = Callable[[str], None]
Infos = dict[bytes, tuple[int, dict[int, EpochInfo]]]


@dataclass(frozen=True)
class Watched:
    """How a watch ended: messages shown, why it stopped ("timeout" or "count"),
    how long it ran and how many times it connected again."""

    received: int
    reason: str
    seconds: float
    reconnects: int


@dataclass
class _Run:
    """One watch in progress: what it may still show and until when."""

    count: int | None
    deadline: float
    emit: Emit
    received: int = 0
    events: int = 0  # group events the socket brought, shown or not

    def room(self) -> int | None:
        return None if self.count is None else self.count - self.received

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def done(self) -> bool:
        return self.room() == 0 or self.left_s() <= 0


def resumable(exc: ClientError) -> bool:
    """Whether the watch may connect again after `exc`: a lost server, not a refusal."""
    if isinstance(exc, VerificationFailed):
        return False
    if isinstance(exc, FeedClosed):
        return exc.close_code in RESUMABLE_CLOSES
    if isinstance(exc, ServerError):
        return exc.status >= 500 or exc.status == 429
    return exc.code in RESUMABLE_CODES


class Backoff:
    """Waits before connecting again: `first` doubling up to `most`, each drawn
    from its upper half so that members cut off together don't return together."""

    def __init__(self, first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> None:
        self.first = first
        self.most = most
        self.tries = 0

    def next(self) -> float:
        delay = min(self.most, self.first * 2**self.tries)
        self.tries += 1
        return random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self.tries = 0


class LiveFeed:
    """My groups' events as they arrive."""

    def __init__(self, client: Client, view: str = "watch") -> None:
        self.client = client
        self.view = view  # whose cursor: `watch`'s, or the relay daemon's
        self.rosters = Rosters(client)
        self.messages = Messages(client)

    async def watch(
        self, count: int | None, seconds: float, emit: Emit, notify: Notify | None = None
    ) -> Watched:
        """Print messages as they arrive, for `seconds` or until `count` were shown.

        The home's lock is not held while the socket is waited on: each batch
        of events is read under the lock against the keystore re-read from
        disk, and saved before the lock is let go, so other commands from this
        home (a send) can run meanwhile and nothing stale is written back.
        A lost connection is opened again with backoff (the module's rule);
        `notify` hears, in a line for a person, when it was lost and when it
        is back.
        """
        say = notify or (lambda _: None)
        started = time.monotonic()
        run = _Run(count, started + seconds, emit)
        infos: Infos = {}
        backoff = Backoff()
        reconnects = 0
        feed = await self._connect(run)  # the first connection's failure is the answer
        while True:
            opened, events = time.monotonic(), run.events
            try:
                await self._stream(feed, run, infos)
                break
            except ClientError as exc:
                if not resumable(exc):
                    raise
                lost = exc
            finally:
                await feed.close()
            lost_at = time.monotonic()
            say(_lost(lost))
            if lost_at - opened >= STEADY_S or run.events > events:
                backoff.reset()
            connected = await self._reconnect(run, backoff)
            if connected is None:
                break  # out of time (or count) while reconnecting
            feed = connected
            reconnects += 1
            say(f"Back after {time.monotonic() - lost_at:.1f} s; resuming where it stopped.")
        reason = "count" if run.room() == 0 else "timeout"
        return Watched(run.received, reason, time.monotonic() - started, reconnects)

    async def _reconnect(self, run: _Run, backoff: Backoff) -> Feed | None:
        """Connect again, waiting between tries; None when the watch's time ran out."""
        while True:
            await asyncio.sleep(max(0.0, min(backoff.next(), run.left_s())))
            if run.done():
                return None
            try:
                # A network that drops packets would hold a try for the transport's
                # own timeout: the watch's end comes first.
                return await asyncio.wait_for(self._connect(run), run.left_s())
            except TimeoutError:
                return None
            except ClientError as exc:
                if not resumable(exc):
                    raise

    async def _connect(self, run: _Run) -> Feed:
        """Bring my groups up to date, show what the watch has not shown, open and subscribe."""
        async with self.client.fresh():
            await self.rosters.sync_groups()  # my cell and the councils I sit in
            cursors = {}
            for group in self.rosters.verified_groups():
                record, _ = await self.rosters.sync_roster(group)
                if self._cursor(record) is None:
                    self._move(record, record.cursor)  # a first watch starts from now
                cursors[b32e(group)] = record.cursor
            shown = self._unshown(list(self.rosters.verified_groups()), run)
            self.client.save()
            feed = await self.client.open_feed()
            if self.client.following is not None:  # a follower keeps states of these only
                self.client.following.clear()
                self.client.followed = frozenset(b32d(g) for g in cursors)
        self._show(shown, run)
        try:
            await feed.send({"type": "subscribe", "cursors": cursors})
        except ClientError:
            await feed.close()
            raise
        return feed

    async def _stream(self, feed: Feed, run: _Run, infos: Infos) -> None:
        """Show what the socket brings until the watch is done; raises when it is lost."""
        while not run.done():
            data = await feed.receive(run.left_s())
            if data is None:
                continue
            batch = [data]
            while feed.buffered:  # the rest of a batch frame, already here
                more = await feed.receive(0)
                if more is not None:
                    batch.append(more)
            async with self.client.fresh():
                groups: list[bytes] = []
                for item in batch:
                    group = await self._live_event(item, infos)
                    if group is not None:
                        run.events += 1
                        if group not in groups:
                            groups.append(group)
                shown = self._unshown(groups, run)
                self.client.save()
            self._show(shown, run)

    def _unshown(self, groups: list[bytes], run: _Run) -> list[tuple[str, ReadMessage]]:
        """What the groups' histories hold after the watch's cursor, as much as the
        watch may still show; the cursor moves past it (the caller saves)."""
        found: list[tuple[str, ReadMessage]] = []
        for group in groups:
            record = self.client.state.record(group)
            mine = self._cursor(record)
            start = record.cursor if mine is None else mine
            new = [m for m in record.history if m.cursor > start]
            room = run.room()
            if room is not None:
                room -= len(found)
                if len(new) > room:
                    new = new[:room]
                    self._move(record, new[-1].cursor if new else start)
                    found += [(b32e(group), m) for m in new]
                    continue
            self._move(record, max(start, record.cursor))
            found += [(b32e(group), m) for m in new]
        return found

    def _cursor(self, record: GroupRecord) -> int | None:
        """Where this view (`watch`, or the relay daemon) stopped showing the group."""
        return record.daemon_cursor if self.view == "daemon" else record.watch_cursor

    def _move(self, record: GroupRecord, cursor: int) -> None:
        if self.view == "daemon":
            record.daemon_cursor = cursor
        else:
            record.watch_cursor = cursor

    @staticmethod
    def _show(shown: list[tuple[str, ReadMessage]], run: _Run) -> None:
        for group_text, message in shown:
            run.emit(group_text, message)
        run.received += len(shown)

    async def _live_event(self, data: dict[str, Any], infos: Infos) -> bytes | None:
        """One event from the live feed, against the keystore just re-read (lock held):
        absorbed, and its group returned (None for what is not a group's event)."""
        kind = data.get("type")
        if kind == "error":
            code = str(data.get("code") or "feed_error")
            if code == "not_found" and await self._moved():
                raise ClientError(MOVED, "A split moved you to another cell.")
            raise ClientError(code, f"The live feed refused: {data.get('message')}")
        if kind != "event":
            return None
        event = api.parse_event(data)
        group = verify.parse_id(event.group, GROUP_ID_BYTES, "group id")
        if not self.rosters.verified(group):
            raise lying("the live feed sent an event of a group you did not subscribe to")
        record = self.client.state.record(group)
        if event.seq <= record.cursor:
            return group  # another command from this home absorbed it meanwhile
        check_seqs(record.cursor, [event.seq])
        if event.kind == "roster":
            if self.client.following is not None:  # the log changed: verify it again
                self.client.following.pop(group, None)
            record, _ = await self.rosters.sync_roster(group)
        known = infos.get(group)
        if known is None or known[0] != len(record.events):
            known = (len(record.events), epoch_infos(record.events, rules=self.client.rules()))
            infos[group] = known
        await self.messages.absorb(record, known[1], event)  # kept in its history
        record.advance(event)
        return group

    async def _moved(self) -> bool:
        """Whether my cell changed: the feed stops a cell a split moved me out of."""
        before = self.rosters.verified_groups()
        await self.rosters.sync_cell()  # follows a verified split, and saves
        return self.rosters.verified_groups() != before


def _lost(exc: ClientError) -> str:
    """The line a person watching reads when the feed was lost."""
    if exc.code == MOVED:
        return "Your cell split and you moved to the new one; following it…"
    if isinstance(exc, FeedClosed):
        why = f"it closed the connection, code {exc.close_code}"
    elif exc.code == "server_unreachable":
        why = "it can't be reached"
    else:
        why = exc.code
    return f"Lost the server ({why}); reconnecting…"
