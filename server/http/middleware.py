"""The server's middlewares: the access log and the one error middleware.

Rules: every error leaves as ``{"error": {"code", "message"}}``; an unexpected
exception becomes a bare 500 and is logged by type and route only. Logs never
carry client addresses, request bodies, query strings or tokens, which is why
aiohttp's own access log is switched off and replaced here. The access log
line carries its fields (method, route, status, duration_ms) for the JSON log
format (server/logs.py), and the same request is counted in the metrics
(server/metrics.py) when they are on.
"""

from __future__ import annotations

import logging
import time
import traceback

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from server.errors import DATABASE_OUTAGE, ApiError, ErrorCode
from server.http.appkeys import METRICS_KEY

access_log = logging.getLogger("spokes.access")
error_log = logging.getLogger("spokes.error")

_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.BODY_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
}
_HTTP_MESSAGES = {
    404: "no such endpoint",
    405: "this endpoint does not accept that method",
    413: "the request body is too large",
}


def route_name(request: web.Request) -> str:
    """The route template (``/v1/groups/{group_id}``), never the concrete path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "<unmatched>"


def error_response(
    status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error body every failure uses."""
    body = {"error": {"code": code.value, "message": message}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log (and count) method, route template, status and duration of every request."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        seconds = time.perf_counter() - started
        route = route_name(request)
        access_log.info(
            "%s %s %d %.1fms",
            request.method,
            route,
            status,
            seconds * 1000,
            extra={
                "method": request.method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
            },
        )
        metrics = request.config_dict.get(METRICS_KEY)
        if metrics is not None:
            metrics.request(request.method, route, status, seconds)


OUTAGE_RETRY_AFTER_S = 1


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        return _from_http_exception(exc)
    except asyncpg.UniqueViolationError:
        # Two requests raced for the same unique fact (a key, a vouch, an
        # invite); the transaction rolled back, so nothing was half-written.
        return error_response(409, ErrorCode.CONFLICT, "already recorded by another request")
    except DATABASE_OUTAGE as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # The member hung up (a socket closed while we wrote to it): no
            # outage, and nobody to answer. Logged by type and route only.
            error_log.info(
                "client went away in %s %s (%s)",
                request.method,
                route_name(request),
                type(exc).__name__,
            )
            return error_response(499, ErrorCode.BAD_REQUEST, "the client went away")
        # The database went away (a restart, a failover, the network): the
        # transaction did not commit, so the same request may simply come again.
        error_log.warning(
            "database unavailable in %s %s (%s)",
            request.method,
            route_name(request),
            type(exc).__name__,
        )
        return error_response(
            503,
            ErrorCode.UNAVAILABLE,
            "the database is unavailable for a moment; nothing was stored, send it again",
            {"Retry-After": str(OUTAGE_RETRY_AFTER_S)},
        )
    except Exception as exc:
        error_log.error(
            "unhandled %s in %s %s at %s",
            type(exc).__name__,
            request.method,
            route_name(request),
            _where(exc),
        )
        return error_response(500, ErrorCode.INTERNAL, "internal error")


def _client_gone(request: web.Request) -> bool:
    """Whether the connection to the member is closed (their side hung up)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    status = exc.status
    code = _HTTP_CODES.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST)
    message = _HTTP_MESSAGES.get(status, "internal error" if status >= 500 else "bad request")
    # Keep protocol headers such as Allow (405); drop the text/plain body's ones.
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return error_response(status, code, message, headers)


def _where(exc: BaseException) -> str:
    """File and line of the innermost frame: enough to find the bug, no data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"
