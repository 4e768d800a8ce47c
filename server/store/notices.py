"""SQL for ``mail_addresses`` and ``mail_notices``: sealed addresses and the mail outbox.

A notice row exists only for a member with an address (its foreign key, with
ON DELETE CASCADE: clearing the address takes the member's pending notices
with it), so every insert here selects from ``mail_addresses`` and writes
nothing for the others. The inserts run inside the caller's transaction: a
notice exists if and only if what it tells of committed.

Concurrency: ``insert_activity`` locks the opted-in members' address rows in
member-id order (``FOR NO KEY UPDATE OF a``: a notice's foreign-key check,
which only shares the key, does not wait for it) before it moves
``activity_at``, so two batches on two instances send one member one
activity notice an hour, not two; the second waits for the first's commit
and then finds the hour taken.
Its callers have locked their group rows before it, always, so the order of
locks is the same everywhere (groups, then addresses) and no cycle forms.
``claim_due`` takes due rows with ``FOR UPDATE SKIP LOCKED`` and moves them
past the lease in the same statement, so two workers never claim one notice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection, Executor


@dataclass(frozen=True)
class DueNotice:
    """A claimed notice, with its member's sealed address."""

    notice_id: int
    member_id: bytes
    kind: str
    attempts: int  # counting the one this claim starts
    created_at: datetime
    sealed: bytes


def _count(status: str) -> int:
    return int(str(status).rsplit(" ", 1)[-1])


async def put_address(conn: Connection, member_id: bytes, sealed: bytes, now: datetime) -> None:
    """Set (or replace) the member's sealed address."""
    await conn.execute(
        """INSERT INTO mail_addresses (member_id, sealed, updated_at) VALUES ($1, $2, $3)
           ON CONFLICT (member_id) DO UPDATE SET sealed = $2, updated_at = $3""",
        member_id,
        sealed,
        now,
    )


async def delete_address(conn: Connection, member_id: bytes) -> bool:
    """Forget the member's address and their pending notices; False if none was set."""
    status = await conn.execute("DELETE FROM mail_addresses WHERE member_id = $1", member_id)
    return _count(status) == 1


async def insert_notices(
    conn: Connection, member_ids: Sequence[bytes], kind: str, now: datetime | None
) -> int:
    """One notice of ``kind`` for each of ``member_ids`` with an address; how many.

    ``now`` None: the database's transaction time.
    """
    status = await conn.execute(
        """INSERT INTO mail_notices (member_id, kind, created_at, next_attempt_at)
           SELECT a.member_id, $2, coalesce($3::timestamptz, now()),
                  coalesce($3::timestamptz, now())
           FROM mail_addresses a WHERE a.member_id = ANY($1::bytea[])""",
        list(set(member_ids)),
        kind,
        now,
    )
    return _count(status)


async def insert_group_notices(
    conn: Connection,
    group_id: bytes,
    besides: Sequence[bytes],
    kind: str,
    now: datetime | None,
) -> int:
    """One notice of ``kind`` for each current member of the group with an address,
    but those ``besides``; how many."""
    status = await conn.execute(
        """INSERT INTO mail_notices (member_id, kind, created_at, next_attempt_at)
           SELECT a.member_id, $3, coalesce($4::timestamptz, now()),
                  coalesce($4::timestamptz, now())
           FROM group_members gm JOIN mail_addresses a ON a.member_id = gm.member_id
           WHERE gm.group_id = $1 AND gm.member_id <> ALL($2::bytea[])""",
        group_id,
        list(besides),
        kind,
        now,
    )
    return _count(status)


async def insert_activity(
    conn: Connection,
    groups: Sequence[bytes],
    senders: Sequence[bytes],
    now: datetime,
    quiet_since: datetime,
) -> int:
    """For messages (group, sender) committed now: an ``activity`` notice for each
    other member of those groups with an address whose last one is older than
    ``quiet_since`` (or who has none); how many. One statement for a whole batch.
    """
    status = await conn.execute(
        """WITH due AS (
               SELECT a.member_id FROM mail_addresses a
               WHERE a.member_id IN (
                       SELECT gm.member_id
                       FROM unnest($1::bytea[], $2::bytea[]) AS b(g, s)
                       JOIN group_members gm ON gm.group_id = b.g AND gm.member_id <> b.s)
                 AND (a.activity_at IS NULL OR a.activity_at <= $4)
               ORDER BY a.member_id
               FOR NO KEY UPDATE OF a),
           marked AS (
               UPDATE mail_addresses a SET activity_at = $3
               FROM due WHERE a.member_id = due.member_id
               RETURNING a.member_id)
           INSERT INTO mail_notices (member_id, kind, created_at, next_attempt_at)
           SELECT member_id, 'activity', $3, $3 FROM marked""",
        list(groups),
        list(senders),
        now,
        quiet_since,
    )
    return _count(status)


async def claim_due(
    db: Executor, now: datetime, lease_until: datetime, limit: int
) -> list[DueNotice]:
    """Claim up to ``limit`` notices due at ``now``: each counts one more attempt
    and is not due again before ``lease_until`` (a worker that dies mid-send
    leaves them to be sent again then). One statement: commit it at once."""
    rows = await db.fetch(
        """WITH due AS (
               SELECT notice_id FROM mail_notices WHERE next_attempt_at <= $1
               ORDER BY next_attempt_at, notice_id LIMIT $3
               FOR UPDATE SKIP LOCKED)
           UPDATE mail_notices n SET next_attempt_at = $2, attempts = n.attempts + 1
           FROM due, mail_addresses a
           WHERE n.notice_id = due.notice_id AND a.member_id = n.member_id
           RETURNING n.notice_id, n.member_id, n.kind, n.attempts, n.created_at, a.sealed""",
        now,
        lease_until,
        limit,
    )
    found = [
        DueNotice(
            r["notice_id"],
            bytes(r["member_id"]),
            r["kind"],
            r["attempts"],
            r["created_at"],
            bytes(r["sealed"]),
        )
        for r in rows
    ]
    return sorted(found, key=lambda n: n.notice_id)


async def delete_notices(db: Executor, notice_ids: Sequence[int]) -> int:
    """Forget notices that were sent (or will never be); how many were still there."""
    if not notice_ids:
        return 0
    status = await db.execute(
        "DELETE FROM mail_notices WHERE notice_id = ANY($1::bigint[])", list(notice_ids)
    )
    return _count(status)


async def reschedule(db: Executor, retries: Sequence[tuple[int, datetime]]) -> None:
    """Set when each notice is next due (after a failed attempt)."""
    if not retries:
        return
    await db.execute(
        """UPDATE mail_notices n SET next_attempt_at = r.at
           FROM unnest($1::bigint[], $2::timestamptz[]) AS r(id, at)
           WHERE n.notice_id = r.id""",
        [notice_id for notice_id, _ in retries],
        [at for _, at in retries],
    )


async def prune_notices(db: Executor, created_before: datetime) -> int:
    """Drop notices too old to mean anything any more; how many."""
    status = await db.execute("DELETE FROM mail_notices WHERE created_at < $1", created_before)
    return _count(status)
