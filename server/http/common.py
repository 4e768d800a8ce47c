"""What every handler module shares: authentication, ids in paths, JSON replies, rate limits."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from crypto.encoding import b32d, b64e
from server.errors import ApiError, ErrorCode
from server.http.appkeys import CLOCK_KEY, POOL_KEY, SETTINGS_KEY
from server.services import auth, ratelimit
from server.settings import Settings

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
    return await auth.authenticate(request.app[POOL_KEY], token, request.app[CLOCK_KEY]())


def parse_id(text: str, size: int, what: str) -> bytes:
    """An id of ``size`` bytes from its one text: lowercase unpadded base32 (400 otherwise)."""
    raw = b32_id(text)
    if raw is None or len(raw) != size:
        raise ApiError(400, ErrorCode.BAD_REQUEST, f"{what} is not a valid id")
    return raw


def b32_id(text: object) -> bytes | None:
    """The bytes of an id's text, or None: only the lowercase form b32e writes is read
    (b32d takes either case), so that one id has one text."""
    if not isinstance(text, str) or text != text.lower():
        return None
    try:
        return b32d(text)
    except ValueError:
        return None


def path_id(request: web.Request, name: str, size: int) -> bytes:
    return parse_id(request.match_info[name], size, name)


class Signed(Protocol):
    """A statement as services hand it back: its body and signature."""

    @property
    def body(self) -> bytes: ...

    @property
    def sig(self) -> bytes: ...


def statement_wire(stored: Signed) -> dict[str, str]:
    """A statement as the API shows it: {"body": "b64", "sig": "b64"}."""
    return {"body": b64e(stored.body), "sig": b64e(stored.sig)}


def json_response(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


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


def source_bucket(settings: Settings, request: web.Request, purpose: str) -> bytes:
    """The rate-limit bucket for ``purpose`` from this request's client address."""
    return ratelimit.bucket(settings, purpose, client_address(settings, request).encode())


async def rate_limit(request: web.Request, purpose: str, key: bytes | None = None) -> None:
    """Spend one hit of the `rate_<purpose>` limit, per source address or per `key`."""
    settings = request.app[SETTINGS_KEY]
    limit = getattr(settings, f"rate_{purpose}")
    if key is None:
        bucket = source_bucket(settings, request, purpose)
    else:
        bucket = ratelimit.bucket(settings, purpose, key)
    # Counted on its own (services/ratelimit.py): a refused request still spends a hit.
    await ratelimit.enforce(request.app[POOL_KEY], bucket, limit, request.app[CLOCK_KEY]())
