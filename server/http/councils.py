"""HTTP handlers for councils: founding one, a group's seats, an invitation (docs/API.md).

Authenticate → parse → one service call (which owns its transaction) → respond.
A council's log, motions and events are a group's like any other
(server/http/groups.py, server/http/events.py).
"""

from __future__ import annotations

from aiohttp import web

from crypto.encoding import b32e, b64e
from server.http.appkeys import CLOCK_KEY, POOL_KEY
from server.http.common import authenticate, json_response, path_id, statement_wire
from server.http.parse import read_json
from server.services import councils


def add_council_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/councils", post_council)
    r.add_get("/v1/groups/{group_id}/seats", get_seats)
    r.add_get("/v1/councils/{council_id}/invitation", get_invitation)


async def post_council(request: web.Request) -> web.Response:
    """POST /v1/councils {"create": stmt(roster create, kind council)} → 201 {"group_id": "b32"}"""
    session = await authenticate(request)
    body = await read_json(request)
    council = await councils.create_council(
        request.app[POOL_KEY], session, body, request.app[CLOCK_KEY]()
    )
    return json_response({"group_id": b32e(council)}, 201)


async def get_seats(request: web.Request) -> web.Response:
    """GET /v1/groups/{g}/seats → {"seats": [{"council_id", "holder", "link_id", "link_seq",
    "council_seq", "council_head"}]} (members of the group only)"""
    session = await authenticate(request)
    group_id = path_id(request, "group_id", 16)
    seats = await councils.seats_of(request.app[POOL_KEY], session, group_id)
    return json_response(
        {
            "seats": [
                {
                    "council_id": b32e(s.council_id),
                    "holder": None if s.holder is None else b32e(s.holder),
                    "link_id": b64e(s.link_id),
                    "link_seq": s.link_seq,
                    "council_seq": s.council_seq,
                    "council_head": None if s.council_head is None else b64e(s.council_head),
                }
                for s in seats
            ]
        }
    )


async def get_invitation(request: web.Request) -> web.Response:
    """GET /v1/councils/{c}/invitation → {"group_id", "motion": stmt, "signatures": [stmt],
    "roster": [stmt]} (the spokesperson of a group the council moved to link)"""
    session = await authenticate(request)
    council_id = path_id(request, "council_id", 16)
    found = await councils.invitation(request.app[POOL_KEY], session, council_id)
    return json_response(
        {
            "group_id": b32e(found.group_id),
            "motion": statement_wire(found.motion),
            "signatures": [statement_wire(s) for s in found.signatures],
            "roster": [statement_wire(s) for s in found.roster],
        }
    )
