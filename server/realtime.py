"""Live delivery: one LISTEN connection per server instance, one writer per socket.

The rule: the database is the only source of events. A notification, a
reconnect or a timer only *pokes*; a poked socket's writer reads what follows
its cursor from ``group_events`` and sends it in seq order, moving the cursor
as it goes. So delivery is exactly once and in order per group however
notifications are coalesced, duplicated, delayed or lost, and an instance
that dies loses nothing: the client resumes from its cursor elsewhere.

To keep the database out of the hot path, each group with local subscribers
has a :class:`Feed` that caches its newest events (already serialised) and
reads new ones once for all of its sockets; a socket that is behind the cache
reads on its own. Every read also fetches the group's roster, so a member
removed from a group stops receiving it on every instance, not only on the
one that removed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from crypto.encoding import b32d, b32e
from server.clock import Clock
from server.services.events import FeedSession, event_wire
from server.store import events as store
from server.store.db import Pool

log = logging.getLogger("spokes.realtime")

SAFETY_POKE_S = 10.0  # re-read every group now and then, in case a NOTIFY was lost
SESSION_CHECK_S = 60.0  # how soon a revoked session's sockets close
SEND_TIMEOUT_S = 30.0  # a client that won't read for this long is dropped
READ_LIMIT = 200  # events per database read
CACHE_ROWS = 256  # per group
CACHE_BYTES = 1 << 20  # per group, of serialised events
FRAME_BYTES = 256 * 1024  # a batch frame's events, serialised (one larger event goes alone)
BACKOFF_S = (0.2, 30.0)  # LISTEN reconnect: first and longest wait
LIVENESS_TIMEOUT_S = 5.0

# WebSocket close codes (4000-4999 are the application's).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SESSION_ENDED = 4401
CLOSE_REMOVED = 4403

_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class Sink(Protocol):
    """The part of a WebSocket the hub uses (aiohttp's WebSocketResponse)."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ..., drain: bool = ...) -> bool: ...


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Page:
    """Serialised events ``(seq, text)`` after a cursor, and the roster they were read with."""

    rows: list[tuple[int, str]]
    members: frozenset[bytes]


Reader = Callable[[bytes, str, int], Awaitable[Page]]


class Socket:
    """One client's WebSocket: its cursors and the single task that writes to it."""

    __slots__ = (
        "sink",
        "member_id",
        "token_hash",
        "expires_at",
        "cursors",
        "dirty",
        "outbox",
        "wake",
        "closing",
        "task",
        "unanswered",
    )

    def __init__(self, sink: Sink, session: FeedSession) -> None:
        self.sink = sink
        self.member_id = session.member_id
        self.token_hash = session.token_hash
        self.expires_at = session.expires_at
        self.cursors: dict[bytes, int] = {}  # group -> last seq sent
        self.dirty: set[bytes] = set()  # groups that may have something new
        self.outbox: deque[str] = deque()  # control messages, sent before events
        self.wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self.task: asyncio.Task[None] | None = None
        self.unanswered = 0  # messages sent over this socket and not yet answered

    def poke(self, group_id: bytes) -> None:
        self.dirty.add(group_id)
        self.wake.set()

    def say(self, message: dict[str, Any]) -> None:
        self.outbox.append(_dumps(message))
        self.wake.set()

    def close(self, code: int, reason: str, notice: dict[str, Any] | None = None) -> None:
        if self.closing is None:
            if notice is not None:
                self.say(notice)
            self.closing = (code, reason)
            self.wake.set()


class Feed:
    """One group's newest events, shared by the local sockets subscribed to it.

    ``_rows`` holds the contiguous seqs ``first..tail`` (first = tail + 1 when
    empty) as last read from the database. ``_fresh`` means no poke came since
    the last read started, so a socket already at ``tail`` has nothing to read.
    """

    __slots__ = (
        "group_id",
        "group_text",
        "sockets",
        "_read",
        "_rows",
        "_bytes",
        "_tail",
        "_members",
        "_generation",
        "_read_generation",
        "_more",
        "_reads",
        "_lock",
    )

    def __init__(self, group_id: bytes, read: Reader) -> None:
        self.group_id = group_id
        self.group_text = b32e(group_id)
        self.sockets: set[Socket] = set()
        self._read = read
        self._rows: deque[tuple[int, str]] = deque()
        self._bytes = 0
        self._tail: int | None = None
        self._members: frozenset[bytes] = frozenset()
        self._generation = 0
        self._read_generation = -1
        self._more = False
        self._reads = 0
        self._lock = asyncio.Lock()

    def poke(self, seq: int | None = None) -> None:
        """Something may be new (seq: the event a notification announced)."""
        if seq is None or self._tail is None or seq > self._tail:
            self._generation += 1
        for socket in self.sockets:
            if seq is None or socket.cursors.get(self.group_id, seq) < seq:
                socket.poke(self.group_id)

    async def after(self, cursor: int) -> Page:
        """Events after ``cursor`` (maybe not all of them: call until empty)."""
        while True:
            cached = self._cached_after(cursor)
            if cached is not None and (cached or self._fresh()):
                return Page(cached, self._members)
            if cached is None and self._tail is not None and cursor < self._tail:
                return await self.read_private(cursor)  # behind the cache: catch up alone
            reads = self._reads
            async with self._lock:
                if self._reads != reads:
                    continue  # another socket read while we waited: look again
                await self._read_shared(cursor)

    async def read_private(self, cursor: int) -> Page:
        """Straight from the database, bypassing (and not filling) the cache."""
        return await self._read(self.group_id, self.group_text, cursor)

    def _fresh(self) -> bool:
        return self._read_generation == self._generation and not self._more

    def _cached_after(self, cursor: int) -> list[tuple[int, str]] | None:
        """Cached events after ``cursor``; None if the cache can't answer for it."""
        if self._tail is None or cursor > self._tail:
            return None
        first = self._rows[0][0] if self._rows else self._tail + 1
        if cursor + 1 < first:
            return None
        return list(itertools.islice(self._rows, cursor + 1 - first, None))

    async def _read_shared(self, cursor: int) -> None:
        # Only called with cursor == tail (append) or with no usable cache
        # (tail unknown, or a cursor ahead of it: start over from the cursor).
        generation = self._generation
        page = await self._read(self.group_id, self.group_text, cursor)
        self.absorb(cursor, generation, page)

    def extend(self, seq: int, text: str) -> bool:
        """Append an event this instance just committed, if it is the cache's next one.

        Only the very next seq: the cache stays contiguous, so every roster
        change before it has been read (with the roster it brought) already.
        """
        if self._tail is None or seq != self._tail + 1 or self._more:
            return False
        self._keep([(seq, text)])
        self._tail = seq
        return True

    def _keep(self, rows: list[tuple[int, str]]) -> None:
        """Append rows to the cache, dropping the oldest past CACHE_ROWS or CACHE_BYTES."""
        for row in rows:
            self._rows.append(row)
            self._bytes += len(row[1])
        while len(self._rows) > CACHE_ROWS or (self._bytes > CACHE_BYTES and len(self._rows) > 1):
            self._bytes -= len(self._rows.popleft()[1])

    def stale(self, seq: int) -> bool:
        """Whether a notification of ``seq`` is news the hub should read ahead for this feed."""
        return self._tail is not None and seq > self._tail

    def mark(self) -> tuple[int | None, int]:
        """Where a read-ahead starts: the cache's tail and the poke generation."""
        return self._tail, self._generation

    def absorb(self, cursor: int, generation: int, page: Page) -> None:
        """Take in a page read after ``cursor`` (begun at poke ``generation``)."""
        self._reads += 1
        if self._tail != cursor:
            self._rows.clear()
            self._bytes = 0
        self._keep(page.rows)
        self._tail = page.rows[-1][0] if page.rows else cursor
        self._members = page.members
        self._read_generation = generation
        self._more = len(page.rows) >= READ_LIMIT


class Hub:
    """This instance's sockets, the feeds they read, and the LISTEN connection."""

    def __init__(self, pool: Pool, database_url: str | None, clock: Clock) -> None:
        self._pool = pool
        self._url = database_url
        self._clock = clock
        self._feeds: dict[bytes, Feed] = {}
        self._by_member: dict[bytes, set[Socket]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self._stale: dict[Feed, int] = {}  # feeds a notification announced news for: newest seq
        self._refresh = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------

    async def start(self, *, wait_s: float = 10.0) -> None:
        """Start listening; returns once LISTEN is active (or after ``wait_s``)."""
        if self._url is None:
            raise RuntimeError("the realtime hub needs settings.database_url")
        self._tasks = [
            asyncio.create_task(self._listen_forever(self._url)),
            asyncio.create_task(self._tick_forever()),
            asyncio.create_task(self._read_ahead_forever()),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait_s)

    async def close_all(self) -> None:
        """Close every socket (server shutdown): clients reconnect elsewhere and resume."""
        sockets = [s for group in self._by_member.values() for s in group]
        for socket in sockets:
            socket.close(CLOSE_GOING_AWAY, "server shutting down")
        tasks = [s.task for s in sockets if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    # --- sockets ---------------------------------------------------------------

    def attach(self, sink: Sink, session: FeedSession) -> Socket:
        socket = Socket(sink, session)
        self._by_member.setdefault(socket.member_id, set()).add(socket)
        socket.task = asyncio.create_task(self._write_forever(socket))
        return socket

    async def detach(self, socket: Socket) -> None:
        """Forget a socket whose connection ended; waits for its writer to stop."""
        for group_id in list(socket.cursors):
            self._unsubscribe(socket, group_id)
        members = self._by_member.get(socket.member_id)
        if members is not None:
            members.discard(socket)
            if not members:
                del self._by_member[socket.member_id]
        socket.close(CLOSE_NORMAL, "")
        if socket.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await socket.task

    def subscribe(self, socket: Socket, cursors: dict[bytes, int]) -> dict[bytes, int]:
        """Start streaming groups after the given cursors (the caller checked access).

        A group this socket already streams keeps its position: the stream is
        never rewound or skipped under a writer that is sending it. Returns
        the cursor each group now streams from.
        """
        effective: dict[bytes, int] = {}
        for group_id, cursor in cursors.items():
            if group_id not in socket.cursors:
                socket.cursors[group_id] = cursor
                feed = self._feeds.get(group_id)
                if feed is None:
                    feed = self._feeds[group_id] = Feed(group_id, self._read)
                feed.sockets.add(socket)
            effective[group_id] = socket.cursors[group_id]
            socket.dirty.add(group_id)
        socket.wake.set()
        return effective

    def unsubscribe(self, socket: Socket, group_id: bytes) -> None:
        self._unsubscribe(socket, group_id)

    def close_member_sockets(self, member_id: bytes) -> None:
        """Close every local socket of a member (expulsion, revocation)."""
        for socket in list(self._by_member.get(member_id, ())):
            socket.close(CLOSE_REMOVED, "no longer a member")

    def close_group_member(self, group_id: bytes, member_id: bytes) -> None:
        """Stop streaming a group to a member who left it, on this instance at once.

        Other instances stop as soon as they next read the group (the roster
        comes with every read), which is before any later event reaches them.
        """
        for socket in list(self._by_member.get(member_id, ())):
            if group_id in socket.cursors:
                self._refuse(socket, group_id)

    def committed(self, rows: list[store.EventRow]) -> None:
        """Events this instance just committed: into the feeds' caches, and out to the sockets."""
        for row in rows:
            feed = self._feeds.get(row.group_id)
            if feed is not None and feed.extend(row.seq, _wire_text(row, feed.group_text)):
                feed.poke(row.seq)

    def poke_all(self) -> None:
        for feed in list(self._feeds.values()):
            feed.poke()

    def sockets_count(self) -> int:
        return sum(len(s) for s in self._by_member.values())

    def _unsubscribe(self, socket: Socket, group_id: bytes) -> None:
        socket.cursors.pop(group_id, None)
        socket.dirty.discard(group_id)
        feed = self._feeds.get(group_id)
        if feed is not None:
            feed.sockets.discard(socket)
            if not feed.sockets:
                del self._feeds[group_id]

    def _refuse(self, socket: Socket, group_id: bytes) -> None:
        self._unsubscribe(socket, group_id)
        socket.say(not_found_notice(b32e(group_id)))

    # --- writing -----------------------------------------------------------------

    async def _write_forever(self, socket: Socket) -> None:
        try:
            while True:
                await socket.wake.wait()
                socket.wake.clear()
                while socket.outbox:
                    await self._send(socket, socket.outbox.popleft())
                if socket.closing is not None or socket.sink.closed:
                    break
                for group_id in list(socket.dirty):
                    socket.dirty.discard(group_id)
                    await self._deliver(socket, group_id)
                    if socket.closing is not None:
                        socket.wake.set()  # send the notice, then close
                        break
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stopped reading; it resumes from its cursor
        except Exception as exc:
            log.error("socket writer failed: %s", type(exc).__name__)
        finally:
            code, reason = socket.closing or (CLOSE_NORMAL, "")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    socket.sink.close(code=code, message=reason.encode()), SEND_TIMEOUT_S
                )

    async def _deliver(self, socket: Socket, group_id: bytes) -> None:
        """Send everything after the socket's cursor in this group, in order."""
        while group_id in socket.cursors and socket.closing is None:
            feed = self._feeds.get(group_id)
            if feed is None:
                return
            cursor = socket.cursors[group_id]
            try:
                page = await feed.after(cursor)
                if socket.member_id not in page.members:
                    # The cached roster may predate the member's joining: ask the database.
                    page = await feed.read_private(cursor)
            except _DB_ERRORS as exc:
                log.warning("reading group events failed: %s", type(exc).__name__)
                socket.dirty.add(group_id)  # the next poke (at most SAFETY_POKE_S) retries
                return
            if socket.member_id not in page.members:
                self._refuse(socket, group_id)
                return
            if not page.rows:
                return
            if self._clock() >= socket.expires_at:
                socket.close(CLOSE_SESSION_ENDED, "session expired", session_notice())
                return
            for last, text in frames(page.rows):
                if socket.cursors.get(group_id) != cursor:
                    return  # unsubscribed meanwhile
                await self._send(socket, text)
                socket.cursors[group_id] = cursor = last

    @staticmethod
    async def _send(socket: Socket, text: str) -> None:
        await asyncio.wait_for(socket.sink.send_str(text), SEND_TIMEOUT_S)

    async def _read(self, group_id: bytes, group_text: str, cursor: int) -> Page:
        return (await self._read_many([(group_id, cursor)]))[group_id]

    async def _read_many(self, cursors: list[tuple[bytes, int]]) -> dict[bytes, Page]:
        async with self._pool.acquire() as conn:
            pages = await store.event_pages(conn, cursors, READ_LIMIT)
        result = {}
        for group_id, page in pages.items():
            group_text = b32e(group_id)
            rows = [(row.seq, _wire_text(row, group_text)) for row in page.events]
            result[group_id] = Page(rows, page.members)
        return result

    # --- LISTEN and timers ----------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # A payload names one or more "<group>:<seq>" entries, space-separated.
        for entry in payload.split():
            group_text, _, seq_text = entry.partition(":")
            try:
                group_id, seq = b32d(group_text), int(seq_text)
            except ValueError:
                log.warning("ignoring a malformed notification")
                continue
            feed = self._feeds.get(group_id)
            if feed is None:
                continue
            if feed.stale(seq):
                self._stale[feed] = max(seq, self._stale.get(feed, 0))
                self._refresh.set()
            else:
                feed.poke(seq)

    async def _read_ahead_forever(self) -> None:
        """Read every announced feed's news in one query, then poke its sockets.

        Without this each feed would read on its own when its sockets wake:
        one query per group per notification. A feed that moved meanwhile (a
        socket read it) keeps what it has; its sockets are poked all the same
        and read as they would have.
        """
        while True:
            await self._refresh.wait()
            self._refresh.clear()
            announced = {
                f: seq for f, seq in self._stale.items() if self._feeds.get(f.group_id) is f
            }
            self._stale.clear()
            marks = []
            for feed, seq in announced.items():
                if feed.stale(seq):
                    marks.append((feed, *feed.mark()))
                else:
                    feed.poke(seq)  # this instance committed it and cached it meanwhile
            wanted = [(f.group_id, tail) for f, tail, _ in marks if tail is not None]
            pages: dict[bytes, Page] = {}
            if wanted:
                try:
                    pages = await self._read_many(wanted)
                except _DB_ERRORS as exc:
                    log.warning("reading group events failed: %s", type(exc).__name__)
            for feed, tail, generation in marks:
                page = pages.get(feed.group_id)
                if page is not None and tail is not None and feed.mark()[0] == tail:
                    feed.absorb(tail, generation, page)
                    feed.poke(feed.mark()[0])  # news, already read: the cache stays fresh
                elif not feed.stale(announced[feed]):
                    feed.poke(announced[feed])  # the cache moved past it meanwhile
                else:
                    feed.poke()

    async def _listen_forever(self, url: str) -> None:
        delay = BACKOFF_S[0]
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(
                    url, server_settings={"application_name": "spokes-realtime"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(store.CHANNEL, self._on_notify)
                self._listening.set()
                delay = BACKOFF_S[0]
                log.info("listening for events")
                # Anything committed while we were not listening is read now.
                self.poke_all()
                await self._watch(conn, lost)
            except Exception as exc:  # whatever broke it, the listener must come back
                log.warning(
                    "event listener connection lost (%s); reconnecting in %.1fs",
                    type(exc).__name__,
                    delay,
                )
            finally:
                self._listening.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_S[1])

    @staticmethod
    async def _watch(conn: Any, lost: asyncio.Event) -> None:
        """Return when the LISTEN connection is gone (checked every SAFETY_POKE_S)."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), SAFETY_POKE_S)
            if not lost.is_set():
                # A half-open TCP connection never reports itself; ask.
                await asyncio.wait_for(conn.execute("SELECT 1"), LIVENESS_TIMEOUT_S)
        raise ConnectionResetError("the LISTEN connection closed")

    async def _tick_forever(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(SAFETY_POKE_S)
            self.poke_all()
            if time.monotonic() - last_check >= SESSION_CHECK_S:
                last_check = time.monotonic()
                try:
                    await self.check_sessions()
                except _DB_ERRORS as exc:
                    log.warning("checking sessions failed: %s", type(exc).__name__)

    async def check_sessions(self) -> None:
        """Close sockets whose session expired or was revoked."""
        sockets = [s for group in self._by_member.values() for s in group]
        if not sockets:
            return
        now = self._clock()
        async with self._pool.acquire() as conn:
            live = await store.live_sessions(conn, {s.token_hash for s in sockets}, now)
        for socket in sockets:
            if socket.token_hash not in live or now >= socket.expires_at:
                socket.close(CLOSE_SESSION_ENDED, "session ended", session_notice())


def _wire_text(row: store.EventRow, group_text: str) -> str:
    return _dumps({"type": "event", **event_wire(row, group_text)})


def frames(rows: list[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Serialised events as WebSocket frames: one event alone, several as a batch.

    A socket that is behind (a burst, a slow reader, a resume) gets its events
    a batch per frame, up to FRAME_BYTES each, instead of a frame (and a
    system call) per event. Yields each frame's last seq with its text.
    """
    start = 0
    while start < len(rows):
        end, size = start + 1, len(rows[start][1])
        while end < len(rows) and size + len(rows[end][1]) + 1 <= FRAME_BYTES:
            size += len(rows[end][1]) + 1
            end += 1
        if end - start == 1:
            yield rows[start]
        else:
            texts = ",".join(text for _, text in rows[start:end])
            yield rows[end - 1][0], '{"type":"batch","events":[' + texts + "]}"
        start = end


def not_found_notice(group_text: str) -> dict[str, Any]:
    """The one answer for a group that does not exist, or is not the member's."""
    return {"type": "error", "code": "not_found", "group": group_text, "message": "no such group"}


def session_notice() -> dict[str, Any]:
    return {
        "type": "error",
        "code": "session_expired",
        "message": "your session has ended: log in again",
    }
