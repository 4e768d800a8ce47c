"""asyncpg pool creation and the transaction helper every store method uses.

Rule: store code receives a pool or a connection and returns frozen
dataclasses, never asyncpg records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import asyncpg

# asyncpg ships no type information; these aliases document intent.
Pool: TypeAlias = Any  # asyncpg.Pool
Connection: TypeAlias = Any  # asyncpg.Connection / pool connection proxy
Executor: TypeAlias = Any  # either of the above: has execute/fetch/fetchrow/fetchval

Isolation = Literal["read_committed", "repeatable_read", "serializable"]


# How long a request waits for a free connection before it is answered 503
# (Settings.db_acquire_timeout_s): a pool whose every connection is busy must
# not leave requests queued without end.
ACQUIRE_TIMEOUT_S = 5.0


class BoundedPool(asyncpg.Pool):
    """asyncpg's pool, whose ``acquire`` gives up after ``acquire_timeout_s`` unless told otherwise.

    The wait ends in ``TimeoutError`` (server/errors.py counts it as an
    outage: 503 with Retry-After); it includes opening a connection when the
    pool has to, so a database that accepts no connections is bounded too.
    """

    def __init__(self, *args: Any, acquire_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)


async def create_pool(
    url: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
) -> Pool:
    """Open a pool on ``url``; the caller closes it (``await pool.close()``)."""
    # What asyncpg.create_pool passes, with our pool class.
    pool = BoundedPool(
        url,
        acquire_timeout_s=acquire_timeout_s,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        # Statements that hang (a lock held by a stuck client) must not hold a
        # request forever.
        command_timeout=30,
        reset=_keep_session,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
    )
    return await pool


@dataclass(frozen=True)
class PoolUsage:
    """How many connections a pool holds, how many of them wait idle, and its bound."""

    size: int
    idle: int
    max_size: int


def pool_usage(pool: Pool) -> PoolUsage:
    """The pool's connections now (for the metrics; asks the pool, not the database)."""
    return PoolUsage(pool.get_size(), pool.get_idle_size(), pool.get_max_size())


async def _keep_session(conn: Connection) -> None:
    """Nothing to reset when a connection goes back to the pool.

    Request code never LISTENs, SETs, takes advisory locks or leaves cursors
    open on pooled connections (an open transaction is still rolled back by
    asyncpg itself), so the default reset query would only cost a round trip
    per request.
    """


@asynccontextmanager
async def transaction(
    pool: Pool, *, isolation: Isolation = "read_committed"
) -> AsyncIterator[Connection]:
    """Acquire a connection and run the block in one transaction on it.

    Commits when the block ends normally, rolls back on any exception.
    """
    async with pool.acquire() as conn, conn.transaction(isolation=isolation):
        yield conn
