"""server/store/rate_limits.py: fixed-window counters that concurrent hits can't lose."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from server.store import rate_limits as store
from server.store.db import Pool

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


async def test_hit_beyond_the_limit_in_one_window_is_refused(pool: Pool) -> None:
    bucket = bytes(32)
    results = [await store.hit(pool, bucket, 3, 60, T0) for _ in range(4)]
    assert results == [True, True, True, False]


async def test_a_new_window_resets_the_count(pool: Pool) -> None:
    bucket = bytes(32)
    for _ in range(3):
        assert await store.hit(pool, bucket, 3, 60, T0)
    assert not await store.hit(pool, bucket, 3, 60, T0.replace(second=59))
    assert await store.hit(pool, bucket, 3, 60, T0.replace(minute=1))


async def test_buckets_are_counted_separately(pool: Pool) -> None:
    assert await store.hit(pool, b"a" * 32, 1, 60, T0)
    assert await store.hit(pool, b"b" * 32, 1, 60, T0)
    assert not await store.hit(pool, b"a" * 32, 1, 60, T0)


async def test_concurrent_hits_are_all_counted(pool: Pool) -> None:
    bucket = b"c" * 32
    results = await asyncio.gather(*(store.hit(pool, bucket, 5, 60, T0) for _ in range(20)))
    assert results.count(True) == 5
    assert await pool.fetchval("SELECT hits FROM rate_limits WHERE bucket = $1", bucket) == 20


async def test_prune_deletes_only_old_windows(pool: Pool) -> None:
    await store.hit(pool, b"d" * 32, 5, 60, T0)
    await store.hit(pool, b"d" * 32, 5, 60, T0.replace(hour=13))
    deleted = await store.prune(pool, T0.replace(hour=13, minute=30), keep_s=3600)
    assert deleted == 1
    assert await pool.fetchval("SELECT count(*) FROM rate_limits") == 1
