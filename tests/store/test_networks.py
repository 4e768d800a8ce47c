"""server/store/networks.py: each network's genesis, one row per network."""

from __future__ import annotations

import os

import asyncpg
import pytest

from server.store import networks
from server.store.db import Connection, Pool, transaction
from tests.store.conftest import Rows


async def test_a_network_reads_back_its_genesis(rows: Rows, conn: Connection) -> None:
    stored = await networks.get_genesis(conn, rows.network)
    assert stored is not None
    assert len(stored.body) > 0 and len(stored.sig) == 64
    assert await networks.count_networks(conn) == 1
    assert await networks.get_genesis(conn, os.urandom(32)) is None


async def test_a_network_id_is_taken_once(rows: Rows, conn: Connection) -> None:
    with pytest.raises(asyncpg.UniqueViolationError):
        await networks.insert_network(conn, rows.network, b"body", b"sig")
    assert await networks.count_networks(conn) == 1


async def test_foundings_queue_on_the_table_lock(pool: Pool) -> None:
    async with transaction(pool) as conn:
        await networks.lock_networks(conn)
        held = await conn.fetchval(
            """SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
               WHERE c.relname = 'networks' AND l.mode = 'ExclusiveLock' AND l.granted"""
        )
        assert held == 1
