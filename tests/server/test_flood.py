"""Flood safety of the live feed (issue 12): socket connects and socket messages are paced.

A source that opens too many sockets gets 429 with Retry-After before any
upgrade; a member likewise; a socket that sends too many messages gets them
refused (`rate_limited`, with when to try again) and stays usable.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import gzip
import json
import os
import socket as socket_module
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.http import events
from server.http.events import (
    MAX_SOCKETS_PER_MEMBER,
    MAX_WAITING_LOGINS,
    SOCKET_MESSAGES_BURST,
    FeedSocket,
    Pace,
)
from server.settings import RateLimit, SettingsError, load_settings
from tests.server.actors import Actor


@pytest.mark.spokes_settings(rate_socket_per_source=RateLimit(3, 60))
async def test_a_source_opening_too_many_sockets_gets_429_with_retry_after(
    server: Any, http: Any
) -> None:
    founder = Actor(http, server.url)
    assert (await founder.found()).status == 201
    headers = {"Authorization": f"Bearer {founder.token}"}
    opened = [await http.ws_connect(server.url + "/v1/ws", headers=headers) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.url + "/v1/ws", headers=headers)
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 1
    for ws in opened:
        await ws.close()


@pytest.mark.spokes_settings(rate_socket_per_member=RateLimit(2, 60))
async def test_a_member_reconnecting_too_often_gets_429(server: Any, http: Any) -> None:
    founder = Actor(http, server.url)
    assert (await founder.found()).status == 201
    headers = {"Authorization": f"Bearer {founder.token}"}
    for _ in range(2):
        ws = await http.ws_connect(server.url + "/v1/ws", headers=headers)
        await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.url + "/v1/ws", headers=headers)
    assert refused.value.status == 429


@pytest.mark.spokes_settings(rate_socket_per_member=RateLimit(2, 60))
async def test_a_browser_reconnecting_too_often_is_told_so_and_closed_1013(
    server: Any, http: Any
) -> None:
    """A socket that logs in by its first message is paced per member too, after the
    upgrade: an error frame `rate_limited` and close code 1013 (try again later)."""
    founder = Actor(http, server.url)
    assert (await founder.found()).status == 201
    login = {"type": "auth", "token": founder.token}
    for _ in range(2):
        async with http.ws_connect(server.url + "/v1/ws") as ws:
            await ws.send_json(login)
            assert (await ws.receive_json(timeout=5))["type"] == "ready"
    async with http.ws_connect(server.url + "/v1/ws") as ws:
        await ws.send_json(login)
        said = await ws.receive_json(timeout=5)
        assert (said["type"], said["code"]) == ("error", "rate_limited"), said
        assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1013


def test_rate_limits_come_from_the_environment_and_an_empty_one_is_unset(
    tmp_path: Path,
) -> None:
    variable = "SPOKES_RATE_SOCKET_PER_MEMBER"
    assert load_settings(data_dir=tmp_path, env={variable: "5/30"}).rate_socket_per_member == (
        RateLimit(5, 30)
    )
    default = load_settings(data_dir=tmp_path, env={}).rate_socket_per_member
    assert load_settings(data_dir=tmp_path, env={variable: ""}).rate_socket_per_member == default
    for bad in ("5", "five/30", "5/"):
        with pytest.raises(SettingsError, match=variable):
            load_settings(data_dir=tmp_path, env={variable: bad})


async def test_a_socket_flooding_messages_is_told_to_wait_and_stays_usable(
    server: Any, http: Any
) -> None:
    founder = Actor(http, server.url)
    assert (await founder.found()).status == 201
    ws = await http.ws_connect(
        server.url + "/v1/ws", headers={"Authorization": f"Bearer {founder.token}"}
    )
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "ready"
    flood = json.dumps({"type": "unsubscribe", "groups": []})
    for _ in range(SOCKET_MESSAGES_BURST + 200):
        await ws.send_str(flood)
    limited = 0
    async with asyncio.timeout(20):
        while limited == 0:
            reply = json.loads((await ws.receive()).data)
            if reply.get("code") == "rate_limited":
                limited += 1
                assert 0 < reply["retry_after"] < 1
    await asyncio.sleep(0.5)
    # Once paced again, it answers as before.
    await ws.send_str(json.dumps({"type": "subscribe", "cursors": {}}))
    async with asyncio.timeout(10):
        while True:
            reply = json.loads((await ws.receive()).data)
            if reply.get("type") == "subscribed":
                break
    await ws.close()


def test_the_pace_refills_at_its_rate_up_to_its_burst() -> None:
    pace = Pace(rate=10.0, burst=3)
    assert [pace.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pace.take(100.0) == pytest.approx(0.1)
    assert pace.take(100.1) == 0.0  # one token came back in 0.1 s
    assert pace.take(200.0) == 0.0  # a long pause refills to the burst, no more
    assert [pace.take(200.0) for _ in range(3)][-1] > 0


# --- What sockets may cost (flood safety, issue 12) ----------------------------------------


async def _founder_token(http: Any, url: str) -> str:
    """A network founded, its founder logged in: their session token."""
    founder = Actor(http, url)
    assert (await founder.found()).status == 201
    assert founder.token is not None
    return founder.token


async def _ready(http: Any, url: str, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url + "/v1/ws", headers={"Authorization": f"Bearer {token}"})
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "ready"
    return ws


async def test_a_member_holds_at_most_32_sockets_and_the_next_is_429(
    server: Any, http: Any
) -> None:
    token = await _founder_token(http, server.url)
    held = [await _ready(http, server.url, token) for _ in range(MAX_SOCKETS_PER_MEMBER)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.url + "/v1/ws", headers={"Authorization": f"Bearer {token}"})
    assert refused.value.status == 429
    assert int(refused.value.headers["Retry-After"]) >= 1
    # Logging in by message instead: upgraded, told why, closed with "try again later".
    ws = await http.ws_connect(server.url + "/v1/ws")
    await ws.send_json({"type": "auth", "token": token})
    told = json.loads((await ws.receive(timeout=5)).data)
    assert told["code"] == "rate_limited"
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1013
    # One closed, one place free.
    await held.pop().close()
    held.append(await _ready(http, server.url, token))
    for socket in held:
        await socket.close()


async def test_sockets_waiting_to_log_in_are_bounded_past_that_503(
    server: Any, http: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound is 1,000; 50 here keeps the test quick (the count is the same code).
    assert MAX_WAITING_LOGINS == 1_000
    monkeypatch.setattr(events, "MAX_WAITING_LOGINS", 50)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as many:
        waiting = [await many.ws_connect(server.url + "/v1/ws") for _ in range(50)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await many.ws_connect(server.url + "/v1/ws")
        assert refused.value.status == 503
        assert int(refused.value.headers["Retry-After"]) >= 1
        # A member with a token is not held up by them.
        token = await _founder_token(http, server.url)
        await (await _ready(http, server.url, token)).close()
        await waiting.pop().close()
        await asyncio.sleep(0.2)  # the server sees the close
        again = await many.ws_connect(server.url + "/v1/ws")
        await again.close()
        await asyncio.gather(*(ws.close() for ws in waiting))


async def test_a_socket_that_sends_and_never_reads_is_closed_and_its_answers_dropped(
    server: Any, http: Any
) -> None:
    token = await _founder_token(http, server.url)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await _raw_socket(host, int(port), token)
    # Every frame gets an answer (here: too many messages); none is read.
    frame = _masked_text_frame(json.dumps({"type": "unsubscribe", "groups": []}))
    sent = 0
    closed = None
    async with asyncio.timeout(60):
        while closed is None and sent < 2_000_000:
            writer.write(frame * 10_000)
            sent += 10_000
            try:
                await asyncio.wait_for(writer.drain(), 2)
            except TimeoutError:
                closed = "the server stopped reading"
        assert closed is not None, "the server read two million frames and kept answering"
        # Now read: what was already on its way, then the close for not reading.
        answers, code = await _read_until_close(reader)
    writer.close()
    assert code == 1008
    assert answers < sent


async def _raw_socket(
    host: str, port: int, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket by hand, with a small receive buffer, so a client that does not
    read fills up quickly."""
    sock = socket_module.socket()
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 4096)
    sock.connect((host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /v1/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def _masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


async def _read_until_close(reader: asyncio.StreamReader) -> tuple[int, int | None]:
    """Text frames read until the server's close frame, and its close code."""
    texts = 0
    while True:
        head = await reader.readexactly(2)
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(await reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await reader.readexactly(8), "big")
        body = await reader.readexactly(size)
        if head[0] & 0x0F == 0x8:
            return texts, int.from_bytes(body[:2], "big") if len(body) >= 2 else None
        texts += 1


async def test_closed_sockets_are_let_go_at_once(server: Any, http: Any) -> None:
    """aiohttp 3.14 arms a closed socket's heartbeat again when the client answers
    the close, which held each one for 45 s more (FeedSocket says more)."""
    for _ in range(20):
        ws = await http.ws_connect(server.url + "/v1/ws")
        await ws.send_json({"type": "auth", "token": "not a token"})
        async for _ in ws:  # the refusal, then the close
            pass
        assert ws.close_code == 4401
    await asyncio.sleep(0.2)  # the server reads each client's answer to its close
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, FeedSocket)] == []


