"""SQL for ``group_events``: each group's event log, and the NOTIFY that announces it.

The log's rule: within one group, events are numbered 1, 2, 3, ... with no
gaps, and they become visible in that order. Readers rely on it: a reader
that sees seq N has seen every seq below N, so a cursor (the last seq a
client has) is all it takes to resume exactly where it left off.

The log's counter (``groups.last_seq``) moves in the same statement that
appends, and every read of a page comes with the group's members from
``group_members``, read in the same snapshot. The LISTEN side of the
announcement (a connection of its own, not the pool's) is here too, so that
no other module names the channel.

Like every store module, functions take a connection inside the caller's
transaction and return frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from crypto.encoding import b32e
from server.store.db import Connection

# The NOTIFY channel; its payload is "<group id b32>:<seq>".
CHANNEL = "spokes_events"

KINDS = frozenset({"roster", "epoch", "message", "profile", "motion", "signature"})
MAX_BODY_BYTES = 256 * 1024


class GroupNotFound(LookupError):
    """append_event was given a group that does not exist."""


@dataclass(frozen=True)
class EventRow:
    group_id: bytes
    seq: int
    kind: str
    sender: bytes | None
    body: bytes
    created_at: datetime


@dataclass(frozen=True)
class EventPage:
    """Events after a cursor, and the group's roster as of the same snapshot."""

    members: frozenset[bytes]
    events: list[EventRow]


def notify_payload(group_id: bytes, seq: int) -> str:
    return f"{b32e(group_id)}:{seq}"


async def append_event(
    conn: Connection,
    group_id: bytes,
    kind: str,
    sender: bytes | None,
    body: bytes,
    now: datetime,
) -> int:
    """Append one event to the group's log and announce it; returns its seq.

    Runs inside the caller's transaction. The UPDATE takes the group row's
    lock and holds it until that transaction ends, so concurrent writers of
    one group queue behind each other: each gets last_seq + 1 of a committed
    predecessor, seqs have no gaps (a rolled-back writer's increment is rolled
    back with it), and seq N commits before seq N+1 can even be allocated.
    pg_notify is transactional: listeners hear of the event only once it has
    committed, never of one that rolls back.
    """
    seq = await conn.fetchval(
        """WITH s AS (
               UPDATE groups SET last_seq = last_seq + 1 WHERE group_id = $1 RETURNING last_seq),
           e AS (
               INSERT INTO group_events (group_id, seq, kind, sender, body, created_at)
               SELECT $1, last_seq, $2, $3, $4, $5 FROM s RETURNING seq)
           SELECT seq, pg_notify($6, $7 || ':' || seq::text) FROM e""",
        group_id,
        kind,
        sender,
        body,
        now,
        CHANNEL,
        b32e(group_id),
    )
    if seq is None:
        raise GroupNotFound("no such group")
    return int(seq)


def _event(group_id: bytes, row: object) -> EventRow:
    return EventRow(
        group_id,
        row["seq"],  # type: ignore[index]
        row["kind"],  # type: ignore[index]
        row["sender"],  # type: ignore[index]
        row["body"],  # type: ignore[index]
        row["created_at"],  # type: ignore[index]
    )


async def events_since(
    conn: Connection, group_id: bytes, after_seq: int, limit: int, until: int | None = None
) -> list[EventRow]:
    """The group's events with seq > after_seq (and <= ``until`` if given), oldest first,
    at most ``limit``."""
    rows = await conn.fetch(
        """SELECT seq, kind, sender, body, created_at FROM group_events
           WHERE group_id = $1 AND seq > $2 AND ($4::bigint IS NULL OR seq <= $4)
           ORDER BY seq LIMIT $3""",
        group_id,
        after_seq,
        limit,
        until,
    )
    return [_event(group_id, r) for r in rows]


async def event_page(conn: Connection, group_id: bytes, after_seq: int, limit: int) -> EventPage:
    """events_since plus the group's members, read in one statement (see event_pages)."""
    return (await event_pages(conn, [(group_id, after_seq)], limit))[group_id]


async def event_pages(
    conn: Connection, cursors: Sequence[tuple[bytes, int]], limit: int
) -> dict[bytes, EventPage]:
    """For each (group, after_seq): up to ``limit`` events after it, and the group's members.

    One statement means one snapshot: a member removed before an event was
    appended is already missing from ``members`` of any page that holds it.
    """
    rows = await conn.fetch(
        """SELECT c.g, m.ids, e.seq, e.kind, e.sender, e.body, e.created_at
           FROM unnest($1::bytea[], $2::bigint[]) AS c(g, after)
           CROSS JOIN LATERAL (
               SELECT coalesce(array_agg(member_id), '{}') AS ids
               FROM group_members WHERE group_id = c.g) m
           LEFT JOIN LATERAL (
               SELECT seq, kind, sender, body, created_at FROM group_events
               WHERE group_id = c.g AND seq > c.after ORDER BY seq LIMIT $3) e ON true
           ORDER BY c.g, e.seq""",
        [g for g, _ in cursors],
        [after for _, after in cursors],
        limit,
    )
    members: dict[bytes, frozenset[bytes]] = {}
    events: dict[bytes, list[EventRow]] = {}
    for r in rows:
        group_id = bytes(r["g"])
        if group_id not in members:
            members[group_id] = frozenset(bytes(m) for m in r["ids"])
            events[group_id] = []
        if r["seq"] is not None:
            events[group_id].append(_event(group_id, r))
    return {g: EventPage(members.get(g, frozenset()), events.get(g, [])) for g, _ in cursors}


async def listen(
    url: str,
    on_notify: Callable[[Any, int, str, str], None],
    on_lost: Callable[[Any], None],
) -> Connection:
    """A connection of its own LISTENing on CHANNEL; the caller terminates it.

    Not from the pool: it lives as long as the realtime hub, and a pooled
    connection must never keep a LISTEN (see db._keep_session). ``on_lost``
    is called if the connection closes.
    """
    conn = await asyncpg.connect(url, server_settings={"application_name": "spokes-realtime"})
    try:
        conn.add_termination_listener(on_lost)
        await conn.add_listener(CHANNEL, on_notify)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def ping(conn: Connection) -> None:
    """A round trip on ``conn``: a half-open TCP connection never reports itself."""
    await conn.execute("SELECT 1")
