"""Every SQL query about networks, members, invites and admissions.

Functions here take a connection that the calling service holds inside one
transaction (the `_txn` convention): a service operation is one transaction,
so a refused request leaves nothing half-written. They return frozen
dataclasses, never asyncpg records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection

MAX_CHAIN_DEPTH = 64


@dataclass(frozen=True)
class StoredStatement:
    body: bytes
    sig: bytes


@dataclass(frozen=True)
class MemberRow:
    member_id: bytes
    network_id: bytes
    identity_key: bytes
    cell_id: bytes | None
    inviter_id: bytes | None
    invite_lookup: bytes | None
    joined_at: datetime
    admitted_at: datetime | None
    blocked_at: datetime | None
    revoked_at: datetime | None
    is_steward: bool


@dataclass(frozen=True)
class InviteRow:
    lookup_id: bytes
    network_id: bytes
    inviter_id: bytes
    cell_id: bytes
    proof_public_key: bytes
    payload: bytes
    statement_id: bytes
    expires_at: datetime
    redeemed_by: bytes | None


_MEMBER_COLUMNS = """member_id, network_id, identity_key, cell_id, inviter_id, invite_lookup,
    joined_at, admitted_at, blocked_at, revoked_at, is_steward"""


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


async def insert_statement(
    conn: Connection,
    statement_id: bytes,
    network_id: bytes,
    statement_type: str,
    author: bytes,
    body: bytes,
    sig: bytes,
    *,
    subject: bytes | None = None,
    group_id: bytes | None = None,
) -> bool:
    """Store a verified statement; False if the very same statement is already there."""
    status = await conn.execute(
        """INSERT INTO statements (statement_id, network_id, type, author, subject, group_id, body, sig)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (statement_id) DO NOTHING""",
        statement_id,
        network_id,
        statement_type,
        author,
        subject,
        group_id,
        body,
        sig,
    )
    return bool(status == "INSERT 0 1")


async def get_statement(conn: Connection, statement_id: bytes) -> StoredStatement | None:
    row = await conn.fetchrow(
        "SELECT body, sig FROM statements WHERE statement_id = $1", statement_id
    )
    return None if row is None else StoredStatement(row["body"], row["sig"])


async def statements_about(
    conn: Connection, subject: bytes, types: tuple[str, ...]
) -> list[StoredStatement]:
    rows = await conn.fetch(
        """SELECT body, sig FROM statements WHERE subject = $1 AND type = ANY($2::text[])
           ORDER BY created_at, statement_id""",
        subject,
        list(types),
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]


async def statements_by_type(
    conn: Connection, network_id: bytes, statement_type: str
) -> list[StoredStatement]:
    rows = await conn.fetch(
        "SELECT body, sig FROM statements WHERE network_id = $1 AND type = $2 ORDER BY created_at",
        network_id,
        statement_type,
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]


async def insert_group(
    conn: Connection,
    group_id: bytes,
    network_id: bytes,
    kind: str,
    level: int,
    parent_id: bytes | None,
    statement_id: bytes,
) -> None:
    await conn.execute(
        """INSERT INTO groups (group_id, network_id, kind, level, parent_id, create_statement)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        group_id,
        network_id,
        kind,
        level,
        parent_id,
        statement_id,
    )


async def group_statement(conn: Connection, group_id: bytes) -> StoredStatement | None:
    row = await conn.fetchrow(
        """SELECT s.body, s.sig FROM groups g JOIN statements s ON s.statement_id = g.create_statement
           WHERE g.group_id = $1""",
        group_id,
    )
    return None if row is None else StoredStatement(row["body"], row["sig"])


async def insert_member(
    conn: Connection,
    member_id: bytes,
    network_id: bytes,
    identity_key: bytes,
    key_bundle_id: bytes,
    *,
    cell_id: bytes,
    inviter_id: bytes | None,
    invite_lookup: bytes | None,
    join_statement: bytes | None,
    join_proof: bytes | None,
    joined_at: datetime,
    admitted_at: datetime | None,
    is_steward: bool,
) -> None:
    await conn.execute(
        """INSERT INTO members (member_id, network_id, identity_key, kem_bundle_statement, cell_id,
               inviter_id, invite_lookup, join_statement, join_proof, joined_at, admitted_at, is_steward)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
        member_id,
        network_id,
        identity_key,
        key_bundle_id,
        cell_id,
        inviter_id,
        invite_lookup,
        join_statement,
        join_proof,
        joined_at,
        admitted_at,
        is_steward,
    )


def _member(row: object) -> MemberRow:
    return MemberRow(**{k: row[k] for k in MemberRow.__dataclass_fields__})  # type: ignore[index]


async def get_member(
    conn: Connection, member_id: bytes, *, for_update: bool = False
) -> MemberRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_MEMBER_COLUMNS} FROM members WHERE member_id = $1{lock}", member_id
    )  # noqa: S608
    return None if row is None else _member(row)


async def member_exists_with_key(conn: Connection, identity_key: bytes) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM members WHERE identity_key = $1", identity_key))


async def join_evidence(
    conn: Connection, member_id: bytes
) -> tuple[StoredStatement | None, bytes | None, StoredStatement | None]:
    """A member's join statement, redemption proof, and key bundle."""
    row = await conn.fetchrow(
        """SELECT j.body AS jb, j.sig AS js, m.join_proof, k.body AS kb, k.sig AS ks
           FROM members m JOIN statements k ON k.statement_id = m.kem_bundle_statement
           LEFT JOIN statements j ON j.statement_id = m.join_statement
           WHERE m.member_id = $1""",
        member_id,
    )
    if row is None:
        return None, None, None
    join = None if row["jb"] is None else StoredStatement(row["jb"], row["js"])
    return join, row["join_proof"], StoredStatement(row["kb"], row["ks"])


async def cell_members(conn: Connection, cell_id: bytes) -> list[MemberRow]:
    """Admitted, unrevoked members of a cell, oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_MEMBER_COLUMNS} FROM members
            WHERE cell_id = $1 AND admitted_at IS NOT NULL AND revoked_at IS NULL
            ORDER BY admitted_at, member_id""",  # noqa: S608
        cell_id,
    )
    return [_member(r) for r in rows]


