"""The application shell: health, the OpenAPI document, and the error shape."""

from __future__ import annotations

import logging
import re
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from crypto.encoding import b32e, b64e
from server.errors import ApiError, ErrorCode
from server.http import parse
from server.http.appkeys import POOL_KEY
from server.http.common import parse_id
from server.http.routes import openapi_document

pytestmark = pytest.mark.spokes_settings(max_body_bytes=1024)


async def _echo(request: web.Request) -> web.Response:
    """Test-only: parse a JSON body with the helpers and echo the fields."""
    body = await parse.read_json(request)
    return web.json_response(
        {
            "name": parse.get_str(body, "name", max_len=10),
            "blob": parse.b64(parse.get_b64(body, "blob", 1, 16)),
            "id": parse.b64(parse.get_b64_id(body, "id")),
            "n": parse.get_int(body, "n", 0, 100),
            "note": parse.get_optional(body, "note", parse.get_str, 20),
        }
    )


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("secret detail 10.1.2.3")


async def _refuse(request: web.Request) -> web.Response:
    raise ApiError(409, ErrorCode.CONFLICT, "that already exists")


OUTAGES = {
    "refused": lambda: ConnectionRefusedError(111, "Connection refused"),
    "reset": lambda: ConnectionResetError(104, "Connection reset by peer"),
    "starting": lambda: asyncpg.exceptions.CannotConnectNowError(
        "the database system is starting up"
    ),
    "state": lambda: asyncpg.InternalClientError("cannot switch to state 12"),
    "closed": lambda: asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    "timeout": lambda: TimeoutError(),
}


async def _outage(request: web.Request) -> web.Response:
    raise OUTAGES[request.match_info["kind"]]()


async def _lost(request: web.Request) -> web.Response:
    """Test-only: the database ends this request's connection under it."""
    async with request.app[POOL_KEY].acquire() as conn:
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    return web.json_response({})


async def _hung_up(request: web.Request) -> web.Response:
    """Test-only: the member's side closes while the server writes to it."""
    assert request.transport is not None
    request.transport.close()
    raise ConnectionResetError(104, "Connection reset by peer")


def _test_routes(app: web.Application) -> None:
    app.router.add_get("/test/hung-up", _hung_up)
    app.router.add_post("/test/echo", _echo)
    app.router.add_get("/test/outage/{kind}", _outage)
    app.router.add_get("/test/lost", _lost)
    app.router.add_get("/test/boom", _boom)
    app.router.add_get("/test/refuse", _refuse)


@pytest.fixture
async def url(server_factory: Any) -> str:
    running = await server_factory(configure=_test_routes)
    return str(running.url)


async def _error(response: aiohttp.ClientResponse) -> dict[str, str]:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    return dict(body["error"])


