"""SQL for the ``profiles`` table: each member's sealed profile in each group, the latest only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection


@dataclass(frozen=True)
class ProfileRow:
    member_id: bytes
    epoch: int
    sealed: bytes


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


async def profiles(conn: Connection, group_id: bytes) -> list[ProfileRow]:
    """The profiles of the group's current members (a member who left keeps theirs unread)."""
    rows = await conn.fetch(
        """SELECT p.member_id, p.epoch, p.sealed FROM profiles p
           JOIN group_members g ON g.group_id = p.group_id AND g.member_id = p.member_id
           WHERE p.group_id = $1 ORDER BY p.member_id""",
        group_id,
    )
    return [ProfileRow(r["member_id"], r["epoch"], bytes(r["sealed"])) for r in rows]
