"""SQL for the ``networks`` table: each hosted network's genesis.

The revocation columns of a network's row (its chain's length and head) are
kept by server/store/revocations.py, which owns the chain.
"""

from __future__ import annotations

from server.store.db import Connection
from server.store.statements import StoredStatement


async def lock_networks(conn: Connection) -> None:
    """Hold the networks table until the transaction ends: concurrent foundings queue here."""
    await conn.execute("LOCK TABLE networks IN EXCLUSIVE MODE")


async def count_networks(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM networks"))


async def insert_network(conn: Connection, network_id: bytes, body: bytes, sig: bytes) -> None:
    await conn.execute(
        "INSERT INTO networks (network_id, genesis_body, genesis_sig) VALUES ($1, $2, $3)",
        network_id,
        body,
        sig,
    )


async def get_genesis(conn: Connection, network_id: bytes) -> StoredStatement | None:
    row = await conn.fetchrow(
        "SELECT genesis_body, genesis_sig FROM networks WHERE network_id = $1", network_id
    )
    return None if row is None else StoredStatement(row["genesis_body"], row["genesis_sig"])
