"""HTTP and WebSocket handlers for groups and live events (docs/API.md).

The HTTP handlers are authenticate → parse → one service call (which owns
its transaction) → respond. The WebSocket handler authenticates, then only
reads the client's messages; everything it sends goes through the socket's
single writer in server/realtime/hub.py, so control messages and events
never interleave out of order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from crypto.encoding import b32e
from server.errors import DATABASE_OUTAGE, ApiError, ErrorCode, bad_request
from server.http.appkeys import CLOCK_KEY, HUB_KEY, POOL_KEY, SETTINGS_KEY, WRITER_KEY
from server.http.common import (
    MAX_TOKEN_CHARS,
    authenticate,
    b32_id,
    bearer_token,
    rate_limit,
)
from server.http.groups import sealed_message
from server.http.parse import parse_natural, query_params
from server.realtime.feed import Socket, not_found_notice
from server.realtime.hub import Hub
from server.services import events as service
from server.services import messages
from server.services.messages import Accepted

log = logging.getLogger("spokes.realtime")

AUTH_TIMEOUT_S = 10.0
HEARTBEAT_S = 30.0
MAX_UNANSWERED = 64  # sends over one socket still waiting for their answer
# Messages one socket may send (flood safety, issue 12): far above a member's pace,
# and above what one socket carries at the message bench's 2,000/s over 20 members.
SOCKET_MESSAGES_PER_S = 500.0
SOCKET_MESSAGES_BURST = 1000
MAX_SUBSCRIPTIONS = 256
# What sockets may cost one instance (flood safety, issue 12; see SocketCounts).
MAX_SOCKETS_PER_MEMBER = 32  # open at once: a member's devices and daemon, many times over
MAX_WAITING_LOGINS = 1_000  # upgraded, still waiting for their login message
WAITING_RETRY_AFTER_S = 5
# Answers waiting for a client that sends and does not read them: one message can
# bring MAX_SUBSCRIPTIONS + 1 at once, a reading client never gets near this.
MAX_OUTBOX = 1_024
MAX_SEQ = 2**63 - 1
DEFAULT_PAGE = 100
GROUP_ID_BYTES = (16, 64)

MAX_REF_CHARS = 64

CLOSE_UNAUTHENTICATED = 4401
CLOSE_UNSUPPORTED = 1003
CLOSE_INTERNAL = 1011
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


def add_event_routes(app: web.Application) -> None:
    app[SOCKETS_KEY] = SocketCounts()
    r = app.router
    r.add_get("/v1/ws", websocket)
    r.add_get("/v1/groups", list_groups)
    r.add_get("/v1/groups/{group_id}/events", list_events)


def _group_id(text: object) -> bytes | None:
    if not isinstance(text, str) or len(text) > 128:
        return None
    raw = b32_id(text)
    return raw if raw is not None and GROUP_ID_BYTES[0] <= len(raw) <= GROUP_ID_BYTES[1] else None


def _query_int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    return parse_natural(text, f"query parameter {name!r}", low, high)


async def list_groups(request: web.Request) -> web.Response:
    """GET /v1/groups → {"groups": [{"group_id": "…", "kind": "cell", "level": 0,
    "members": 3, "last_seq": 42}]}"""
    member_id = (await authenticate(request)).member_id
    groups = await service.my_groups(request.app[POOL_KEY], member_id)
    return web.json_response({"groups": [service.group_wire(g) for g in groups]})


async def list_events(request: web.Request) -> web.Response:
    """GET /v1/groups/{group_id}/events?since=40&limit=100 →
    {"events": [{"group": "…", "seq": 41, "kind": "message", "sender": "…",
    "body": "b64", "created_at": 1700000000}, ...], "next": 42}"""
    member_id = (await authenticate(request)).member_id
    group_id = _group_id(request.match_info["group_id"])
    if group_id is None:
        raise bad_request("group_id is not a valid id")
    query = query_params(request, ("since", "limit"))
    since = _query_int(query, "since", 0, 0, MAX_SEQ)
    limit = _query_int(query, "limit", DEFAULT_PAGE, 1, service.MAX_PAGE)
    rows = await service.read_events(request.app[POOL_KEY], member_id, group_id, since, limit)
    text = b32e(group_id)
    return web.json_response(
        {
            "events": [service.event_wire(row, text) for row in rows],
            "next": rows[-1].seq if rows else since,
        }
    )


async def websocket(request: web.Request) -> web.StreamResponse:
    """GET /v1/ws (WebSocket; Authorization: Bearer <token>, or a first message
    {"type": "auth", "token": "…"} within 10 s)
    → {"type": "ready", "member_id": "…"}
    ← {"type": "subscribe", "cursors": {"<group>": 40}}
    → {"type": "subscribed", "cursors": {"<group>": 40}}
    → {"type": "event", "group": "…", "seq": 41, "kind": "message", ...}
    → {"type": "batch", "events": [{"type": "event", ...}, ...]}
    ← {"type": "send", "ref": "7", "group": "…", "header": "b64", "ciphertext": "b64",
       "signature": "b64"}
    → {"type": "sent", "ref": "7", "group": "…", "message_id": "…", "cursor": 42}
      (or {"type": "error", "ref": "7", "code": "stale_epoch", "message": "…"})"""
    max_size = request.app[SETTINGS_KEY].max_body_bytes  # the largest message fits, as over HTTP
    ws = FeedSocket(heartbeat=HEARTBEAT_S, max_msg_size=max_size)
    if not ws.can_prepare(request).ok:
        raise bad_request("this endpoint speaks WebSocket: send an Upgrade request")
    # A flood of connects gets 429 with Retry-After before any upgrade or database read.
    await rate_limit(request, "socket_per_source")
    sockets = request.app[SOCKETS_KEY]
    token = bearer_token(request)
    if token is not None:  # a bad header gets a plain 401 before the upgrade
        session = await _open_session(request, token)
        await rate_limit(request, "socket_per_member", session.member_id)
        if not sockets.room_for(session.member_id):
            raise _too_many_sockets()
        with sockets.held_by(session.member_id):
            await ws.prepare(request)
            await _serve(request, ws, session)
        return ws
    if not sockets.room_to_log_in():
        raise ApiError(
            503,
            ErrorCode.UNAVAILABLE,
            "too many sockets are logging in at once: connect again in a moment",
            headers={"Retry-After": str(WAITING_RETRY_AFTER_S)},
        )
    with sockets.logging_in():
        await ws.prepare(request)
        found = await _auth_by_message(request, ws)
    # Closed once out of the logins' count: a close waits (up to 10 s) for the client's.
    if isinstance(found, Refusal):
        if found.notice is not None:
            await _say(ws, found.notice)
        await ws.close(code=found.code, message=found.reason.encode())
    elif not sockets.room_for(found.member_id):
        await _say(ws, _error(ErrorCode.RATE_LIMITED, _too_many_sockets().message))
        await ws.close(code=CLOSE_TRY_AGAIN, message=b"too many sockets")
    else:
        with sockets.held_by(found.member_id):
            await _serve(request, ws, found)
    return ws


async def _serve(
    request: web.Request, ws: web.WebSocketResponse, session: service.FeedSession
) -> None:
    """A logged-in socket: its events go out through the hub, its messages are read here."""
    hub = request.app[HUB_KEY]
    socket = hub.attach(ws, session)
    socket.say({"type": "ready", "member_id": b32e(session.member_id)})
    pace = Pace(SOCKET_MESSAGES_PER_S, SOCKET_MESSAGES_BURST)
    try:
        async for message in ws:
            if len(socket.outbox) >= MAX_OUTBOX:
                # Frames that arrived together are read without a pause: the writer's
                # turn first; a client that reads takes its answers now.
                await asyncio.sleep(0)
                if len(socket.outbox) >= MAX_OUTBOX:
                    # It sends and does not read: the answers would pile up here.
                    socket.outbox.clear()
                    socket.close(CLOSE_POLICY, "answers not read")
                    break
            wait = pace.take(time.monotonic())
            if wait > 0:  # too many messages: this one is dropped, and the client told
                socket.say(
                    {
                        **_error(ErrorCode.RATE_LIMITED, "too many messages on this socket"),
                        "retry_after": round(max(wait, 0.001), 3),
                    }
                )
                continue
            if message.type != WSMsgType.TEXT:
                socket.close(
                    CLOSE_UNSUPPORTED, "text only", _error(ErrorCode.BAD_REQUEST, "send JSON text")
                )
                break
            try:
                await _on_message(request, hub, socket, message.data)
            except DATABASE_OUTAGE as exc:  # a subscribe met an outage: resubscribe soon
                log.warning("websocket message met an outage: %s", type(exc).__name__)
                socket.close(OUTAGE.code, OUTAGE.reason, OUTAGE.notice)
                break
            except Exception as exc:  # the socket is open: no middleware can answer now
                log.error("websocket message failed: %s", type(exc).__name__)
                socket.close(FAILED.code, FAILED.reason, FAILED.notice)
                break
    finally:
        await hub.detach(socket)
        # Whatever was still unsent goes now, not when the garbage collector next
        # finds the socket (a flood's leftovers stayed for minutes otherwise).
        socket.outbox.clear()


def _too_many_sockets() -> ApiError:
    return ApiError(
        429,
        ErrorCode.RATE_LIMITED,
        f"at most {MAX_SOCKETS_PER_MEMBER} open sockets per member: close one first",
        headers={"Retry-After": str(WAITING_RETRY_AFTER_S)},
    )


class SocketCounts:
    """The sockets this instance holds: per member, and those still waiting to log in.

    Rule: together with the connect limits they bound what sockets can cost one
    instance in memory (about 20 KiB each): a member holds at most
    MAX_SOCKETS_PER_MEMBER, and at most MAX_WAITING_LOGINS sockets wait for their
    login message at once (each waits AUTH_TIMEOUT_S at most). Checked and taken
    with no await between, so concurrent connects can't both take the last place.
    """

    def __init__(self) -> None:
        self.waiting = 0
        self._members: dict[bytes, int] = {}

    def held(self, member_id: bytes) -> int:
        return self._members.get(member_id, 0)

    def room_for(self, member_id: bytes) -> bool:
        return self.held(member_id) < MAX_SOCKETS_PER_MEMBER

    def room_to_log_in(self) -> bool:
        return self.waiting < MAX_WAITING_LOGINS

    @contextmanager
    def held_by(self, member_id: bytes) -> Iterator[None]:
        self._members[member_id] = self.held(member_id) + 1
        try:
            yield
        finally:
            left = self._members[member_id] - 1
            if left:
                self._members[member_id] = left
            else:  # no entry stays behind for a member with no socket
                del self._members[member_id]

    @contextmanager
    def logging_in(self) -> Iterator[None]:
        self.waiting += 1
        try:
            yield
        finally:
            self.waiting -= 1


# Defined here, not in server/http/appkeys.py: only this module uses it.
SOCKETS_KEY = web.AppKey("socket_counts", SocketCounts)


class FeedSocket(web.WebSocketResponse):
    """aiohttp's WebSocket response, less one leak: once closed, it arms no heartbeat.

    aiohttp 3.14 arms the heartbeat again when the client's answer to our close
    frame arrives after the socket closed. The timer then held each closed
    socket, its request and buffers for 30-45 s more, long enough to be moved
    to the garbage collector's oldest generation: 5,000 refused logins left
    45 MiB behind for good (issue 12).
    """

    def _reset_heartbeat(self) -> None:
        if not self.closed:
            super()._reset_heartbeat()


class Pace:
    """A token bucket for one socket's messages: `rate` a second, `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), 0.0

    def take(self, now: float) -> float:
        """0 if a message may pass now (one token spent), else the seconds until one may."""
        if self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1 - 1e-9:  # (a token refilled exactly on time counts)
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        return (1 - self.tokens) / self.rate


