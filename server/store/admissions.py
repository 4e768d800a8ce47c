"""SQL for ``admissions``, ``vouches`` and ``blocks``: the vetting of each newcomer.

One certificate per newcomer (the admissions primary key), one vouch and one
block per (newcomer, member) pair: repeats are refused by the tables' keys,
so counting can't be inflated by sending a statement twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from server.store.db import Connection
from server.store.statements import StoredStatement

MAX_CHAIN_DEPTH = 64


async def insert_admission(
    conn: Connection,
    subject_id: bytes,
    certificate_id: bytes,
    issuer_id: bytes,
    cell_id: bytes,
    now: datetime,
) -> bool:
    """Record a newcomer's certificate; False if they already have one."""
    status = await conn.execute(
        """INSERT INTO admissions (subject_id, certificate_id, issuer_id, cell_id, issued_at)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_id) DO NOTHING""",
        subject_id,
        certificate_id,
        issuer_id,
        cell_id,
        now,
    )
    return bool(status == "INSERT 0 1")


async def admission_of(conn: Connection, subject_id: bytes) -> StoredStatement | None:
    row = await conn.fetchrow(
        """SELECT s.body, s.sig FROM admissions a JOIN statements s ON s.statement_id = a.certificate_id
           WHERE a.subject_id = $1""",
        subject_id,
    )
    return None if row is None else StoredStatement(row["body"], row["sig"])


async def chain_of(conn: Connection, member_id: bytes) -> list[StoredStatement]:
    """The admission certificates from `member_id` up to a steward, nearest first."""
    rows = await conn.fetch(
        """WITH RECURSIVE c(subject_id, certificate_id, issuer_id, depth) AS (
               SELECT subject_id, certificate_id, issuer_id, 0 FROM admissions WHERE subject_id = $1
               UNION ALL
               SELECT a.subject_id, a.certificate_id, a.issuer_id, c.depth + 1
               FROM admissions a JOIN c ON a.subject_id = c.issuer_id
               WHERE c.depth < $2)
           SELECT s.body, s.sig FROM c JOIN statements s ON s.statement_id = c.certificate_id
           ORDER BY c.depth""",
        member_id,
        MAX_CHAIN_DEPTH,
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]


async def chains_of(
    conn: Connection, member_ids: Sequence[bytes]
) -> dict[bytes, list[StoredStatement]]:
    """`chain_of` for many members in one query: each id maps to its chain (maybe empty)."""
    wanted = list(dict.fromkeys(member_ids))
    chains: dict[bytes, list[StoredStatement]] = {member_id: [] for member_id in wanted}
    if not wanted:
        return chains
    rows = await conn.fetch(
        """WITH RECURSIVE c(root, subject_id, certificate_id, issuer_id, depth) AS (
               SELECT subject_id, subject_id, certificate_id, issuer_id, 0
               FROM admissions WHERE subject_id = ANY($1::bytea[])
               UNION ALL
               SELECT c.root, a.subject_id, a.certificate_id, a.issuer_id, c.depth + 1
               FROM admissions a JOIN c ON a.subject_id = c.issuer_id
               WHERE c.depth < $2)
           SELECT c.root, s.body, s.sig FROM c JOIN statements s ON s.statement_id = c.certificate_id
           ORDER BY c.root, c.depth""",
        wanted,
        MAX_CHAIN_DEPTH,
    )
    for r in rows:
        chains[bytes(r["root"])].append(StoredStatement(r["body"], r["sig"]))
    return chains


async def insert_verdict(
    conn: Connection,
    kind: Literal["vouch", "block"],
    subject_id: bytes,
    author_id: bytes,
    statement_id: bytes,
    now: datetime,
) -> bool:
    """Record a vouch or a block; False if this author already sent one of that kind."""
    table, column = ("vouches", "voucher_id") if kind == "vouch" else ("blocks", "blocker_id")
    status = await conn.execute(
        f"""INSERT INTO {table} (subject_id, {column}, statement_id, created_at)
            VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",  # noqa: S608
        subject_id,
        author_id,
        statement_id,
        now,
    )
    return bool(status == "INSERT 0 1")


async def verdicts_about(conn: Connection, subject_id: bytes) -> list[StoredStatement]:
    """A newcomer's vouches and blocks, in the order they arrived."""
    rows = await conn.fetch(
        """SELECT s.body, s.sig, x.created_at FROM (
               SELECT statement_id, created_at FROM vouches WHERE subject_id = $1
               UNION ALL SELECT statement_id, created_at FROM blocks WHERE subject_id = $1) x
           JOIN statements s ON s.statement_id = x.statement_id ORDER BY x.created_at, s.statement_id""",
        subject_id,
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]


async def issuer_of(conn: Connection, subject_id: bytes) -> bytes | None:
    """Who admitted ``subject_id`` (their certificate's issuer), or None for a steward."""
    issuer = await conn.fetchval(
        "SELECT issuer_id FROM admissions WHERE subject_id = $1", subject_id
    )
    return None if issuer is None else bytes(issuer)
