"""SQL for the ``rate_limits`` table: fixed-window counters.

Rule: one counter row per (bucket, window start); counting is a single
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` so concurrent requests on
several server instances cannot lose or double-count hits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.store.db import Executor

_HIT = """
INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1)
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1
RETURNING hits
"""


def window_start(now: datetime, window_s: int) -> datetime:
    """Start of the fixed window of ``window_s`` seconds that contains ``now``."""
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_s, UTC)


async def hit(db: Executor, bucket: bytes, limit: int, window_s: int, now: datetime) -> bool:
    """Count one hit on ``bucket``; True if it is within ``limit`` for this window.

    Refused hits are counted too, so hammering does not reopen the window.
    ``bucket`` must already separate purposes: two limits with different windows
    must not share a bucket.
    """
    hits = await db.fetchval(_HIT, bucket, window_start(now, window_s))
    return int(hits) <= limit


async def prune(db: Executor, now: datetime, keep_s: int) -> int:
    """Delete windows that started more than ``keep_s`` seconds ago; returns rows deleted.

    ``keep_s`` must be at least the longest window in use, or live counters vanish.
    """
    status = await db.execute(
        "DELETE FROM rate_limits WHERE window_start < $1", now - timedelta(seconds=keep_s)
    )
    return int(str(status).rsplit(" ", 1)[-1])
