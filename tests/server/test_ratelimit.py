"""Rate limits as handlers use them: 429 with Retry-After, and anonymous buckets.

The counters themselves: tests/store/test_rate_limits.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from server.errors import ApiError, ErrorCode
from server.http.common import client_address, source_bucket
from server.services import ratelimit
from server.settings import RateLimit, Settings
from server.store.db import Pool

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def _request(remote: str, headers: dict[str, str] | None = None) -> Any:
    request = make_mocked_request("POST", "/v1/login", headers=headers or {})
    return request.clone(remote=remote)


async def test_enforce_raises_429_with_retry_after(pool: Pool, settings: Settings) -> None:
    bucket = ratelimit.bucket(settings, "login", b"member")
    limit = RateLimit(1, 60)
    await ratelimit.enforce(pool, bucket, limit, T0.replace(second=20))
    with pytest.raises(ApiError) as refused:
        await ratelimit.enforce(pool, bucket, limit, T0.replace(second=20))
    assert refused.value.status == 429
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert refused.value.headers["Retry-After"] == "40"


async def test_buckets_hold_no_ip_address(pool: Pool, settings: Settings) -> None:
    address = "203.0.113.77"
    bucket = source_bucket(settings, _request(address), "redeem")
    await ratelimit.enforce(pool, bucket, RateLimit(5, 60), T0)
    stored = await pool.fetchval("SELECT bucket FROM rate_limits")
    assert stored == bucket
    assert len(stored) == 32
    assert address.encode() not in stored
    dump = await pool.fetchval("SELECT string_agg(encode(bucket, 'escape'), '') FROM rate_limits")
    assert address not in dump


def test_source_buckets_separate_purposes_addresses_and_secrets(settings: Settings) -> None:
    a = source_bucket(settings, _request("198.51.100.1"), "redeem")
    assert a == source_bucket(settings, _request("198.51.100.1"), "redeem")
    assert a != source_bucket(settings, _request("198.51.100.2"), "redeem")
    assert a != source_bucket(settings, _request("198.51.100.1"), "login")
    other = settings.with_changes(server_secret=b"\x01" * 32)
    assert a != source_bucket(other, _request("198.51.100.1"), "redeem")


def test_forwarded_for_is_used_only_when_trusted(settings: Settings) -> None:
    request = _request("10.0.0.1", {"X-Forwarded-For": "1.1.1.1, 192.0.2.9"})
    assert client_address(settings, request) == "10.0.0.1"
    trusting = settings.with_changes(trust_forwarded_for=True)
    assert client_address(trusting, request) == "192.0.2.9"
