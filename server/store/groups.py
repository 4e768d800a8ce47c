"""SQL for roster logs, epoch secrets, messages, profiles and motions.

Like every store module: functions take the caller's connection (one service
operation = one transaction) and return frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
