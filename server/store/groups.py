"""SQL for roster logs, epoch secrets, messages, profiles and motions.

Like every store module: functions take the caller's connection (one service
operation = one transaction) and return frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crypto.encoding import b32e
from server.store.db import Connection
from server.store.membership import StoredStatement


@dataclass(frozen=True)
class GroupRow:
    group_id: bytes
    network_id: bytes
    kind: str
    level: int
    roster_seq: int
    roster_head: bytes | None
    epoch: int
    rekey_needed: bool
    epoch_started_at: datetime | None
    epoch_messages: int


async def lock_group(conn: Connection, group_id: bytes) -> GroupRow | None:
    """The group's row, locked until the transaction ends: the compare-and-swap point."""
    row = await conn.fetchrow(
        """SELECT group_id, network_id, kind, level, roster_seq, roster_head, epoch, rekey_needed,
                  epoch_started_at, epoch_messages
           FROM groups WHERE group_id = $1 FOR UPDATE""",
        group_id,
    )
    return None if row is None else GroupRow(**dict(row))


async def roster_log(conn: Connection, group_id: bytes) -> list[StoredStatement]:
    rows = await conn.fetch(
        """SELECT s.body, s.sig FROM roster_events r JOIN statements s ON s.statement_id = r.event_id
           WHERE r.group_id = $1 ORDER BY r.seq""",
        group_id,
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]


async def group_of_roster_event(conn: Connection, event_id: bytes) -> bytes | None:
    """The group whose roster log holds `event_id` (a split's, when a create names its origin)."""
    value = await conn.fetchval("SELECT group_id FROM roster_events WHERE event_id = $1", event_id)
    return None if value is None else bytes(value)


async def insert_roster_event(
    conn: Connection, group_id: bytes, seq: int, event_id: bytes, op: str
) -> None:
    await conn.execute(
        "INSERT INTO roster_events (group_id, seq, event_id, op) VALUES ($1, $2, $3, $4)",
        group_id,
        seq,
        event_id,
        op,
    )


async def set_roster_head(
    conn: Connection,
    group_id: bytes,
    seq: int,
    head: bytes,
    epoch: int,
    rekey_needed: bool,
    now: datetime,
) -> None:
    # A new epoch number restarts the epoch's clock and message count.
    await conn.execute(
        """UPDATE groups SET roster_seq = $2, roster_head = $3, rekey_needed = $5,
               epoch_started_at = CASE WHEN epoch = $4 THEN epoch_started_at ELSE $6 END,
               epoch_messages = CASE WHEN epoch = $4 THEN epoch_messages ELSE 0 END,
               epoch = $4
           WHERE group_id = $1""",
        group_id,
        seq,
        head,
        epoch,
        rekey_needed,
        now,
    )


async def insert_epoch_secrets(
    conn: Connection, group_id: bytes, epoch: int, sealed: dict[bytes, bytes]
) -> None:
    await conn.executemany(
        "INSERT INTO epoch_secrets (group_id, epoch, member_id, sealed) VALUES ($1, $2, $3, $4)",
        [(group_id, epoch, member, box) for member, box in sealed.items()],
    )


async def epoch_secret(
    conn: Connection, group_id: bytes, epoch: int, member_id: bytes
) -> bytes | None:
    value = await conn.fetchval(
        "SELECT sealed FROM epoch_secrets WHERE group_id = $1 AND epoch = $2 AND member_id = $3",
        group_id,
        epoch,
        member_id,
    )
    return None if value is None else bytes(value)


async def insert_message(
    conn: Connection, group_id: bytes, epoch: int, sender: bytes, counter: int, event_seq: int
) -> bool:
    status = await conn.execute(
        """WITH m AS (
               INSERT INTO messages (group_id, epoch, sender, counter, event_seq)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING group_id)
           UPDATE groups SET epoch_messages = epoch_messages + 1
           WHERE group_id = (SELECT group_id FROM m)""",
        group_id,
        epoch,
        sender,
        counter,
        event_seq,
    )
    return bool(status == "UPDATE 1")