async def _open_session(request: web.Request, token: str) -> service.FeedSession:
    return await service.open_feed_session(request.app[POOL_KEY], token, request.app[CLOCK_KEY]())


async def _auth_by_message(
    request: web.Request, ws: web.WebSocketResponse
) -> service.FeedSession | Refusal:
    """For browsers, which can't set headers on a WebSocket: the first message logs in.

    Upgraded already, no HTTP status can answer: a refusal is an error frame
    and a close code, which the caller sends.
    """
    try:
        message = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        return Refusal(CLOSE_UNAUTHENTICATED, "not logged in", LOG_IN_FIRST)
    if message.type != WSMsgType.TEXT:
        return Refusal(CLOSE_UNAUTHENTICATED, "not logged in")
    data = _load(message.data)
    token = data.get("token") if data is not None and data.get("type") == "auth" else None
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        return Refusal(CLOSE_UNAUTHENTICATED, "not logged in", LOG_IN_FIRST)
    try:
        session = await _open_session(request, token)
        # Paced as a header login is before its upgrade (issue 12, flood safety).
        await rate_limit(request, "socket_per_member", session.member_id)
        return session
    except ApiError as exc:
        notice = _error(exc.code, exc.message)
        if exc.status == 429:
            return Refusal(CLOSE_TRY_AGAIN, "too many connects", notice)
        return Refusal(CLOSE_UNAUTHENTICATED, "not logged in", notice)
    except DATABASE_OUTAGE as exc:  # as for a subscribe: come back soon (1013)
        log.warning("websocket login met an outage: %s", type(exc).__name__)
        return OUTAGE
    except Exception as exc:  # no middleware can answer on an upgraded socket
        log.error("websocket login failed: %s", type(exc).__name__)
        return FAILED


