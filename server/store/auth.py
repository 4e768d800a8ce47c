"""SQL for login challenges and sessions (hashed tokens only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from server.store.db import Connection


@dataclass(frozen=True)
class SessionRow:
    member_id: bytes
    network_id: bytes
    expires_at: datetime
    revoked: bool


async def insert_challenge(
    conn: Connection, challenge: bytes, member_id: bytes, expires: datetime
) -> None:
    await conn.execute(
        "INSERT INTO login_challenges (challenge, member_id, expires_at) VALUES ($1, $2, $3)",
        challenge,
        member_id,
        expires,
    )


async def take_challenge(
    conn: Connection, challenge: bytes, member_id: bytes, now: datetime
) -> bool:
    row = await conn.fetchval(
        "DELETE FROM login_challenges WHERE challenge = $1 RETURNING member_id = $2 AND expires_at > $3",
        challenge,
        member_id,
        now,
    )
    return bool(row)


async def insert_session(
    conn: Connection, digest: bytes, member_id: bytes, now: datetime, expires: datetime
) -> None:
    await conn.execute(
        "INSERT INTO sessions (token_hash, member_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        digest,
        member_id,
        now,
        expires,
    )


async def get_session(conn: Connection, digest: bytes) -> SessionRow | None:
    row = await conn.fetchrow(
        """SELECT s.member_id, m.network_id, s.expires_at,
                  (s.revoked_at IS NOT NULL OR m.revoked_at IS NOT NULL) AS revoked
           FROM sessions s JOIN members m ON m.member_id = s.member_id WHERE s.token_hash = $1""",
        digest,
    )
    return None if row is None else SessionRow(**dict(row))