# --- Bounded input: bodies, frames, nesting (issue 12) --------------------------------------


async def test_a_compressed_body_is_bounded_as_it_inflates(server: Any, http: Any) -> None:
    bomb = gzip.compress(b'{"member_id": "' + b"a" * (50 * 1024 * 1024) + b'"}')  # 50 KiB
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with asyncio.timeout(10):
        reply = await http.post(server.url + "/v1/auth/challenge", data=bomb, headers=headers)
    assert reply.status == 413
    assert (await reply.json())["error"]["code"] == "body_too_large"


async def test_frames_past_the_body_bound_close_the_socket_even_compressed(
    server: Any, http: Any
) -> None:
    token = await _founder_token(http, server.url)
    # 400 KiB as it is (loopback takes it whole before the server refuses), and
    # 8 MiB deflated to a few KiB.
    for compress, size in ((0, 400 * 1024), (15, 8 * 1024 * 1024)):
        too_large = json.dumps({"type": "subscribe", "pad": "a" * size})
        ws = await http.ws_connect(
            server.url + "/v1/ws",
            headers={"Authorization": f"Bearer {token}"},
            compress=compress,
        )
        assert ws.compress == compress
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "ready"
        await ws.send_str(too_large, compress=compress or None)
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1009  # message too big
    assert (await http.get(server.url + "/healthz")).status == 200


async def test_absurdly_deep_json_on_a_socket_is_refused_and_the_socket_stays_usable(
    server: Any, http: Any
) -> None:
    token = await _founder_token(http, server.url)
    ws = await _ready(http, server.url, token)
    await ws.send_str("[" * 300_000)
    refused = json.loads((await ws.receive(timeout=5)).data)
    assert refused["code"] == "bad_request"
    await ws.send_json({"type": "subscribe", "cursors": {}})
    assert json.loads((await ws.receive(timeout=5)).data)["type"] == "subscribed"
    await ws.close()
