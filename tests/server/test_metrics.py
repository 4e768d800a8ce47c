"""Observability: the metrics move with real traffic and name no one; JSON logs say nothing more.

Two instances on the test's database, with metrics on (each on a free
loopback port, each with a registry of its own). Members talk to them from
127.0.0.2, so an address in a label or a log line would be theirs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.http_exceptions import LineTooLong
from prometheus_client.parser import text_string_to_metric_families

from crypto.encoding import b32d, b32e, b64e
from server.http.appkeys import METRICS_KEY
from server.logs import ACCESS_FIELDS, ForgetClient, JsonFormatter, OutageWithoutTraceback
from server.settings import Settings, SettingsError, load_settings
from tests.conftest import HTTP_CLOSE_S, RunningServer, bounded
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView
from tests.server.test_mail import Inbox, SmtpServer, free_port, mail_settings, opt_in
from tests.server.test_message_batches import answers, send_frame

MEMBER_ADDRESS = "127.0.0.2"  # Linux routes all of 127/8 to loopback
MESSAGES_ROUTE = "/v1/groups/{group_id}/messages"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def member_http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client whose connections come from MEMBER_ADDRESS."""
    connector = aiohttp.TCPConnector(local_addr=(MEMBER_ADDRESS, 0))
    session = aiohttp.ClientSession(connector=connector)
    try:
        yield session
    finally:
        await bounded(session.close(), HTTP_CLOSE_S)


