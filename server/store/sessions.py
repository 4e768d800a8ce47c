"""SQL for ``login_challenges`` and ``sessions`` (hashed tokens only).

A challenge is spent by the DELETE that reads it, so it answers one login at
most; a session is never handed to another member, only expired or revoked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from crypto.encoding import b32e
from server.store.db import Connection
from server.store.events import CHANNEL as NOTIFY_CHANNEL

# A NOTIFY entry that ends a member's sockets on every instance (see announce_member_gone).
MEMBER_GONE_PREFIX = "ended:"


@dataclass(frozen=True)
class SessionRow:
    member_id: bytes
    network_id: bytes
    expires_at: datetime
    revoked: bool


@dataclass(frozen=True)
class SessionMember:
    """Whose a session is (never changes): their member id and identity key."""

    member_id: bytes
    identity_key: bytes


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
    """Spend the challenge; True if it was this member's and unexpired."""
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


async def session_members(
    conn: Connection, token_hashes: Sequence[bytes]
) -> dict[bytes, SessionMember]:
    """The members of those of ``token_hashes`` that are sessions (live or not)."""
    rows = await conn.fetch(
        """SELECT s.token_hash, s.member_id, m.identity_key
           FROM sessions s JOIN members m ON m.member_id = s.member_id
           WHERE s.token_hash = ANY($1::bytea[])""",
        list(set(token_hashes)),
    )
    return {
        bytes(r["token_hash"]): SessionMember(bytes(r["member_id"]), bytes(r["identity_key"]))
        for r in rows
    }


async def live_sessions(
    conn: Connection, token_hashes: Iterable[bytes], now: datetime
) -> set[bytes]:
    """Those of ``token_hashes`` whose session is unexpired and unrevoked.

    Used by the realtime hub to close sockets of sessions that ended; one
    query for every socket of an instance.
    """
    rows = await conn.fetch(
        """SELECT s.token_hash FROM sessions s JOIN members m ON m.member_id = s.member_id
           WHERE s.token_hash = ANY($1::bytea[]) AND s.expires_at > $2
             AND s.revoked_at IS NULL AND m.revoked_at IS NULL""",
        list(token_hashes),
        now,
    )
    return {r["token_hash"] for r in rows}


async def end_member_sessions(conn: Connection, member_id: bytes, at: datetime) -> None:
    """Revoke every open session of a member (their key was revoked)."""
    await conn.execute(
        "UPDATE sessions SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
        member_id,
        at,
    )


async def announce_member_gone(conn: Connection, member_id: bytes) -> None:
    """Tell every instance, on commit, to close this member's sockets at once.

    On the events channel (server/store/events.py), as the entry
    ``ended:<member id b32>`` that server/realtime/hub.py reads.
    """
    await conn.execute(
        "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, MEMBER_GONE_PREFIX + b32e(member_id)
    )