async def _on_message(request: web.Request, hub: Hub, socket: Socket, text: str) -> None:
    data = _load(text)
    kind = data.get("type") if data is not None else None
    if kind == "send":
        _send_message(request, socket, data or {})
    elif kind == "subscribe":
        await _subscribe(request, hub, socket, data or {})
    elif kind == "unsubscribe":
        groups = (data or {}).get("groups")
        if not isinstance(groups, list) or len(groups) > MAX_SUBSCRIPTIONS:
            socket.say(_error(ErrorCode.BAD_REQUEST, "'groups' must be a list of group ids"))
            return
        for text_id in groups:
            group_id = _group_id(text_id)
            if group_id is not None:
                hub.unsubscribe(socket, group_id)
    elif kind == "auth":
        socket.say(_error(ErrorCode.BAD_REQUEST, "this socket is already logged in"))
    else:
        socket.say(
            _error(ErrorCode.BAD_REQUEST, "expected a JSON object with type 'subscribe' or 'send'")
        )


async def _subscribe(request: web.Request, hub: Hub, socket: Socket, data: dict[str, Any]) -> None:
    cursors = data.get("cursors")
    if not isinstance(cursors, dict) or len(cursors) > MAX_SUBSCRIPTIONS:
        socket.say(
            _error(
                ErrorCode.BAD_REQUEST,
                f"'cursors' must map at most {MAX_SUBSCRIPTIONS} groups to seqs",
            )
        )
        return
    wanted: dict[bytes, int] = {}
    for text_id, cursor in cursors.items():
        group_id = _group_id(text_id)
        if group_id is None:
            socket.say({**_error(ErrorCode.BAD_REQUEST, "not a group id"), "group": text_id[:128]})
        elif isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor <= MAX_SEQ:
            socket.say(
                {**_error(ErrorCode.BAD_REQUEST, "a cursor is a seq >= 0"), "group": text_id}
            )
        else:
            wanted[group_id] = cursor
    accepted = await service.accept_cursors(request.app[POOL_KEY], socket.member_id, wanted)
    for group_id in wanted.keys() - accepted.keys():
        socket.say(not_found_notice(b32e(group_id)))
    effective = hub.subscribe(socket, accepted)
    socket.say({"type": "subscribed", "cursors": {b32e(g): c for g, c in effective.items()}})


