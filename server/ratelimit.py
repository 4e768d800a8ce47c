"""Rate limiting as the services use it: anonymous buckets and enforcement.

Rule: the database never holds a client address. A source bucket is
HMAC-SHA256(server_secret, purpose ":" address), which can be counted but not
reversed without the secret (kept outside the database).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timedelta

from aiohttp import web

from server.errors import ApiError, ErrorCode
from server.settings import RateLimit, Settings
from server.store import ratelimit as store
from server.store.db import Executor


def client_address(settings: Settings, request: web.Request) -> str:
    """The client's address as this server sees it (proxy-aware if configured)."""
    if settings.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        # The last hop is the one our own proxy appended; earlier ones are
        # whatever the client claimed.
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"


def bucket(settings: Settings, purpose: str, key: bytes) -> bytes:
    """A bucket for ``purpose`` keyed by arbitrary bytes (a lookup id, a member id)."""
    if ":" in purpose:
        raise ValueError("purpose must not contain ':'")
    message = purpose.encode() + b":" + key
    return hmac.new(settings.server_secret, message, hashlib.sha256).digest()


def source_bucket(settings: Settings, request: web.Request, purpose: str) -> bytes:
    """The bucket for ``purpose`` from this request's client address."""
    return bucket(settings, purpose, client_address(settings, request).encode())


async def enforce(db: Executor, bucket_id: bytes, limit: RateLimit, now: datetime) -> None:
    """Count a hit; raise 429 rate_limited if the window's limit is exceeded."""
    if not await store.hit(db, bucket_id, limit.count, limit.window_s, now):
        window_end = store.window_start(now, limit.window_s) + timedelta(seconds=limit.window_s)
        retry_after = max(1, math.ceil((window_end - now).total_seconds()))
        raise ApiError(
            429,
            ErrorCode.RATE_LIMITED,
            "too many attempts; wait a while and try again",
            headers={"Retry-After": str(retry_after)},
        )
