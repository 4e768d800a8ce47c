"""SQL for the per-group event log and the server's index of group rosters.

The log's rule: within one group, events are numbered 1, 2, 3, ... with no
gaps, and they become visible in that order. Readers rely on it: a reader
that sees seq N has seen every seq below N, so a cursor (the last seq a
client has) is all it takes to resume exactly where it left off.

Like every store module, functions take a connection inside the caller's
transaction and return frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class GroupSummary:
    group_id: bytes
    kind: str
    level: int
    members: int
    last_seq: int


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
    conn: Connection, group_id: bytes, after_seq: int, limit: int
) -> list[EventRow]:
    """The group's events with seq > after_seq, oldest first, at most ``limit``."""
    rows = await conn.fetch(
        """SELECT seq, kind, sender, body, created_at FROM group_events
           WHERE group_id = $1 AND seq > $2 ORDER BY seq LIMIT $3""",
        group_id,
        after_seq,
        limit,
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


async def add_group_member(
    conn: Connection, group_id: bytes, member_id: bytes, at: datetime
) -> bool:
    """Index ``member_id`` as in the group; False if they already were."""
    status = await conn.execute(
        """INSERT INTO group_members (group_id, member_id, added_at) VALUES ($1, $2, $3)
           ON CONFLICT (group_id, member_id) DO NOTHING""",
        group_id,
        member_id,
        at,
    )
    return bool(status == "INSERT 0 1")


async def remove_group_member(conn: Connection, group_id: bytes, member_id: bytes) -> bool:
    """Drop ``member_id`` from the group's index; False if they were not in it."""
    status = await conn.execute(
        "DELETE FROM group_members WHERE group_id = $1 AND member_id = $2", group_id, member_id
    )
    return bool(status == "DELETE 1")


async def groups_of(conn: Connection, member_id: bytes) -> list[bytes]:
    rows = await conn.fetch(
        "SELECT group_id FROM group_members WHERE member_id = $1 ORDER BY added_at, group_id",
        member_id,
    )
    return [r["group_id"] for r in rows]


async def is_group_member(conn: Connection, group_id: bytes, member_id: bytes) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM group_members WHERE group_id = $1 AND member_id = $2",
            group_id,
            member_id,
        )
    )


async def group_summaries(conn: Connection, member_id: bytes) -> list[GroupSummary]:
    """The caller's groups with their member counts and newest seq."""
    rows = await conn.fetch(
        """SELECT g.group_id, g.kind, g.level, g.last_seq,
                  (SELECT count(*) FROM group_members c WHERE c.group_id = g.group_id) AS members
           FROM group_members gm JOIN groups g ON g.group_id = gm.group_id
           WHERE gm.member_id = $1 ORDER BY g.level, gm.added_at, g.group_id""",
        member_id,
    )
    return [
        GroupSummary(r["group_id"], r["kind"], r["level"], int(r["members"]), int(r["last_seq"]))
        for r in rows
    ]


async def live_sessions(
    conn: Connection, token_hashes: Iterable[bytes], now: datetime
) -> set[bytes]:
    """Those of ``token_hashes`` whose session is unexpired and unrevoked.

    Used by the realtime hub to close sockets of sessions that ended; one
    query for every socket of an instance.
    """
    rows = await conn.fetch(
        """SELECT s.token_hash FROM sessions s JOIN members m ON m.member_id = s.member_id
           WHERE s.token_hash = ANY($1::bytea[]) AND s.expires_at > $2
             AND s.revoked_at IS NULL AND m.revoked_at IS NULL""",
        list(token_hashes),
        now,
    )
    return {r["token_hash"] for r in rows}
