"""bench/scale.py at a tiny size: its fill writes every table, and the real server reads it back.

The bench itself runs at 100,000 members; this keeps its fill and its reads
from rotting. A small network goes into a fresh database with COPY. The live
server answers each member-scoped read with exactly the rows filled, and a
timed phase and the EXPLAIN of every read's queries run on it too.
"""

from __future__ import annotations

import time

import asyncpg

from bench.scale import READS, explain_reads, run_phase, verify_reads
from bench.scale_fill import OTHER_TABLES, TABLES, Filler, Shape
from tests.conftest import RunningServer

# Four cells of ten, councils of two seats on three levels (2, 1, 1), and in
# cells 0 and 2 a newcomer being vetted and a revoked former member.
SHAPE = Shape(
    members=40,
    fanout=2,
    messages=150,
    pending_every=2,
    blocked_every=3,
    revoked_every=2,
    readers=4,
)


async def test_the_fill_writes_every_table_and_each_read_returns_its_rows(
    database_url: str, server: RunningServer
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        filled = await Filler(conn, SHAPE, int(time.time())).fill()
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        assert tables == set(TABLES) | OTHER_TABLES
        count = "SELECT count(*) FROM {}"
        empty = [t for t in TABLES if not await conn.fetchval(count.format(t))]
        assert empty == []
        assert await conn.fetchval("SELECT count(*) FROM groups") == 4 + 2 + 1 + 1
        on_rosters = await conn.fetchval(
            "SELECT count(DISTINCT member_id) FROM group_members g JOIN groups USING (group_id) "
            "WHERE kind = 'cell'"
        )
        assert on_rosters == SHAPE.members
        messages = "SELECT count(*) FROM group_events WHERE kind = 'message'"
        assert await conn.fetchval(messages) == SHAPE.messages
        assert await conn.fetchval("SELECT count(*) FROM messages") == SHAPE.messages

        readers = filled.readers
        assert len(readers) == 2 and all(r.pending for r in readers)
        assert await verify_reads(server.url, readers) == []
        phase = await run_phase(server.url, readers, "pending", 30, 4, members=2)
        assert (len(phase.latencies), phase.errors) == (4, 0)

        plans = await explain_reads(conn, readers[0])
        assert set(plans) == {"authentication", *READS}
        for read, items in plans.items():
            assert items, read
            assert all("Scan" in p.plan and "Execution Time" in p.plan for p in items), read
    finally:
        await conn.close()
