"""A group's feed of events for this instance's sockets, and the sockets themselves.

A :class:`Feed` caches one group's newest events (already serialised) and
reads new ones once for all of its local sockets; a socket that is behind the
cache reads on its own. Every read also brings the group's roster, so a
member removed from a group stops receiving it. A :class:`Socket` is one
client's WebSocket: its cursors, its control messages, and the state its
single writer (server/realtime/hub.py) works from.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from crypto.encoding import b32e
from server.errors import ErrorCode
from server.services.events import FeedSession

READ_LIMIT = 200  # events per database read
CACHE_ROWS = 256  # per group
CACHE_BYTES = 1 << 20  # per group, of serialised events
FRAME_BYTES = 256 * 1024  # a batch frame's events, serialised (one larger event goes alone)


class Sink(Protocol):
    """The part of a WebSocket the hub uses (aiohttp's WebSocketResponse)."""

    @property
    def closed(self) -> bool: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ..., drain: bool = ...) -> bool: ...


def dumps(value: dict[str, Any]) -> str:
    """Compact JSON, as every frame is sent."""
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
        self.outbox.append(dumps(message))
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
    return {
        "type": "error",
        "code": ErrorCode.NOT_FOUND.value,
        "group": group_text,
        "message": "no such group",
    }


def session_notice() -> dict[str, Any]:
    return {
        "type": "error",
        "code": ErrorCode.SESSION_EXPIRED.value,
        "message": "your session has ended: log in again",
    }
