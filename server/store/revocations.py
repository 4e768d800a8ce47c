"""SQL for ``revocations`` and the chain's head on the ``networks`` row.

The chain is appended only on its current head: the caller reads the head
with the network row locked (revocation_head) and appends at exactly that
seq, so two stewards racing can't fork the list; ``UNIQUE (network_id, seq)``
refuses a second link at one seq all the same.
"""

from __future__ import annotations

from server.store.db import Connection
from server.store.statements import StoredStatement


async def revocation_head(conn: Connection, network_id: bytes) -> tuple[int, bytes | None]:
    """(how many revocations the chain holds, the last one's id), the network row locked."""
    row = await conn.fetchrow(
        "SELECT revocation_seq, revocation_head FROM networks WHERE network_id = $1 FOR UPDATE",
        network_id,
    )
    if row is None:
        return 0, None
    head = row["revocation_head"]
    return row["revocation_seq"], None if head is None else bytes(head)


async def revocation_chain(conn: Connection, network_id: bytes) -> list[StoredStatement]:
    """The network's revocations in chain order (seq 0 first)."""
    rows = await conn.fetch(
        """SELECT s.body, s.sig FROM revocations r
           JOIN statements s ON s.statement_id = r.statement_id
           WHERE r.network_id = $1 ORDER BY r.seq""",
        network_id,
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]


async def append_revocation(
    conn: Connection, network_id: bytes, seq: int, member_id: bytes, statement_id: bytes
) -> None:
    """Add the revocation at `seq` of the chain and make it the head (see revocation_head)."""
    await conn.execute(
        """INSERT INTO revocations (member_id, statement_id, network_id, seq)
           VALUES ($1, $2, $3, $4)""",
        member_id,
        statement_id,
        network_id,
        seq,
    )
    await conn.execute(
        "UPDATE networks SET revocation_seq = $2 + 1, revocation_head = $3 WHERE network_id = $1",
        network_id,
        seq,
        statement_id,
    )


async def holds(conn: Connection, statement_id: bytes) -> bool:
    """Is the revocation with this statement id in the chain?"""
    found = await conn.fetchval(
        "SELECT 1 FROM revocations WHERE statement_id = $1", statement_id
    )
    return found is not None
