"""SQL for the ``members`` table: who belongs to a network, in which cell, and how far along.

A member row is written when a newcomer redeems an invite (or a founder
founds the network) and then only moves forward: admitted, blocked, revoked,
or moved to another cell by a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection
from server.store.statements import StoredStatement


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
    frozen_until: datetime | None = None
    suspended: bool = False


_MEMBER_COLUMNS = """member_id, network_id, identity_key, cell_id, inviter_id, invite_lookup,
    joined_at, admitted_at, blocked_at, revoked_at, is_steward, frozen_until, suspended"""


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
    """Add a member; a key already a member's is refused by the table's unique key."""
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


async def identity_key(conn: Connection, member_id: bytes) -> bytes | None:
    value = await conn.fetchval("SELECT identity_key FROM members WHERE member_id = $1", member_id)
    return None if value is None else bytes(value)


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


async def mark_revoked(conn: Connection, member_id: bytes, at: datetime) -> None:
    await conn.execute("UPDATE members SET revoked_at = $2 WHERE member_id = $1", member_id, at)


async def set_member_cell(conn: Connection, member_ids: list[bytes], cell_id: bytes) -> None:
    await conn.execute(
        "UPDATE members SET cell_id = $2 WHERE member_id = ANY($1::bytea[])", member_ids, cell_id
    )


async def set_frozen_until(conn: Connection, member_id: bytes, until: datetime | None) -> None:
    """Until when a frozen member may not log in (None: not frozen); see schema/009."""
    await conn.execute(
        "UPDATE members SET frozen_until = $2 WHERE member_id = $1", member_id, until
    )


async def set_suspended(conn: Connection, member_ids: list[bytes], suspended: bool) -> None:
    """Whether members are suspended after a review (crypto/review.py); see schema/009."""
    await conn.execute(
        "UPDATE members SET suspended = $2 WHERE member_id = ANY($1::bytea[])",
        member_ids,
        suspended,
    )