def _send_message(request: web.Request, socket: Socket, data: dict[str, Any]) -> None:
    """A message sent over the socket: the same checks and batch as POST .../messages.

    The answer comes back on the socket, tagged with the client's ``ref``;
    sends over one socket are appended in the order they arrived.
    """
    ref = data.get("ref")
    if not isinstance(ref, str) or len(ref) > MAX_REF_CHARS:
        socket.say(
            _error(
                ErrorCode.BAD_REQUEST,
                f"'ref' must be a string of at most {MAX_REF_CHARS} characters",
            )
        )
        return
    group_text = data.get("group")
    try:
        group_id = _group_id(group_text)
        if group_id is None:
            raise bad_request("'group' is not a group id")
        item = messages.submission(socket.token_hash, group_id, sealed_message(data))
    except ApiError as exc:
        socket.say({**_error(exc.code, exc.message), "ref": ref})
        return
    if socket.unanswered >= MAX_UNANSWERED:
        socket.say(
            {
                **_error(
                    ErrorCode.RATE_LIMITED,
                    f"wait for answers: at most {MAX_UNANSWERED} unanswered sends",
                ),
                "ref": ref,
            }
        )
        return
    socket.unanswered += 1
    future = request.app[WRITER_KEY].submit(item)
    future.add_done_callback(lambda done: _answer(socket, ref, str(group_text), done))


def _answer(socket: Socket, ref: str, group_text: str, done: asyncio.Future[Accepted]) -> None:
    socket.unanswered -= 1
    if done.cancelled():
        return
    exc = done.exception()
    if isinstance(exc, ApiError):
        socket.say({**_error(exc.code, exc.message), "ref": ref})
    elif exc is not None:
        log.warning("a message batch failed: %s", type(exc).__name__)
        socket.say(
            {
                **_error(ErrorCode.UNAVAILABLE, "the message was not stored: send it again"),
                "ref": ref,
            }
        )
    else:
        accepted = done.result()
        socket.say(
            {
                "type": "sent",
                "ref": ref,
                "group": group_text,
                "message_id": b32e(accepted.message_id),
                "cursor": accepted.seq,
            }
        )


def _load(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _error(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code.value, "message": message}


@dataclass(frozen=True)
class Refusal:
    """Why a socket is closed: its close code and reason, and the error it is told first."""

    code: int
    reason: str
    notice: dict[str, Any] | None = None


LOG_IN_FIRST = _error(ErrorCode.UNAUTHORIZED, 'send {"type": "auth", "token": …} first')
# An open socket that meets a database outage, or any other failure.
OUTAGE = Refusal(
    CLOSE_TRY_AGAIN,
    "try again later",
    _error(ErrorCode.UNAVAILABLE, "the database is unavailable: connect again"),
)
FAILED = Refusal(CLOSE_INTERNAL, "internal error", _error(ErrorCode.INTERNAL, "internal error"))


async def _say(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
    try:
        await ws.send_str(json.dumps(message))
    except ConnectionError:
        pass
