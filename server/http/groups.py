"""HTTP handlers for roster logs, epoch secrets, messages and profiles (docs/API.md).

Authenticate → parse → one service call (which owns its transaction) → respond.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crypto.encoding import b32e, b64e
from crypto.messages import SealedMessage
from crypto.statements import statement_id
from server.errors import ApiError, ErrorCode
from server.http.appkeys import CLOCK_KEY, HUB_KEY, POOL_KEY, WRITER_KEY
from server.http.common import (
    authenticate,
    bearer_token,
    json_response,
    path_id,
    statement_wire,
)
from server.http.parse import get_b64, get_int, parse_natural, read_json
from server.services import groups, messages, motions, profiles

MAX_CIPHERTEXT = 65536 + 16
MAX_EPOCH = 2**62  # a profile's epoch; far below PostgreSQL's bigint
MAX_SEQ = 2**63 - 1  # PostgreSQL's bigint: an epoch or seq past it names nothing


def add_group_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/groups/{group_id}/roster", get_roster)
    r.add_post("/v1/groups/{group_id}/roster", post_roster_event)
    r.add_get("/v1/groups/{group_id}/epochs/{epoch}/secret", get_epoch_secret)
    r.add_post("/v1/groups/{group_id}/messages", post_message)
    r.add_put("/v1/groups/{group_id}/profile", put_profile)
    r.add_get("/v1/groups/{group_id}/profiles", get_profiles)
    r.add_post("/v1/groups/{group_id}/motions", open_motion)
    r.add_get("/v1/motions", list_motions)
    r.add_post("/v1/motions/{motion_id}/signatures", sign_motion)


async def get_roster(request: web.Request) -> web.Response:
    """GET /v1/groups/{g}/roster → {"events": [{"body": "…", "sig": "…"}, ...]}"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    events = await groups.roster(request.app[POOL_KEY], session, group_id)
    return json_response({"events": [statement_wire(e) for e in events]})


async def post_roster_event(request: web.Request) -> web.Response:
    """POST /v1/groups/{g}/roster {"event": stmt, "secrets": {"<member>": "b64"}?, "create": stmt?}
    → 201 {"seq": 3, "head": "b64", "epoch": 1, "rekey_needed": false}"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    body = await read_json(request)
    now = request.app[CLOCK_KEY]()
    state, removed = await groups.append_roster_event(
        request.app[POOL_KEY], session, group_id, body, now
    )
    # After the commit, this instance stops streaming to whoever left at once.
    for gone in removed:
        request.app[HUB_KEY].close_group_member(group_id, gone)
    return json_response(
        {
            "seq": state.seq,
            "head": b64e(state.head),
            "epoch": state.epoch,
            "rekey_needed": state.needs_rekey,
        },
        201,
    )


async def get_epoch_secret(request: web.Request) -> web.Response:
    """GET /v1/groups/{g}/epochs/{n}/secret → {"sealed": "b64"} (the caller's own box)"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    epoch = parse_natural(request.match_info["epoch"], "epoch", 0, MAX_SEQ)
    sealed = await groups.my_epoch_secret(request.app[POOL_KEY], session, group_id, epoch)
    return json_response({"sealed": b64e(sealed)})


async def post_message(request: web.Request) -> web.Response:
    """POST /v1/groups/{g}/messages {"header": "b64", "ciphertext": "b64", "signature": "b64"}
    → 201 {"message_id": "…", "cursor": 42}"""
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "not logged in: log in first")
    group_id = path_id(request, "group_id", 16)
    body = await read_json(request)
    message = sealed_message(body)
    # Authentication happens in the message's batch (server/services/messages.py).
    accepted = await request.app[WRITER_KEY].submit(messages.submission(token, group_id, message))
    return json_response({"message_id": b32e(accepted.message_id), "cursor": accepted.seq}, 201)


def sealed_message(body: dict[str, Any]) -> SealedMessage:
    """The three parts of a message, sizes checked (shared with the WebSocket's send)."""
    return SealedMessage(
        get_b64(body, "header", 1, 512),
        get_b64(body, "ciphertext", 16, MAX_CIPHERTEXT),
        get_b64(body, "signature", 64, 64),
    )


async def put_profile(request: web.Request) -> web.Response:
    """PUT /v1/groups/{g}/profile {"epoch": 1, "sealed": "b64"} → {"epoch": 1}"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    body = await read_json(request)
    epoch = get_int(body, "epoch", 1, MAX_EPOCH)
    sealed = get_b64(body, "sealed", 28, MAX_CIPHERTEXT + 12 + 64)  # nonce, ciphertext, signature
    await profiles.put_profile(
        request.app[POOL_KEY], session, group_id, epoch, sealed, request.app[CLOCK_KEY]()
    )
    return json_response({"epoch": epoch})


async def get_profiles(request: web.Request) -> web.Response:
    """GET /v1/groups/{g}/profiles → {"profiles": [{"member_id": "…", "epoch": 1, "sealed": "b64"}]}"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    rows = await profiles.group_profiles(request.app[POOL_KEY], session, group_id)
    return json_response(
        {
            "profiles": [
                {"member_id": b32e(r.member_id), "epoch": r.epoch, "sealed": b64e(r.sealed)}
                for r in rows
            ]
        }
    )


async def open_motion(request: web.Request) -> web.Response:
    """POST /v1/groups/{g}/motions {"motion": stmt} → 201 {"motion_id": "…"}"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    body = await read_json(request)
    motion_id = await motions.open_motion(
        request.app[POOL_KEY], session, group_id, body.get("motion"), request.app[CLOCK_KEY]()
    )
    return json_response({"motion_id": b32e(motion_id)}, 201)


async def sign_motion(request: web.Request) -> web.Response:
    """POST /v1/motions/{motion_id}/signatures {"signature": stmt} → 201 {"motion_id": "…", "group_id": "…"}"""
    session = await authenticate(request)
    motion_id = path_id(request, "motion_id", 32)
    body = await read_json(request)
    group_id = await motions.sign_motion(
        request.app[POOL_KEY], session, motion_id, body.get("signature"), request.app[CLOCK_KEY]()
    )
    return json_response({"motion_id": b32e(motion_id), "group_id": b32e(group_id)}, 201)


async def list_motions(request: web.Request) -> web.Response:
    """GET /v1/motions → {"motions": [{"motion_id", "group_id", "kind", "motion": stmt, "signatures": [stmt]}]}"""
    session = await authenticate(request)
    found = await motions.open_motions(request.app[POOL_KEY], session)
    return json_response(
        {
            "motions": [
                {
                    "motion_id": b32e(statement_id(m.motion.body)),
                    "group_id": b32e(m.group_id),
                    "kind": m.kind,
                    "motion": statement_wire(m.motion),
                    "signatures": [statement_wire(s) for s in m.signatures],
                }
                for m in found
            ]
        }
    )
