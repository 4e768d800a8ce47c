"""What every handler module shares: authentication, ids in paths, JSON replies, rate limits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crypto.encoding import b32d
from server import ratelimit
from server.errors import ApiError, ErrorCode
from server.http.appkeys import CLOCK_KEY, POOL_KEY, SETTINGS_KEY
from server.services import auth
from server.store.db import transaction

MAX_TOKEN_CHARS = 200


def bearer_token(request: web.Request) -> str | None:
    """The bearer token if an Authorization header was sent (401 if malformed)."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    if not header.startswith("Bearer ") or len(header) > MAX_TOKEN_CHARS:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "not logged in: log in first")
    return header[7:]


async def authenticate(request: web.Request) -> auth.Session:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "not logged in: log in first")
    async with transaction(request.app[POOL_KEY]) as conn:
        return await auth.authenticate(conn, token, request.app[CLOCK_KEY]())


def parse_id(text: str, size: int, what: str) -> bytes:
    try:
        raw = b32d(text)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise ApiError(400, ErrorCode.BAD_REQUEST, f"{what} is not a valid id")
    return raw


def path_id(request: web.Request, name: str, size: int) -> bytes:
    return parse_id(request.match_info[name], size, name)


def json_response(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def rate_limit(request: web.Request, purpose: str, key: bytes | None = None) -> None:
    """Spend one hit of the `rate_<purpose>` limit, per source address or per `key`."""
    settings = request.app[SETTINGS_KEY]
    limit = getattr(settings, f"rate_{purpose}")
    if key is None:
        bucket = ratelimit.source_bucket(settings, request, purpose)
    else:
        bucket = ratelimit.bucket(settings, purpose, key)
    # Counted in its own transaction: a refused request still spends a hit.
    await ratelimit.enforce(request.app[POOL_KEY], bucket, limit, request.app[CLOCK_KEY]())
