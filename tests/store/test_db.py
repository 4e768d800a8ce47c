"""server/store/db.py: a transaction commits when its block ends and rolls back on an error."""

from __future__ import annotations

import pytest

from server.store.db import Pool, transaction


async def test_a_transaction_commits_or_rolls_back_whole(pool: Pool) -> None:
    async with transaction(pool) as conn:
        await conn.execute("CREATE TABLE t (n int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError):
        async with transaction(pool) as conn:
            await conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("refused")
    assert await pool.fetchval("SELECT array_agg(n) FROM t") == [1]


async def test_a_transaction_can_ask_for_serializable(pool: Pool) -> None:
    async with transaction(pool, isolation="serializable") as conn:
        assert await conn.fetchval("SHOW transaction_isolation") == "serializable"
