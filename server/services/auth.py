"""Challenge–response login and bearer sessions.

The identity key signs a fresh, single-use server challenge; the answer is a
random token of which only a SHA-256 hash is stored. Unknown members get a
challenge like anyone else, and every failed login gives the same error, so
the login endpoints don't tell who is a member.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from crypto import labels
from crypto.encoding import encode
from crypto.errors import CryptoError
from crypto.keys import IdentityPublicKey
from server.errors import ApiError, ErrorCode
from server.store import members as member_store
from server.store import sessions as session_store
from server.store.db import Connection, Pool, transaction

CHALLENGE_BYTES = 32
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Session:
    member_id: bytes
    network_id: bytes


def login_message(challenge: bytes, member_id: bytes) -> bytes:
    return encode({"challenge": challenge, "member": member_id})


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


async def issue_challenge(
    pool: Pool, member_id: bytes, now: datetime, ttl: timedelta
) -> tuple[bytes, datetime]:
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    expires = now + ttl
    async with transaction(pool) as conn:
        member = await member_store.get_member(conn, member_id)
        if member is not None and member.revoked_at is None:
            await session_store.insert_challenge(conn, challenge, member_id, expires)
    return challenge, expires


def _login_failed() -> ApiError:
    return ApiError(
        401, ErrorCode.LOGIN_FAILED, "login failed: log in again with a fresh challenge"
    )


async def open_session(
    pool: Pool,
    member_id: bytes,
    challenge: bytes,
    signature: bytes,
    now: datetime,
    ttl: timedelta,
) -> tuple[str, datetime]:
    # The challenge is taken in its own transaction, committed before anything
    # is checked: a failed attempt's rollback can't bring it back, so each
    # challenge gets exactly one try whatever the outcome.
    async with transaction(pool) as conn:
        taken = await session_store.take_challenge(conn, challenge, member_id, now)
    if not taken:
        raise _login_failed()
    async with transaction(pool) as conn:
        member = await member_store.get_member(conn, member_id)
        if member is None or member.revoked_at is not None:
            raise _login_failed()
        try:
            IdentityPublicKey(member.identity_key).verify(
                labels.LOGIN, login_message(challenge, member_id), signature
            )
        except CryptoError:
            raise _login_failed() from None
        if member.frozen_until is not None and member.frozen_until > now:
            raise ApiError(
                403,
                ErrorCode.FROZEN,
                "your cell froze your membership until "
                f"{member.frozen_until.isoformat(timespec='minutes')}: ask your cellmates",
            )
        if member.suspended:
            raise ApiError(
                403,
                ErrorCode.SUSPENDED,
                "your cell suspended you after a review: members outside the review can "
                "vouch for you again",
            )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires = now + ttl
        await session_store.insert_session(conn, token_hash(token), member_id, now, expires)
    return token, expires


async def authenticate(pool: Pool, token: str, now: datetime) -> Session:
    """The session a bearer token opens (401 if there is none, or it ended)."""
    async with transaction(pool) as conn:
        return await session_of(conn, token, now)


async def session_of(conn: Connection, token: str, now: datetime) -> Session:
    """authenticate, inside the caller's transaction."""
    found = await session_store.get_session(conn, token_hash(token))
    if found is None or found.revoked:
        raise not_logged_in()
    check_expiry(found.expires_at, now)
    return Session(found.member_id, found.network_id)


def not_logged_in() -> ApiError:
    """The 401 for a missing, unknown or revoked session."""
    return ApiError(401, ErrorCode.UNAUTHORIZED, "not logged in: log in again")


def check_expiry(expires_at: datetime, now: datetime) -> None:
    if expires_at <= now:
        raise ApiError(401, ErrorCode.SESSION_EXPIRED, "your session has expired: log in again")