async def scrape(http: aiohttp.ClientSession, server: RunningServer) -> str:
    address = server.app[METRICS_KEY].address
    assert address is not None and address[0] == "127.0.0.1", "loopback unless told otherwise"
    async with http.get(f"http://{address[0]}:{address[1]}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def encodings(secret: bytes | str) -> list[str]:
    """Every form the project writes an id or token in (crypto.encoding, hex, base64)."""
    if isinstance(secret, str):
        return [secret]
    padded = base64.b64encode(secret).decode()
    return [b32e(secret), b32e(secret).upper(), secret.hex(), b64e(secret), padded.rstrip("=")]


def assert_names_no_one(text: str, secrets: list[bytes | str], where: str) -> None:
    for secret in secrets:
        for form in encodings(secret):
            assert form not in text, f"{where} holds an id, token or address: {form}"
    assert MEMBER_ADDRESS not in text, f"{where} holds a member's address"


async def until(condition: Any, tries: int = 100) -> None:
    """Poll ``condition`` every 50 ms until it holds (5 s at most)."""
    for _ in range(tries):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


@pytest.mark.spokes_settings(metrics_port=0)
async def test_metrics_follow_the_traffic_and_name_no_member_group_token_or_address(
    server_factory: Any, member_http: aiohttp.ClientSession, http: aiohttp.ClientSession, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="spokes")
    a, b = await server_factory(), await server_factory()
    assert a.app[METRICS_KEY] is not b.app[METRICS_KEY]
    founder, newcomer = Actor(member_http, a.url), Actor(member_http, a.url)
    assert (await founder.found()).status == 201
    await bring_in(founder, newcomer)  # invite, join, admit
    view = GroupView(founder, founder.cell or b"")
    assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
    assert (await view.commit_epoch()).status == 201
    cell = view.group
    message_ids: list[bytes] = []
    for n in range(3):  # over HTTP, on instance a
        reply = await view.send(f"over http {n}")
        assert reply.status == 201, reply.body
        message_ids.append(b32d(reply.body["message_id"]))
    unknown = await founder.call("GET", f"/v1/groups/{b32e(cell)}/no-such-thing")
    assert unknown.status == 404

    # A socket on instance b: it hears a's messages through NOTIFY, and sends its own.
    ws = await member_http.ws_connect(
        b.url + "/v1/ws", headers={"Authorization": f"Bearer {founder.token}"}
    )
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    await ws.send_json({"type": "subscribe", "cursors": {b32e(cell): 0}})
    async with asyncio.timeout(5):  # the log so far arrived: b's feed is up to date
        seen = 0
        while seen < reply.body["cursor"]:
            frame = await ws.receive_json()
            seen = max([seen, *(e["seq"] for e in frame.get("events", [frame]) if "seq" in e)])
    open_now = parse(await scrape(http, b))
    assert value(open_now, "spokes_open_sockets") == 1
    assert value(parse(await scrape(http, a)), "spokes_open_sockets") == 0
    assert (await view.send("heard on b")).status == 201
    for n in range(2):
        await ws.send_json(send_frame(str(n), cell, view.seal(f"over the socket {n}")))
    sent = await answers(ws, 2)
    assert [sent[str(n)]["type"] for n in range(2)] == ["sent", "sent"]
    message_ids += [b32d(sent[str(n)]["message_id"]) for n in range(2)]
    await ws.close()

    async def closed() -> bool:
        return value(parse(await scrape(http, b)), "spokes_open_sockets") == 0

    async def heard() -> bool:  # b's hub reads a's messages after their NOTIFY, soon
        return value(parse(await scrape(http, b)), "spokes_notify_lag_seconds_count") >= 1

    await until(closed)
    await until(heard)

    text_a, text_b = await scrape(http, a), await scrape(http, b)
    on_a, on_b = parse(text_a), parse(text_b)
    requests = "spokes_http_requests_total"
    assert value(on_a, requests, route=MESSAGES_ROUTE, method="POST", status="201") == 4
    assert value(on_a, requests, route="/v1/networks", method="POST", status="201") == 1
    assert value(on_a, requests, route="<unmatched>", method="GET", status="404") == 1
    assert value(on_b, requests, route="/v1/ws", method="GET", status="101") == 1
    assert value(on_b, requests, route=MESSAGES_ROUTE, method="POST", status="201") == 0
    assert value(on_a, "spokes_messages_committed_total") == 4
    assert value(on_b, "spokes_messages_committed_total") == 2
    assert value(on_a, "spokes_message_batch_size_count") >= 1
    assert value(on_a, "spokes_message_batch_size_sum") == 4
    latency = "spokes_http_request_duration_seconds_bucket"
    assert value(on_a, latency, route=MESSAGES_ROUTE, method="POST", le="+Inf") == 4
    assert value(on_a, latency, route=MESSAGES_ROUTE, method="POST", le="10.0") == 4
    assert value(on_b, latency, route="/v1/ws", method="GET", le="+Inf") == 0, "no socket's life"
    assert value(on_b, "spokes_notify_lag_seconds_sum") < 5.0
    assert ("spokes_notify_lag_seconds_bucket", (("le", "0.1"),)) in on_a
    crashes = "spokes_background_task_crashes_total"
    for task in ("hub.listen", "hub.tick", "hub.read_ahead", "prune"):
        assert value(on_a, crashes, task=task) == 0 and (crashes, (("task", task),)) in on_a
    assert value(on_a, "spokes_db_pool_max") >= value(on_a, "spokes_db_pool_size") >= 1
    assert ("spokes_db_pool_idle", ()) in on_a

    secrets: list[bytes | str] = [founder.id, newcomer.id, cell, founder.network, *message_ids]
    secrets += [founder.token or "", newcomer.token or ""]
    assert_names_no_one(text_a + text_b, secrets, "/metrics")
    # The log of the same traffic, as --log-format json writes it.
    lines = [JsonFormatter().format(record) for record in caplog.records]
    access = [json.loads(line) for line in lines if '"spokes.access"' in line]
    assert set(access[0]) == {"time", "level", "logger", "message", *ACCESS_FIELDS}
    seen = {(line["method"], line["route"], line["status"]) for line in access}
    assert {
        ("POST", MESSAGES_ROUTE, 201),
        ("GET", "/v1/ws", 101),
        ("GET", "<unmatched>", 404),
    } <= seen
    assert_names_no_one("\n".join(lines), secrets, "the log")


async def test_the_mail_workers_outcomes_are_counted_without_an_address(
    server_factory: Any, settings: Settings, http: aiohttp.ClientSession
) -> None:
    smtp = SmtpServer(Inbox(), free_port())
    await smtp.start()
    try:
        await _mail_outcomes_are_counted(server_factory, settings, smtp, http)
    finally:
        await smtp.stop()


async def _mail_outcomes_are_counted(
    server_factory: Any, settings: Settings, smtp: SmtpServer, http: aiohttp.ClientSession
) -> None:
    configured = mail_settings(settings, smtp.port).with_changes(metrics_port=0)
    server = await server_factory(settings=configured)
    founder, newcomer = Actor(http, server.url), Actor(http, server.url)
    assert (await founder.found()).status == 201
    address = await opt_in(founder)
    code, _ = await founder.invite()
    assert (await newcomer.join(code, founder)).status == 201  # the founder is told by mail
    await smtp.inbox.wait_for(1)

    async def counted() -> bool:
        text = await scrape(http, server)
        return value(parse(text), "spokes_mail_notices_total", outcome="sent") == 1

    await until(counted)
    text = await scrape(http, server)
    samples = parse(text)
    assert value(samples, "spokes_mail_notices_total", outcome="deferred") == 0
    assert ("spokes_background_task_crashes_total", (("task", "mail"),)) in samples
    assert address not in text and address.split("@")[1] not in text


async def test_metrics_are_off_unless_configured(
    server: RunningServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    assert server.settings.metrics_port is None
    assert METRICS_KEY not in server.app
    async with http.get(server.url + "/metrics") as response:
        assert response.status == 404
    loaded = load_settings(data_dir=tmp_path, env={})
    assert (loaded.metrics_port, loaded.log_format) == (None, "text")
    env = {"SPOKES_METRICS_PORT": "9464", "SPOKES_LOG_FORMAT": "json"}
    loaded = load_settings(data_dir=tmp_path, env=env)
    assert (loaded.metrics_port, loaded.metrics_host, loaded.log_format) == (
        9464,
        "127.0.0.1",
        "json",
    )
    assert load_settings(data_dir=tmp_path, metrics_port=9000, env=env).metrics_port == 9000
    with pytest.raises(SettingsError, match="log format"):
        load_settings(data_dir=tmp_path, env={"SPOKES_LOG_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="differ"):
        Settings(server_secret=bytes(32), port=8080, metrics_port=8080)


def _error_handling_request(exc: Exception) -> logging.LogRecord:
    """The record aiohttp's server log makes of a request it failed on, as it makes it."""
    try:
        raise exc
    except Exception as raised:
        return logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            (MEMBER_ADDRESS,),
            (type(raised), raised, raised.__traceback__),
        )


def test_aiohttps_own_log_loses_the_client_address_and_the_refused_bytes() -> None:
    record = _error_handling_request(
        ValueError(f"Bad header b'Authorization: Bearer tok' from {MEMBER_ADDRESS}")
    )
    assert ForgetClient().filter(record)
    for formatter in (JsonFormatter(), logging.Formatter()):
        line = formatter.format(record)
        assert MEMBER_ADDRESS not in line and "tok" not in line
        assert "Error handling request (ValueError)" in line


def test_a_request_aiohttp_could_not_parse_is_logged_at_info_not_error() -> None:
    """A flood of malformed requests (each answered 400) must not flood the log."""
    record = _error_handling_request(LineTooLong("x" * 100, "8190"))
    server_log = logging.getLogger("aiohttp.server")
    before = server_log.level
    try:
        server_log.setLevel(logging.WARNING)
        assert not ForgetClient().filter(record)
        server_log.setLevel(logging.INFO)
        assert ForgetClient().filter(record)
        assert record.levelno == logging.INFO and MEMBER_ADDRESS not in logging.Formatter().format(
            record
        )
    finally:
        server_log.setLevel(before)


def test_asyncpgs_pool_log_keeps_one_line_per_failed_reconnect() -> None:
    """While PostgreSQL is away asyncpg retries its floor of connections and logs
    each try with exc_info: the line stays, the traceback goes."""
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError as refused:
        record = logging.LogRecord(
            "asyncpg.pool",
            logging.WARNING,
            __file__,
            1,
            "Failed to restore the pool connection floor; retrying",
            (),
            (type(refused), refused, refused.__traceback__),
        )
    assert OutageWithoutTraceback().filter(record)
    for formatter in (JsonFormatter(), logging.Formatter()):
        line = formatter.format(record)
        assert "Traceback" not in line and "\n" not in line
        assert "floor; retrying (ConnectionRefusedError)" in line


# What asyncpg's pool does while PostgreSQL is away (asyncpg/pool.py), in a process whose
# logging the server set up.
_FLOOR_RETRY = """
import logging, sys
from server.logs import configure_logging
configure_logging(sys.argv[1], logging.INFO)
try:
    raise ConnectionRefusedError(111, "Connect call failed")
except ConnectionRefusedError:
    logging.getLogger("asyncpg.pool").warning(
        "Failed to restore the pool connection floor; retrying", exc_info=True
    )
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_servers_logging_puts_asyncpgs_reconnect_retries_on_one_line(log_format: str) -> None:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _FLOOR_RETRY, log_format],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "floor; retrying (ConnectionRefusedError)" in lines[0]


def test_serve_writes_json_logs_and_serves_metrics_on_its_own_port(
    spawn_server: Any, database_url: str
) -> None:
    metrics_port = free_port()
    running = spawn_server(
        "--database-url",
        database_url,
        "--metrics-port",
        str(metrics_port),
        "--log-format",
        "json",
        "-v",
    )
    token = "not-a-real-token-" + "x" * 20
    for path in ("/healthz", "/v1/groups/aaaa/roster", "/nowhere"):
        request = urllib.request.Request(  # noqa: S310 (our own test server)
            running.url + path, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310
                pass
        except urllib.error.HTTPError:
            pass
    host, port = running.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), source_address=(MEMBER_ADDRESS, 0)) as raw:
        raw.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header {token}\r\n\r\n".encode())
        assert raw.recv(100).split(b" ")[1] == b"400"
    scraped = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(scraped, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    samples = parse(text)
    route = "/v1/groups/{group_id}/roster"
    assert value(samples, "spokes_http_requests_total", route=route, method="GET", status="401")
    assert running.stop() == 0
    lines = [line for line in running.stderr().splitlines() if line.strip()]
    logged = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in logged)
    access = [line for line in logged if line["logger"] == "spokes.access"]
    assert {(line["route"], line["status"]) for line in access} >= {
        ("/healthz", 200),
        (route, 401),
        ("<unmatched>", 404),
    }
    assert any(line["logger"] == "aiohttp.server" for line in logged), "the malformed request"
    assert_names_no_one("\n".join(lines), [token], "the server's log")
