"""SQL for the ``statements`` table: every signed statement the server keeps, verified.

A statement is stored once under its id (the hash of its body); the rows that
point at it (a member's join, an invite, a roster event, a motion) live in
their own tables and modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto.statements import Statement
from server.store.db import Connection


@dataclass(frozen=True)
class StoredStatement:
    """A statement as stored: its body and signature, checked again when read."""

    body: bytes
    sig: bytes


async def insert_statement(
    conn: Connection,
    statement: Statement,
    *,
    subject: bytes | None = None,
    group_id: bytes | None = None,
) -> bool:
    """Store a verified statement; False if the very same statement is already there."""
    network = statement.network
    if network is None:
        raise ValueError("only a statement that names its network is stored here")
    status = await conn.execute(
        """INSERT INTO statements (statement_id, network_id, type, author, subject, group_id, body, sig)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (statement_id) DO NOTHING""",
        statement.id,
        network,
        statement.type,
        statement.author,
        subject,
        group_id,
        statement.body,
        statement.signature,
    )
    return bool(status == "INSERT 0 1")


async def get_statement(conn: Connection, statement_id: bytes) -> StoredStatement | None:
    row = await conn.fetchrow(
        "SELECT body, sig FROM statements WHERE statement_id = $1", statement_id
    )
    return None if row is None else StoredStatement(row["body"], row["sig"])
