"""SQL for the ``messages`` table and the batch statements that append messages (group commit).

``messages`` holds each (group, epoch, sender, counter) once: the primary key
is what refuses a replayed counter. A batch's statements also lock and move
its groups' rows and append to ``group_events``, in one statement each.

One batch is one transaction: the senders' sessions, then the groups' rows
locked in group-id order (so two batches, or a batch and a roster change,
can never wait on each other in a cycle), then the membership and counter
checks under those locks, then one statement that appends every accepted
message, moves each group's counters and NOTIFYs once per batch.

Like every store module: functions take the caller's connection and return
frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection

# A NOTIFY payload must stay under 8,000 bytes; entries are "<group b32>:<seq>".
NOTIFY_PAYLOAD_BYTES = 7000


@dataclass(frozen=True)
class LockedGroup:
    """What a message needs of its group, read under the row's lock."""

    group_id: bytes
    network_id: bytes
    epoch: int
    rekey_needed: bool
    epoch_started_at: datetime | None
    epoch_messages: int
    last_seq: int


@dataclass(frozen=True)
class SenderCheck:
    """For one message: is its session live, its sender in the group, its counter used?"""

    live: bool  # the session exists and neither it nor its member is revoked
    expires_at: datetime | None
    in_group: bool
    used: bool
    # When used: the event seq and body stored under that counter (None if gone).
    stored_seq: int | None = None
    stored_body: bytes | None = None


@dataclass(frozen=True)
class NewMessage:
    group_id: bytes
    seq: int
    epoch: int
    sender: bytes
    counter: int
    body: bytes


async def lock_groups(conn: Connection, group_ids: Sequence[bytes]) -> dict[bytes, LockedGroup]:
    """The groups' rows, locked in group-id order until the transaction ends."""
    rows = await conn.fetch(
        """SELECT group_id, network_id, epoch, rekey_needed, epoch_started_at, epoch_messages,
                  last_seq
           FROM groups WHERE group_id = ANY($1::bytea[]) ORDER BY group_id FOR UPDATE""",
        sorted(set(group_ids)),
    )
    return {bytes(r["group_id"]): LockedGroup(**dict(r)) for r in rows}


async def check_senders(
    conn: Connection, wanted: Sequence[tuple[bytes, bytes, bytes, int, int]]
) -> list[SenderCheck]:
    """For each (token hash, group, member, epoch, counter), in order: see SenderCheck.

    A used counter comes with what is stored under it, so that a byte-identical
    resend (its answer was lost) can be answered with the stored message.

    Run after lock_groups, so that this statement's snapshot already holds
    every roster change and message committed before the locks were granted.
    """
    if not wanted:
        return []
    tokens, groups, members, epochs, counters = (list(c) for c in zip(*wanted, strict=True))
    rows = await conn.fetch(
        """SELECT i.n, s.expires_at,
                  (s.token_hash IS NOT NULL AND s.revoked_at IS NULL AND m.revoked_at IS NULL
                   AND s.member_id = i.m) AS live,
                  EXISTS (SELECT 1 FROM group_members gm
                          WHERE gm.group_id = i.g AND gm.member_id = i.m) AS in_group,
                  x.group_id IS NOT NULL AS used, x.event_seq, ev.body
           FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[], $5::bigint[])
                WITH ORDINALITY AS i(t, g, m, e, c, n)
           LEFT JOIN sessions s ON s.token_hash = i.t
           LEFT JOIN members m ON m.member_id = s.member_id
           LEFT JOIN messages x
                  ON x.group_id = i.g AND x.epoch = i.e AND x.sender = i.m AND x.counter = i.c
           LEFT JOIN group_events ev ON ev.group_id = x.group_id AND ev.seq = x.event_seq
           ORDER BY i.n""",
        tokens,
        groups,
        members,
        epochs,
        counters,
    )
    return [
        SenderCheck(
            bool(r["live"]),
            r["expires_at"],
            r["in_group"],
            r["used"],
            r["event_seq"],
            None if r["body"] is None else bytes(r["body"]),
        )
        for r in rows
    ]


async def append_messages(
    conn: Connection,
    messages: Sequence[NewMessage],
    now: datetime,
    channel: str,
    notify: Sequence[str],
) -> None:
    """Append the batch's messages as their groups' next events, and announce them.

    The caller numbered them from each locked group's last_seq; the groups'
    last_seq and epoch_messages move to match in the same statement.
    """
    if not messages:
        return
    counts: dict[bytes, tuple[int, int]] = {}
    for m in messages:
        last, count = counts.get(m.group_id, (0, 0))
        counts[m.group_id] = (max(last, m.seq), count + 1)
    await conn.execute(
        """WITH i AS (
               SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bytea[],
                                    $5::bigint[], $6::bytea[]) AS i(g, seq, e, s, c, body)),
           m AS (
               INSERT INTO messages (group_id, epoch, sender, counter, event_seq)
               SELECT g, e, s, c, seq FROM i),
           ev AS (
               INSERT INTO group_events (group_id, seq, kind, sender, body, created_at)
               SELECT g, seq, 'message', s, body, $7 FROM i),
           u AS (
               UPDATE groups SET last_seq = x.last, epoch_messages = epoch_messages + x.n
               FROM unnest($8::bytea[], $9::bigint[], $10::bigint[]) AS x(g, last, n)
               WHERE groups.group_id = x.g)
           SELECT pg_notify($11, p) FROM unnest($12::text[]) AS p""",
        [m.group_id for m in messages],
        [m.seq for m in messages],
        [m.epoch for m in messages],
        [m.sender for m in messages],
        [m.counter for m in messages],
        [m.body for m in messages],
        now,
        list(counts),
        [last for last, _ in counts.values()],
        [n for _, n in counts.values()],
        channel,
        list(notify),
    )


def notify_payloads(entries: Sequence[str]) -> list[str]:
    """Join ``<group>:<seq>`` entries into as few NOTIFY payloads as fit."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for entry in entries:
        if current and size + len(entry) + 1 > NOTIFY_PAYLOAD_BYTES:
            payloads.append(" ".join(current))
            current, size = [], 0
        current.append(entry)
        size += len(entry) + 1
    if current:
        payloads.append(" ".join(current))
    return payloads