async def pending_in_cell(conn: Connection, cell_id: bytes) -> list[MemberRow]:
    rows = await conn.fetch(
        f"""SELECT {_MEMBER_COLUMNS} FROM members
            WHERE cell_id = $1 AND admitted_at IS NULL AND blocked_at IS NULL AND revoked_at IS NULL
            ORDER BY joined_at, member_id""",  # noqa: S608
        cell_id,
    )
    return [_member(r) for r in rows]


async def count_vetting_in_cell(conn: Connection, cell_id: bytes) -> int:
    """Newcomers holding a certificate for the cell who are not yet admitted or blocked."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM members m JOIN admissions a ON a.subject_id = m.member_id
               WHERE m.cell_id = $1 AND m.admitted_at IS NULL AND m.blocked_at IS NULL
                 AND m.revoked_at IS NULL""",
            cell_id,
        )
    )


async def mark_admitted(conn: Connection, member_id: bytes, at: datetime) -> None:
    await conn.execute(
        "UPDATE members SET admitted_at = $2 WHERE member_id = $1 AND admitted_at IS NULL",
        member_id,
        at,
    )


async def mark_blocked(conn: Connection, member_id: bytes, at: datetime) -> None:
    await conn.execute(
        "UPDATE members SET blocked_at = $2 WHERE member_id = $1 AND blocked_at IS NULL",
        member_id,
        at,
    )


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


async def mark_revoked(
    conn: Connection,
    member_id: bytes,
    statement_id: bytes,
    at: datetime,
    *,
    network_id: bytes,
    seq: int,
) -> None:
    """Record the revocation at `seq` of the chain; the caller holds the head (revocation_head)."""
    await conn.execute("UPDATE members SET revoked_at = $2 WHERE member_id = $1", member_id, at)
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
    # A revoked member's sessions end with the revocation.
    await conn.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
        member_id,
        at,
    )


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


async def insert_invite(
    conn: Connection,
    lookup_id: bytes,
    network_id: bytes,
    inviter_id: bytes,
    cell_id: bytes,
    proof_public_key: bytes,
    payload: bytes,
    statement_id: bytes,
    expires_at: datetime,
    now: datetime,
) -> bool:
    status = await conn.execute(
        """INSERT INTO invites (lookup_id, network_id, inviter_id, cell_id, proof_public_key, payload,
               statement_id, expires_at, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (lookup_id) DO NOTHING""",
        lookup_id,
        network_id,
        inviter_id,
        cell_id,
        proof_public_key,
        payload,
        statement_id,
        expires_at,
        now,
    )
    return bool(status == "INSERT 0 1")


async def count_open_invites(conn: Connection, inviter_id: bytes, now: datetime) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM invites WHERE inviter_id = $1 AND redeemed_by IS NULL AND expires_at > $2",
            inviter_id,
            now,
        )
    )


async def get_invite(
    conn: Connection, lookup_id: bytes, *, for_update: bool = False
) -> InviteRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"""SELECT lookup_id, network_id, inviter_id, cell_id, proof_public_key, payload, statement_id,
                   expires_at, redeemed_by FROM invites WHERE lookup_id = $1{lock}""",  # noqa: S608
        lookup_id,
    )
    return None if row is None else InviteRow(**dict(row))


async def mark_redeemed(
    conn: Connection, lookup_id: bytes, member_id: bytes, now: datetime
) -> bool:
    # Guarded by redeemed_by IS NULL: of two racing redeemers only one updates a row.
    status = await conn.execute(
        """UPDATE invites SET redeemed_by = $2, redeemed_at = $3
           WHERE lookup_id = $1 AND redeemed_by IS NULL""",
        lookup_id,
        member_id,
        now,
    )
    return bool(status == "UPDATE 1")


async def insert_admission(
    conn: Connection,
    subject_id: bytes,
    certificate_id: bytes,
    issuer_id: bytes,
    cell_id: bytes,
    now: datetime,
) -> bool:
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


async def insert_verdict(
    conn: Connection,
    kind: str,
    subject_id: bytes,
    author_id: bytes,
    statement_id: bytes,
    now: datetime,
) -> bool:
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
    rows = await conn.fetch(
        """SELECT s.body, s.sig, x.created_at FROM (
               SELECT statement_id, created_at FROM vouches WHERE subject_id = $1
               UNION ALL SELECT statement_id, created_at FROM blocks WHERE subject_id = $1) x
           JOIN statements s ON s.statement_id = x.statement_id ORDER BY x.created_at, s.statement_id""",
        subject_id,
    )
    return [StoredStatement(r["body"], r["sig"]) for r in rows]
