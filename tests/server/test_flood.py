"""Flood safety of the live feed (issue 12): socket connects and socket messages are paced.

A source that opens too many sockets gets 429 with Retry-After before any
upgrade; a member likewise; a socket that sends too many messages gets them
refused (`rate_limited`, with when to try again) and stays usable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from server.http.events import SOCKET_MESSAGES_BURST, Pace
from server.settings import RateLimit
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
