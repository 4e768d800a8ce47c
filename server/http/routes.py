"""The route table: every endpoint of the server is registered here.

Handlers are thin: authenticate, parse, call a service, respond. Each
handler's docstring is an example request and response; each route also
appears in ``server/openapi.json`` (a test checks the two agree).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from server.errors import ErrorCode
from server.http.councils import add_council_routes
from server.http.events import add_event_routes
from server.http.groups import add_group_routes
from server.http.membership import add_membership_routes
from server.http.notify import add_notify_routes


def add_routes(app: web.Application) -> None:
    """Register every route on ``app``. Feature modules add theirs here."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/openapi.json", openapi)
    add_membership_routes(app)
    add_event_routes(app)
    add_group_routes(app)
    add_council_routes(app)
    add_notify_routes(app)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz`` -> ``200 {"status": "ok"}``"""
    return web.json_response({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    """``GET /v1/openapi.json`` -> ``200 {"openapi": "3.1.0", ...}``"""
    return web.json_response(openapi_document())


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document shipped as package data.

    The error-code enum is filled in from :class:`ErrorCode`, so the document
    cannot fall behind the codes the server actually sends.
    """
    text = resources.files("server").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    error = document["components"]["schemas"]["Error"]["properties"]["error"]
    error["properties"]["code"]["enum"] = [code.value for code in ErrorCode]
    return document