async def test_healthz_answers_ok(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_openapi_document_is_served_as_json(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/v1/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    assert "/healthz" in document["paths"]


def test_every_route_is_documented_in_openapi(settings: Any) -> None:
    from server.app import create_app

    app = create_app(settings, pool=object())
    documented = {
        (path, method.upper())
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    registered = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"  # HEAD comes with every GET
    }
    missing = sorted(registered - documented)
    assert not missing, f"routes missing from server/openapi.json: {missing}"


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in openapi_document()["paths"].items()
        for method, operation in operations.items()
        if method != "parameters"
    ]


def test_openapi_lists_the_refusals_every_endpoint_can_give() -> None:
    """What the fuzzer (tests/server/test_fuzz.py) found missing: any JSON body can come
    as another type (415), too large (413) or malformed (400); any id in a path malformed
    (400); any login missing (401); and the database away (503, with Retry-After)."""
    missing = []
    for method, path, operation in _operations():
        statuses = set(operation["responses"])
        expected = set()
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        if "{" in path:
            expected.add("400")
        if operation.get("security"):
            expected.add("401")
        if path not in ("/healthz", "/v1/openapi.json"):
            expected.add("503")
        missing += [f"{method} {path}: {status}" for status in sorted(expected - statuses)]
    assert not missing, missing
    unavailable = openapi_document()["components"]["responses"]["Unavailable"]
    assert "Retry-After" in unavailable["headers"]


@pytest.mark.parametrize(("schema", "size"), [("Id16", 16), ("Id32", 32)])
def test_openapi_id_patterns_are_exactly_the_ids_the_server_reads(schema: str, size: int) -> None:
    """Every last character the pattern allows decodes to an id of the size, and no other does."""
    pattern = re.compile(openapi_document()["components"]["schemas"][schema]["pattern"])
    text_len = len(b32e(bytes(size)))
    for last in "abcdefghijklmnopqrstuvwxyz234567":
        text = "b" * (text_len - 1) + last
        try:
            readable = len(parse_id(text, size, "id")) == size
        except ApiError:
            readable = False
        assert bool(pattern.fullmatch(text)) == readable, text
    assert not pattern.fullmatch("b" * (text_len + 1))
    assert not pattern.fullmatch("b" * (text_len - 1))


@pytest.mark.parametrize(("schema", "size"), [("Challenge", 32), ("Signature", 64)])
def test_openapi_byte_patterns_are_exactly_what_the_server_reads(schema: str, size: int) -> None:
    """Unpadded, as the server writes it, or padded, as it also reads it (parse.py)."""
    pattern = re.compile(openapi_document()["components"]["schemas"][schema]["pattern"])
    text_len = len(b64e(bytes(size)))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for last in alphabet:
        unpadded = "B" * (text_len - 1) + last
        for text in (unpadded, unpadded + "=" * (-text_len % 4), unpadded + "==="):
            try:
                readable = len(parse.get_b64({"f": text}, "f", size, size)) == size
            except ApiError:
                readable = False
            assert bool(pattern.fullmatch(text)) == readable, text


async def test_openapi_lists_every_error_code(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/v1/openapi.json") as response:
        schema = (await response.json())["components"]["schemas"]["Error"]
    codes = schema["properties"]["error"]["properties"]["code"]["enum"]
    assert codes == [code.value for code in ErrorCode]


async def test_unknown_route_is_a_json_404(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.get(server.url + "/v1/nothing-here") as response:
        assert response.status == 404
        assert (await _error(response))["code"] == "not_found"


async def test_wrong_method_is_a_json_405(server: Any, http: aiohttp.ClientSession) -> None:
    async with http.post(server.url + "/healthz") as response:
        assert response.status == 405
        assert (await _error(response))["code"] == "method_not_allowed"
        assert "GET" in response.headers["Allow"]


async def test_api_error_keeps_its_status_and_code(url: str, http: aiohttp.ClientSession) -> None:
    async with http.get(url + "/test/refuse") as response:
        assert response.status == 409
        assert await _error(response) == {"code": "conflict", "message": "that already exists"}


async def test_unexpected_exception_is_a_bare_500_and_logs_no_detail(
    url: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with http.get(url + "/test/boom") as response:
            assert response.status == 500
            assert await _error(response) == {"code": "internal", "message": "internal error"}
    assert "RuntimeError" in caplog.text
    assert "/test/boom" in caplog.text
    assert "secret detail" not in caplog.text
    assert "10.1.2.3" not in caplog.text
    assert "127.0.0.1" not in caplog.text


async def test_access_log_has_route_template_but_no_address(
    server: Any, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="spokes.access"):
        async with http.get(server.url + "/healthz?token=abc") as response:
            assert response.status == 200
    assert "GET /healthz 200" in caplog.text
    assert "127.0.0.1" not in caplog.text
    assert "token" not in caplog.text


async def test_valid_body_is_parsed(url: str, http: aiohttp.ClientSession) -> None:
    body = {"name": "ana", "blob": "AQID", "id": parse.b64(bytes(32)), "n": 7}
    async with http.post(url + "/test/echo", json=body) as response:
        assert response.status == 200
        assert await response.json() == {**body, "note": None}


async def test_padded_base64_is_accepted(url: str, http: aiohttp.ClientSession) -> None:
    body = {"name": "ana", "blob": "AQ==", "id": parse.b64(bytes(32)) + "=", "n": 7, "note": "x"}
    async with http.post(url + "/test/echo", json=body) as response:
        assert response.status == 200
        assert (await response.json())["blob"] == "AQ"


async def test_oversized_body_is_413_body_too_large(url: str, http: aiohttp.ClientSession) -> None:
    body = {"name": "x" * 2000}
    async with http.post(url + "/test/echo", json=body) as response:
        assert response.status == 413
        assert (await _error(response))["code"] == "body_too_large"


async def test_oversized_chunked_body_is_413_body_too_large(
    url: str, http: aiohttp.ClientSession
) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b'{"name": "' + b"x" * 500

    headers = {"Content-Type": "application/json"}
    async with http.post(url + "/test/echo", data=chunks(), headers=headers) as response:
        assert response.status == 413
        assert (await _error(response))["code"] == "body_too_large"


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"a": NaN}', b'{"a": 1, "a": 2}', b"\xff\xfe", b'{"a": 1} x'],
)
async def test_malformed_json_is_400_invalid_json(
    url: str, http: aiohttp.ClientSession, raw: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    async with http.post(url + "/test/echo", data=raw, headers=headers) as response:
        assert response.status == 400
        assert (await _error(response))["code"] == "invalid_json"


async def test_absurdly_deep_json_is_400_invalid_json(
    server_factory: Any, settings: Any, http: aiohttp.ClientSession
) -> None:
    running = await server_factory(
        settings=settings.with_changes(max_body_bytes=65536), configure=_test_routes
    )
    raw = b"[" * 30000 + b"]" * 30000
    headers = {"Content-Type": "application/json"}
    async with http.post(running.url + "/test/echo", data=raw, headers=headers) as response:
        assert response.status == 400
        assert (await _error(response))["code"] == "invalid_json"


async def test_non_object_json_is_400_bad_request(url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(url + "/test/echo", json=[1, 2]) as response:
        assert response.status == 400
        assert (await _error(response))["code"] == "bad_request"


async def test_wrong_content_type_is_415(url: str, http: aiohttp.ClientSession) -> None:
    async with http.post(url + "/test/echo", data=b"{}") as response:
        assert response.status == 415
        assert (await _error(response))["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "x" * 11}, "name"),
        ({"name": 5}, "name"),
        ({"blob": "AQ+/"}, "blob"),
        ({"blob": "AR"}, "blob"),  # non-zero trailing bits: not canonical
        ({"blob": ""}, "blob"),
        ({"blob": parse.b64(bytes(17))}, "blob"),
        ({"id": parse.b64(bytes(31))}, "id"),
        ({"n": True}, "n"),
        ({"n": 101}, "n"),
        ({"n": "7"}, "n"),
        ({"n": None}, "n"),
        ({"note": 3}, "note"),
    ],
)
async def test_bad_field_is_400_naming_the_field(
    url: str, http: aiohttp.ClientSession, change: dict[str, Any], field: str
) -> None:
    body = {"name": "ana", "blob": "AQID", "id": parse.b64(bytes(32)), "n": 7, **change}
    async with http.post(url + "/test/echo", json=body) as response:
        assert response.status == 400
        error = await _error(response)
    assert error["code"] == "bad_request"
    assert repr(field) in error["message"]


def test_b64_round_trips_without_padding() -> None:
    for n in range(40):
        data = bytes(range(n))
        text = parse.b64(data)
        assert "=" not in text
        assert parse.b64decode(text) == data


@pytest.mark.parametrize("kind", sorted(OUTAGES))
async def test_a_database_outage_is_a_503_with_retry_after_never_a_500(
    kind: str, url: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with http.get(f"{url}/test/outage/{kind}") as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await _error(response))["code"] == "unavailable"
    assert "database unavailable" in caplog.text
    assert "127.0.0.1" not in caplog.text


async def test_a_member_who_hangs_up_is_not_logged_as_a_database_outage(
    url: str, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    # A live socket whose member went away raises a connection reset in the
    # handler, as a lost database does; only the database's is an outage.
    with caplog.at_level(logging.INFO), pytest.raises(aiohttp.ClientError):
        async with http.get(f"{url}/test/hung-up") as response:
            await response.read()
    assert "client went away in GET /test/hung-up (ConnectionResetError)" in caplog.text
    assert "database unavailable" not in caplog.text
    assert "127.0.0.1" not in caplog.text


async def test_a_connection_the_database_ends_mid_request_is_a_503(
    url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(url + "/test/lost") as response:
        assert response.status == 503, await response.text()
        assert response.headers["Retry-After"] == "1"
        assert (await _error(response))["code"] == "unavailable"
    async with http.get(url + "/healthz") as response:
        assert response.status == 200  # and the server goes on
