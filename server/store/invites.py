"""SQL for the ``invites`` table: open invites, their sealed payloads, and who redeemed each.

An invite is redeemed at most once: the update that marks it is guarded by
``redeemed_by IS NULL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection


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
    """Store an invite; False if its lookup id is taken."""
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
