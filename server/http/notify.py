"""HTTP handlers for mail notices: a member opts in with an address, or out (docs/API.md).

Authenticate → parse → one service call → respond. The address is never
echoed back nor logged; the server keeps it sealed (services/notices.py).
"""

from __future__ import annotations

from aiohttp import web

from server.http.appkeys import CLOCK_KEY, POOL_KEY, SETTINGS_KEY
from server.http.common import authenticate, json_response
from server.http.parse import get_str, read_json
from server.services import notices

MAX_NOTIFY_BODY = 1024


def add_notify_routes(app: web.Application) -> None:
    app.router.add_put("/v1/notify", put_notify)
    app.router.add_delete("/v1/notify", delete_notify)


async def put_notify(request: web.Request) -> web.Response:
    """PUT /v1/notify {"address": "ann@example.org"} → 200 {"status": "on"}"""
    session = await authenticate(request)
    body = await read_json(request, MAX_NOTIFY_BODY)
    address = get_str(body, "address", 512)  # its form is the service's to judge
    settings = request.app[SETTINGS_KEY]
    key = settings.mail_key if settings.mail_off_reason() is None else None
    await notices.set_address(
        request.app[POOL_KEY], session, address, key, request.app[CLOCK_KEY]()
    )
    return json_response({"status": "on"})


async def delete_notify(request: web.Request) -> web.Response:
    """DELETE /v1/notify → 200 {"status": "off", "cleared": true}"""
    session = await authenticate(request)
    cleared = await notices.clear_address(request.app[POOL_KEY], session)
    return json_response({"status": "off", "cleared": cleared})
