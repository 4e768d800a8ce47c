"""Rate limits as the handlers use them: anonymous buckets, counting a hit, pruning old windows.

Rule: the database never holds a client address. A bucket is
HMAC-SHA256(server_secret, purpose ":" key), which can be counted but not
reversed without the secret (kept outside the database). A hit is counted on
its own, outside the request's transaction, so a refused request still
spends it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timedelta

from server.errors import ApiError, ErrorCode
from server.settings import RateLimit, Settings
from server.store import rate_limits as store
from server.store.db import Pool


def bucket(settings: Settings, purpose: str, key: bytes) -> bytes:
    """A bucket for ``purpose`` keyed by arbitrary bytes (a lookup id, a member id, an address)."""
    if ":" in purpose:
        raise ValueError("purpose must not contain ':'")
    message = purpose.encode() + b":" + key
    return hmac.new(settings.server_secret, message, hashlib.sha256).digest()


async def enforce(pool: Pool, bucket_id: bytes, limit: RateLimit, now: datetime) -> None:
    """Count a hit; raise 429 rate_limited if the window's limit is exceeded."""
    if not await store.hit(pool, bucket_id, limit.count, limit.window_s, now):
        window_end = store.window_start(now, limit.window_s) + timedelta(seconds=limit.window_s)
        retry_after = max(1, math.ceil((window_end - now).total_seconds()))
        raise ApiError(
            429,
            ErrorCode.RATE_LIMITED,
            "too many attempts; wait a while and try again",
            headers={"Retry-After": str(retry_after)},
        )


async def prune(pool: Pool, now: datetime, keep_s: int) -> int:
    """Delete windows older than ``keep_s`` seconds (housekeeping); returns rows deleted."""
    return await store.prune(pool, now, keep_s)