async def upsert_profile(
    conn: Connection, group_id: bytes, member_id: bytes, epoch: int, sealed: bytes, now: datetime
) -> None:
    await conn.execute(
        """INSERT INTO profiles (group_id, member_id, epoch, sealed, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (group_id, member_id)
           DO UPDATE SET epoch = EXCLUDED.epoch, sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at""",
        group_id,
        member_id,
        epoch,
        sealed,
        now,
    )


@dataclass(frozen=True)
class ProfileRow:
    member_id: bytes
    epoch: int
    sealed: bytes


async def profiles(conn: Connection, group_id: bytes) -> list[ProfileRow]:
    rows = await conn.fetch(
        """SELECT p.member_id, p.epoch, p.sealed FROM profiles p
           JOIN group_members g ON g.group_id = p.group_id AND g.member_id = p.member_id
           WHERE p.group_id = $1 ORDER BY p.member_id""",
        group_id,
    )
    return [ProfileRow(r["member_id"], r["epoch"], bytes(r["sealed"])) for r in rows]


async def set_member_cell(conn: Connection, member_ids: list[bytes], cell_id: bytes) -> None:
    await conn.execute(
        "UPDATE members SET cell_id = $2 WHERE member_id = ANY($1::bytea[])", member_ids, cell_id
    )


async def identity_key(conn: Connection, member_id: bytes) -> bytes | None:
    value = await conn.fetchval("SELECT identity_key FROM members WHERE member_id = $1", member_id)
    return None if value is None else bytes(value)


@dataclass(frozen=True)
class SenderView:
    """What one query tells about a message's sender and group (see lock_for_sender)."""

    member_id: bytes
    identity_key: bytes
    session_expires_at: datetime
    revoked: bool
    in_group: bool
    group: GroupRow | None


async def lock_for_sender(
    conn: Connection, token_hash: bytes, group_id: bytes
) -> SenderView | None:
    """The session's member, their key and membership, and the group row locked.

    One round trip for what a message needs checked before it is appended.
    """
    row = await conn.fetchrow(
        """SELECT s.member_id, m.identity_key, s.expires_at,
                  (s.revoked_at IS NOT NULL OR m.revoked_at IS NOT NULL) AS revoked,
                  EXISTS (SELECT 1 FROM group_members gm
                          WHERE gm.group_id = $2 AND gm.member_id = s.member_id) AS in_group,
                  g.group_id, g.network_id, g.kind, g.level, g.roster_seq, g.roster_head, g.epoch,
                  g.rekey_needed, g.epoch_started_at, g.epoch_messages
           FROM sessions s JOIN members m ON m.member_id = s.member_id
           LEFT JOIN LATERAL (SELECT * FROM groups WHERE group_id = $2 FOR UPDATE) g ON true
           WHERE s.token_hash = $1""",
        token_hash,
        group_id,
    )
    if row is None:
        return None
    group = None
    if row["group_id"] is not None:
        group = GroupRow(**{name: row[name] for name in GroupRow.__dataclass_fields__})
    return SenderView(
        row["member_id"],
        row["identity_key"],
        row["expires_at"],
        row["revoked"],
        row["in_group"],
        group,
    )


async def append_message(
    conn: Connection,
    group_id: bytes,
    epoch: int,
    sender: bytes,
    counter: int,
    body: bytes,
    now: datetime,
    channel: str,
) -> int | None:
    """Append a message as the group's next event, count it in the epoch, and NOTIFY.

    One statement. None if the (epoch, sender, counter) was used before; the
    seq it took is then rolled back with the caller's transaction.
    """
    seq = await conn.fetchval(
        """WITH g AS (
               UPDATE groups SET last_seq = last_seq + 1, epoch_messages = epoch_messages + 1
               WHERE group_id = $1 RETURNING last_seq),
           m AS (
               INSERT INTO messages (group_id, epoch, sender, counter, event_seq)
               SELECT $1, $2, $3, $4, last_seq FROM g ON CONFLICT DO NOTHING RETURNING event_seq),
           e AS (
               INSERT INTO group_events (group_id, seq, kind, sender, body, created_at)
               SELECT $1, event_seq, 'message', $3, $5, $6 FROM m RETURNING seq)
           SELECT seq, pg_notify($7, $8 || ':' || seq::text) FROM e""",
        group_id,
        epoch,
        sender,
        counter,
        body,
        now,
        channel,
        b32e(group_id),
    )
    return None if seq is None else int(seq)
