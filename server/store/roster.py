"""SQL for ``roster_events`` and ``epoch_secrets``: each group's roster log and its sealed epoch keys.

A roster log's seqs are the primary key (group, seq), and an event is in a
log once (unique (event, group)); that it is in one log only is the rule
book's, since an event signs its group (schema/010_distribution_keys.sql).
The group's row (server/store/groups.py) carries the log's head and is
locked by whoever appends.
"""

from __future__ import annotations

from server.store.db import Connection
from server.store.statements import StoredStatement


async def roster_log(
    conn: Connection, group_id: bytes, until: int | None = None
) -> list[StoredStatement]:
    """The group's roster log from its create event, up to roster seq ``until`` if given."""
    rows = await conn.fetch(
        """SELECT s.body, s.sig FROM roster_events r JOIN statements s ON s.statement_id = r.event_id
           WHERE r.group_id = $1 AND ($2::int IS NULL OR r.seq <= $2) ORDER BY r.seq""",
        group_id,
        until,
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
