"""SQL for ``motions`` and ``motion_signatures``: motions opened in a group and who signed them.

A member signs a motion once (the primary key (motion, group, signer)); a
motion is ``open`` until the roster event that carries it out marks it
``done``. Both tables are keyed by group too (schema/010_distribution_keys.sql),
so a signature is written and read with its motion's group.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.store.db import Connection
from server.store.statements import StoredStatement


@dataclass(frozen=True)
class MotionRow:
    group_id: bytes
    status: str


@dataclass(frozen=True)
class OpenMotion:
    motion: StoredStatement
    group_id: bytes
    kind: str
    signatures: list[StoredStatement]


async def insert_motion(conn: Connection, motion_id: bytes, group_id: bytes, kind: str) -> None:
    await conn.execute(
        "INSERT INTO motions (motion_id, group_id, kind) VALUES ($1, $2, $3)",
        motion_id,
        group_id,
        kind,
    )


async def get_motion(conn: Connection, motion_id: bytes) -> MotionRow | None:
    row = await conn.fetchrow(
        "SELECT group_id, status FROM motions WHERE motion_id = $1", motion_id
    )
    return None if row is None else MotionRow(bytes(row["group_id"]), row["status"])


async def insert_signature(
    conn: Connection, motion_id: bytes, group_id: bytes, signer: bytes, statement_id: bytes
) -> bool:
    """Record a signature of the group's motion; False if this member already signed it."""
    status = await conn.execute(
        """INSERT INTO motion_signatures (motion_id, group_id, signer, statement_id)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
        motion_id,
        group_id,
        signer,
        statement_id,
    )
    return bool(status == "INSERT 0 1")


async def mark_done(conn: Connection, motion_id: bytes) -> None:
    """The motion was carried out: it is no longer listed as open."""
    await conn.execute("UPDATE motions SET status = 'done' WHERE motion_id = $1", motion_id)


async def open_motions(conn: Connection, member_id: bytes) -> list[OpenMotion]:
    """The open motions of the member's groups, oldest first, each with its signatures."""
    rows = await conn.fetch(
        """SELECT m.motion_id, m.group_id, m.kind, s.body, s.sig FROM motions m
           JOIN group_members g ON g.group_id = m.group_id AND g.member_id = $1
           JOIN statements s ON s.statement_id = m.motion_id
           WHERE m.status = 'open' ORDER BY m.created_at""",
        member_id,
    )
    result = []
    for row in rows:
        signatures = await conn.fetch(
            """SELECT s.body, s.sig FROM motion_signatures ms
               JOIN statements s ON s.statement_id = ms.statement_id
               WHERE ms.motion_id = $1 AND ms.group_id = $2 ORDER BY s.statement_id""",
            row["motion_id"],
            row["group_id"],
        )
        result.append(
            OpenMotion(
                StoredStatement(row["body"], row["sig"]),
                bytes(row["group_id"]),
                row["kind"],
                [StoredStatement(s["body"], s["sig"]) for s in signatures],
            )
        )
    return result


async def open_motions_of_group(conn: Connection, group_id: bytes, kind: str) -> list[OpenMotion]:
    """The group's open motions of one kind, oldest first, each with its signatures."""
    rows = await conn.fetch(
        """SELECT m.motion_id, s.body, s.sig FROM motions m
           JOIN statements s ON s.statement_id = m.motion_id
           WHERE m.group_id = $1 AND m.kind = $2 AND m.status = 'open' ORDER BY m.created_at""",
        group_id,
        kind,
    )
    result = []
    for row in rows:
        signatures = await conn.fetch(
            """SELECT s.body, s.sig FROM motion_signatures ms
               JOIN statements s ON s.statement_id = ms.statement_id
               WHERE ms.motion_id = $1 AND ms.group_id = $2 ORDER BY s.statement_id""",
            row["motion_id"],
            group_id,
        )
        result.append(
            OpenMotion(
                StoredStatement(row["body"], row["sig"]),
                group_id,
                kind,
                [StoredStatement(s["body"], s["sig"]) for s in signatures],
            )
        )
    return result
