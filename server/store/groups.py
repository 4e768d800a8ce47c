"""SQL for ``groups``, ``group_members`` and ``former_group_members``: each group's row, the
index of who is in it, and how far each member a roster event removed may still read it.

A group's row is the compare-and-swap point of everything done to the group:
roster events, epochs and messages lock it (``FOR UPDATE``) before they read
or write anything of the group, so they happen one after another.
``group_members`` mirrors the members of each verified roster log; it is
what the server consults to decide who may read a group. A member the log
removes leaves it for ``former_group_members``, which keeps the seq of the
event that removed them: they read the group up to there (PROTOCOL §11).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection
from server.store.statements import StoredStatement


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


@dataclass(frozen=True)
class FormerReach:
    """How far a member removed from a group may read it: up to the event that removed them."""

    last_seq: int  # that event's seq among the group's events
    roster_seq: int  # and in its roster log


@dataclass(frozen=True)
class GroupSummary:
    group_id: bytes
    kind: str
    level: int
    members: int
    last_seq: int


async def insert_group(
    conn: Connection,
    group_id: bytes,
    network_id: bytes,
    kind: str,
    level: int,
    parent_id: bytes | None,
    statement_id: bytes,
) -> None:
    await conn.execute(
        """INSERT INTO groups (group_id, network_id, kind, level, parent_id, create_statement)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        group_id,
        network_id,
        kind,
        level,
        parent_id,
        statement_id,
    )


async def group_statement(conn: Connection, group_id: bytes) -> StoredStatement | None:
    """The group's create event."""
    row = await conn.fetchrow(
        """SELECT s.body, s.sig FROM groups g JOIN statements s ON s.statement_id = g.create_statement
           WHERE g.group_id = $1""",
        group_id,
    )
    return None if row is None else StoredStatement(row["body"], row["sig"])


async def get_group(conn: Connection, group_id: bytes) -> GroupRow | None:
    """The group's row, read without a lock."""
    row = await conn.fetchrow(
        """SELECT group_id, network_id, kind, level, roster_seq, roster_head, epoch, rekey_needed,
                  epoch_started_at, epoch_messages
           FROM groups WHERE group_id = $1""",
        group_id,
    )
    return None if row is None else GroupRow(**dict(row))


async def lock_group(conn: Connection, group_id: bytes) -> GroupRow | None:
    """The group's row, locked until the transaction ends: the compare-and-swap point."""
    row = await conn.fetchrow(
        """SELECT group_id, network_id, kind, level, roster_seq, roster_head, epoch, rekey_needed,
                  epoch_started_at, epoch_messages
           FROM groups WHERE group_id = $1 FOR UPDATE""",
        group_id,
    )
    return None if row is None else GroupRow(**dict(row))


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


async def add_former_member(
    conn: Connection, group_id: bytes, member_id: bytes, last_seq: int, roster_seq: int
) -> None:
    """Note that the event at ``last_seq`` (roster seq ``roster_seq``) removed ``member_id``."""
    await conn.execute(
        """INSERT INTO former_group_members (group_id, member_id, last_seq, roster_seq)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (group_id, member_id)
           DO UPDATE SET last_seq = EXCLUDED.last_seq, roster_seq = EXCLUDED.roster_seq""",
        group_id,
        member_id,
        last_seq,
        roster_seq,
    )


async def former_reach(conn: Connection, group_id: bytes, member_id: bytes) -> FormerReach | None:
    """How far ``member_id``, once removed from the group, may read it; None if never removed."""
    row = await conn.fetchrow(
        """SELECT last_seq, roster_seq FROM former_group_members
           WHERE group_id = $1 AND member_id = $2""",
        group_id,
        member_id,
    )
    return None if row is None else FormerReach(int(row["last_seq"]), int(row["roster_seq"]))


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
