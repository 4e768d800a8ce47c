"""asyncpg pool creation and the transaction helper every store method uses.

Rule: store code receives a pool or a connection and returns frozen
dataclasses, never asyncpg records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeAlias

import asyncpg

# asyncpg ships no type information; these aliases document intent.
Pool: TypeAlias = Any  # asyncpg.Pool
Connection: TypeAlias = Any  # asyncpg.Connection / pool connection proxy
Executor: TypeAlias = Any  # either of the above: has execute/fetch/fetchrow/fetchval

Isolation = Literal["read_committed", "repeatable_read", "serializable"]


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    """Open a pool on ``url``; the caller closes it (``await pool.close()``)."""
    return await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        # Statements that hang (a lock held by a stuck client) must not hold a
        # request forever.
        command_timeout=30,
    )


@asynccontextmanager
async def transaction(
    pool: Pool, *, isolation: Isolation = "read_committed"
) -> AsyncIterator[Connection]:
    """Acquire a connection and run the block in one transaction on it.

    Commits when the block ends normally, rolls back on any exception.
    """
    async with pool.acquire() as conn, conn.transaction(isolation=isolation):
        yield conn
