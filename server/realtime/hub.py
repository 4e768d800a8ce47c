"""Live delivery: one LISTEN connection per server instance, one writer per socket.

The rule: the database is the only source of events. A notification, a
reconnect or a timer only *pokes*; a poked socket's writer reads what follows
its cursor from ``group_events`` and sends it in seq order, moving the cursor
as it goes. So delivery is exactly once and in order per group however
notifications are coalesced, duplicated, delayed or lost, and an instance
that dies loses nothing: the client resumes from its cursor elsewhere.

To keep the database out of the hot path, each group with local subscribers
has a feed (server/realtime/feed.py) that caches its newest events and reads
new ones once for all of its sockets. Every read also fetches the group's
roster, so a member removed from a group stops receiving it on every
instance, not only on the one that removed them. The hub only reads, one
statement at a time on the pool, outside any transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg

from crypto.encoding import b32d, b32e
from server.clock import Clock
from server.errors import DATABASE_OUTAGE
from server.realtime.feed import (
    READ_LIMIT,
    Feed,
    Page,
    Sink,
    Socket,
    dumps,
    frames,
    not_found_notice,
    session_notice,
)
from server.services.events import FeedSession, event_wire
from server.store import events as store
from server.store import sessions as session_store
from server.store.db import Pool
from server.supervisor import Supervisor

log = logging.getLogger("spokes.realtime")

SAFETY_POKE_S = 10.0  # re-read every group now and then, in case a NOTIFY was lost
SESSION_CHECK_S = 60.0  # how soon a revoked session's sockets close
SEND_TIMEOUT_S = 30.0  # a client that won't read for this long is dropped
BACKOFF_S = (0.1, 0.5)  # LISTEN reconnect: first and longest wait
LIVENESS_TIMEOUT_S = 5.0

# WebSocket close codes (4000-4999 are the application's).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SESSION_ENDED = 4401
CLOSE_REMOVED = 4403

# An outage, or any query of the feed that failed: the next poke reads again.
_DB_ERRORS = (*DATABASE_OUTAGE, asyncpg.PostgresError)


class Hub:
    """This instance's sockets, the feeds they read, and the LISTEN connection."""

    def __init__(
        self,
        pool: Pool,
        database_url: str | None,
        clock: Clock,
        *,
        on_notify_lag: Callable[[float], None] | None = None,
    ) -> None:
        self._pool = pool
        self._on_notify_lag = on_notify_lag  # seconds from an event's commit to its read here
        self._url = database_url
        self._clock = clock
        self._feeds: dict[bytes, Feed] = {}
        self._by_member: dict[bytes, set[Socket]] = {}
        self._supervisor = Supervisor()
        self._listening = asyncio.Event()
        self._stale: dict[Feed, int] = {}  # feeds a notification announced news for: newest seq
        self._refresh = asyncio.Event()
        # Groups this instance's message writer is committing to (batches in flight), and
        # news announced for them meanwhile, read (if still news) once the batch ended.
        self._committing: Counter[bytes] = Counter()
        self._deferred: dict[Feed, int] = {}

    # --- lifecycle -----------------------------------------------------------

    async def start(self, *, wait_s: float = 10.0) -> None:
        """Start listening; returns once LISTEN is active (or after ``wait_s``)."""
        if self._url is None:
            raise RuntimeError("the realtime hub needs settings.database_url")
        url = self._url
        self._supervisor.start("hub.listen", lambda: self._listen_forever(url))
        self._supervisor.start("hub.tick", self._tick_forever)
        self._supervisor.start("hub.read_ahead", self._read_ahead_forever)
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
        await self._supervisor.stop()

    @property
    def crashes(self) -> dict[str, int]:
        """Background task name -> how often it crashed and was restarted."""
        return dict(self._supervisor.crashes)

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

    def committing(self, groups: frozenset[bytes]) -> None:
        """The message writer begins a batch for ``groups``: news announced for them until it
        ended is most likely its own, which ``committed`` puts in the caches; reading it from
        the database first (the notification often comes before the commit's answer) is
        work for nothing."""
        self._committing.update(groups)

    def commit_ended(self, groups: frozenset[bytes]) -> None:
        """The batch for ``groups`` committed (and ``committed`` ran) or failed: the sockets
        of a group announced meanwhile are poked, and read what is not cached yet (another
        instance's news) themselves. Not deferred again: a group this instance keeps busy
        must not starve them."""
        self._committing.subtract(groups)
        for group_id in groups:
            if self._committing[group_id] <= 0:
                del self._committing[group_id]
        for feed in [f for f in self._deferred if f.group_id not in self._committing]:
            feed.poke(self._deferred.pop(feed))

    def safety_poke(self) -> None:
        """In case a NOTIFY was lost (every SAFETY_POKE_S, and when LISTEN is back):
        every cached feed's news in one read-ahead query.

        Poking every feed instead would wake every socket and have each feed
        read on its own: at 1,000 sockets in 100 groups, a 100–500 ms stall of
        delivery (bench/messages.py). Here one query asks for whatever follows
        each feed's tail; only a feed that had news, and sockets behind its
        tail, are poked. A feed with nothing cached yet is poked at once.
        """
        for feed in list(self._feeds.values()):
            tail = feed.mark()[0]
            if tail is None:
                feed.poke()
            else:
                self._stale[feed] = max(tail + 1, self._stale.get(feed, 0))
        self._refresh.set()

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
        # asyncio.timeout, not wait_for: no task per frame (a frame per socket per event
        # is the hottest path of delivery), and it raises TimeoutError alike.
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await socket.sink.send_str(text)

    async def _read(self, group_id: bytes, group_text: str, cursor: int) -> Page:
        return (await self._read_many([(group_id, cursor)]))[group_id]

    async def _read_many(
        self, cursors: list[tuple[bytes, int]], *, announced: bool = False
    ) -> dict[bytes, Page]:
        async with self._pool.acquire() as conn:
            pages = await store.event_pages(conn, cursors, READ_LIMIT)
        if announced and self._on_notify_lag is not None:
            now = self._clock()
            for page in pages.values():
                if page.events:  # its newest event: committed by another instance's clock
                    self._on_notify_lag((now - page.events[-1].created_at).total_seconds())
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
            if entry.startswith(session_store.MEMBER_GONE_PREFIX):
                self._member_gone(entry.removeprefix(session_store.MEMBER_GONE_PREFIX))
                continue
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

    def _member_gone(self, member_text: str) -> None:
        """A member's key was revoked (expelled, revoked, self-revoked): their sockets close now."""
        try:
            member_id = b32d(member_text)
        except ValueError:
            log.warning("ignoring a malformed notification")
            return
        self.close_member_sockets(member_id)

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
            for feed in [f for f in announced if f.group_id in self._committing]:
                seq = announced.pop(feed)
                self._deferred[feed] = max(seq, self._deferred.get(feed, 0))
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
                    pages = await self._read_many(wanted, announced=True)
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
                lost = asyncio.Event()
                conn = await store.listen(url, self._on_notify, _setter(lost))
                self._listening.set()
                delay = BACKOFF_S[0]
                log.info("listening for events")
                # Anything committed while we were not listening is read now.
                self.safety_poke()
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
                await asyncio.wait_for(store.ping(conn), LIVENESS_TIMEOUT_S)
        raise ConnectionResetError("the LISTEN connection closed")

    async def _tick_forever(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(SAFETY_POKE_S)
            self.safety_poke()
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
            live = await session_store.live_sessions(conn, {s.token_hash for s in sockets}, now)
        for socket in sockets:
            if socket.token_hash not in live or now >= socket.expires_at:
                socket.close(CLOSE_SESSION_ENDED, "session ended", session_notice())


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    """A callback that sets ``event``, whatever it is called with."""
    return lambda _: event.set()


def _wire_text(row: store.EventRow, group_text: str) -> str:
    return dumps({"type": "event", **event_wire(row, group_text)})
