"""Live delivery over real WebSockets: order, resume, two instances, restarts, sessions."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from crypto.encoding import b32e, b64d
from server.app import create_app
from server.clock import FixedClock
from server.http.appkeys import HUB_KEY
from server.settings import Settings
from server.store import events as store
from server.store import groups as group_store
from server.store.db import Pool, transaction
from tests.conftest import RUNNER_CLEANUP_S, bounded
from tests.server.actors import Actor

NOW = datetime(2030, 1, 1, tzinfo=UTC)
WAIT_S = 10.0


# --- Fixtures and a small WebSocket client ---------------------------------------------


@pytest.fixture
async def founder(server, http, pool: Pool) -> Actor:
    actor = Actor(http, server.url)
    reply = await actor.found()
    assert reply.status == 201, reply.body
    async with transaction(pool) as conn:
        await group_store.add_group_member(conn, actor.cell, actor.id, NOW)
    return actor


@pytest.fixture
async def outsider(founder: Actor, server, http, pool: Pool) -> Actor:
    """A logged-in member of the network who is in no group."""
    other = Actor(http, server.url)
    code, reply = await founder.invite()
    assert reply.status == 201, reply.body
    assert (await other.join(code, founder)).status == 201
    async with transaction(pool) as conn:
        await group_store.remove_group_member(conn, founder.cell, other.id)
    return other


class Stream:
    """One client WebSocket; every read is bounded by a timeout."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []  # the rest of a batch frame
        self.frames = 0

    async def receive(self, wait: float = WAIT_S) -> dict[str, Any]:
        """The next message; a batch frame's events come one per call."""
        if not self.pending:
            message = await self.ws.receive(timeout=wait)
            if message.type != aiohttp.WSMsgType.TEXT:
                return {"type": "closed", "code": self.ws.close_code}
            value: dict[str, Any] = json.loads(message.data)
            self.frames += 1
            self.pending = value["events"] if value["type"] == "batch" else [value]
            assert self.pending, "an empty batch"
        value = self.pending.pop(0)
        if value["type"] == "event":
            self.events.append(value)
        return value

    async def until(self, kind: str, wait: float = WAIT_S) -> dict[str, Any]:
        """Read until a message of type ``kind`` (events on the way are kept)."""
        async with asyncio.timeout(wait):
            while True:
                value = await self.receive(wait)
                if value["type"] == kind:
                    return value
                assert value["type"] in ("event", "subscribed", "ready"), value

    async def collect(self, count: int, wait: float = WAIT_S) -> list[dict[str, Any]]:
        """Read until ``count`` events in all have arrived on this stream."""
        async with asyncio.timeout(wait):
            while len(self.events) < count:
                value = await self.receive(wait)
                assert value["type"] in ("event", "subscribed"), value
        return self.events

    async def silence(self, seconds: float = 0.5) -> None:
        """Nothing arrives for ``seconds``."""
        with pytest.raises(TimeoutError):
            value = await self.receive(seconds)
            raise AssertionError(f"unexpected message {value}")

    async def subscribe(self, cursors: dict[bytes, int]) -> dict[str, Any]:
        await self.ws.send_json(
            {"type": "subscribe", "cursors": {b32e(g): c for g, c in cursors.items()}}
        )
        return await self.until("subscribed")


async def connect(
    http: aiohttp.ClientSession, url: str, token: str | None, cursors: dict[bytes, int]
) -> Stream:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await http.ws_connect(
        url + "/v1/ws", headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)
    )
    stream = Stream(ws)
    ready = await stream.until("ready")
    assert ready["member_id"]
    if cursors:
        await stream.subscribe(cursors)
    return stream


async def append(pool: Any, group: bytes, body: bytes, sender: bytes | None = None) -> int:
    async with transaction(pool) as conn:
        return await store.append_event(conn, group, "message", sender, body, NOW)


async def last_seq(pool: Pool, group: bytes) -> int:
    async with transaction(pool) as conn:
        return int(await conn.fetchval("SELECT last_seq FROM groups WHERE group_id = $1", group))


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in events]


@pytest.fixture
async def instances(
    settings: Settings, pool: Pool, database_url: str
) -> AsyncIterator[list[web.AppRunner]]:
    """Runners started by :func:`start_instance`; whatever is still running is stopped."""
    runners: list[web.AppRunner] = []
    yield runners
    for runner in reversed(runners):
        await bounded(runner.cleanup(), RUNNER_CLEANUP_S)


async def start_instance(
    runners: list[web.AppRunner], settings: Settings, pool: Pool, database_url: str
) -> tuple[str, web.AppRunner]:
    """Another server instance on the test's database, which the test may stop."""
    app = create_app(settings.with_changes(database_url=database_url), pool)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    runners.append(runner)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}", runner


# --- Delivery ----------------------------------------------------------------------------


async def test_live_events_arrive_in_order_with_their_wire_shape(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    start = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {cell: start})
    for i in range(20):
        await append(pool, cell, b"m%d" % i, founder.id)
    events = await stream.collect(20)
    assert seqs(events) == list(range(start + 1, start + 21))
    assert [b64d(e["body"]) for e in events] == [b"m%d" % i for i in range(20)]
    assert events[0] == {
        "type": "event",
        "group": b32e(cell),
        "seq": start + 1,
        "kind": "message",
        "sender": founder.id_text,
        "body": events[0]["body"],
        "created_at": int(NOW.timestamp()),
    }
    await stream.silence()


async def test_subscribing_from_zero_replays_the_whole_log(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    for i in range(3):
        await append(pool, cell, b"old %d" % i)
    total = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {cell: 0})
    assert seqs(await stream.collect(total)) == list(range(1, total + 1))


async def test_a_non_member_subscribing_gets_the_unknown_group_answer(
    founder: Actor, outsider: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    unknown = os.urandom(32)
    stream = await connect(http, server.url, outsider.token, {})
    await stream.ws.send_json({"type": "subscribe", "cursors": {b32e(cell): 0}})
    theirs = await stream.until("error")
    await stream.ws.send_json({"type": "subscribe", "cursors": {b32e(unknown): 0}})
    nowhere = await stream.until("error")
    assert theirs["group"] == b32e(cell) and nowhere["group"] == b32e(unknown)
    del theirs["group"], nowhere["group"]
    assert theirs == nowhere == {"type": "error", "code": "not_found", "message": "no such group"}
    await append(pool, cell, b"not for outsiders")
    assert (await stream.until("subscribed"))["cursors"] == {}
    await stream.silence()
    assert stream.events == []


async def test_a_client_that_reconnects_gets_exactly_what_it_missed(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    start = await last_seq(pool, cell)
    first = await connect(http, server.url, founder.token, {cell: start})
    for i in range(5):
        await append(pool, cell, b"before %d" % i)
    cursor = (await first.collect(5))[-1]["seq"]
    await first.ws.close()
    for i in range(7):
        await append(pool, cell, b"while away %d" % i)
    second = await connect(http, server.url, founder.token, {cell: cursor})
    await append(pool, cell, b"after")
    events = await second.collect(8)
    assert seqs(events) == list(range(cursor + 1, cursor + 9))
    assert b64d(events[0]["body"]) == b"while away 0" and b64d(events[-1]["body"]) == b"after"
    await second.silence()


async def test_two_instances_on_one_database_serve_one_group(
    founder: Actor, server_factory, http, pool: Pool, database_url: str
) -> None:
    cell = founder.cell or b""
    instance_a = await server_factory()
    instance_b = await server_factory()
    start = await last_seq(pool, cell)
    on_a = await connect(http, instance_a.url, founder.token, {cell: start})
    on_b = await connect(http, instance_b.url, founder.token, {cell: start})
    # Written on a connection of its own, as another instance's request would be.
    writer = await asyncpg.connect(database_url)
    try:
        for i in range(30):
            async with writer.transaction():
                await store.append_event(writer, cell, "message", founder.id, b"%d" % i, NOW)
    finally:
        await writer.close()
    expected = list(range(start + 1, start + 31))
    assert seqs(await on_a.collect(30)) == expected
    assert seqs(await on_b.collect(30)) == expected
    await on_a.silence(0.3)
    await on_b.silence(0.3)


async def test_a_server_restart_mid_stream_loses_nothing(
    founder: Actor, settings: Settings, http, pool: Pool, database_url: str, instances
) -> None:
    cell = founder.cell or b""
    start = await last_seq(pool, cell)
    total = 60
    first_url, first = await start_instance(instances, settings, pool, database_url)
    stream = await connect(http, first_url, founder.token, {cell: start})

    async def keep_sending() -> None:
        for i in range(total):
            await append(pool, cell, b"%d" % i)
            await asyncio.sleep(0.01)

    sender = asyncio.create_task(keep_sending())
    await stream.collect(10)
    await first.cleanup()  # the instance goes away mid-stream
    with pytest.raises((TimeoutError, AssertionError)):
        await stream.collect(total, wait=2)  # its socket closed: no more arrives
    assert stream.ws.closed
    cursor = stream.events[-1]["seq"]
    second_url, _ = await start_instance(instances, settings, pool, database_url)
    resumed = await connect(http, second_url, founder.token, {cell: cursor})
    async with asyncio.timeout(WAIT_S):
        await sender
    received = stream.events + await resumed.collect(start + total - cursor)
    assert seqs(received) == list(range(start + 1, start + total + 1))
    await resumed.silence(0.3)


async def test_the_listener_reconnects_and_catches_up_after_losing_its_connection(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    hub = server.app[HUB_KEY]
    start = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {cell: start})
    for _ in range(100):  # under load the listener may still be connecting
        if hub.listening:
            break
        await asyncio.sleep(0.1)
    async with transaction(pool) as conn:
        killed = await conn.fetchval(
            """SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
               WHERE application_name = 'spokes-realtime' AND datname = current_database()"""
        )
    assert killed == 1  # and gone: the timeout makes terminate wait for the exit
    await append(pool, cell, b"while the listener was down")  # its NOTIFY is lost
    await append(pool, cell, b"around the reconnect")
    # Both arrive well before the 10 s safety tick: the reconnect reads every feed's news.
    events = await stream.collect(2, wait=5)
    assert seqs(events) == [start + 1, start + 2]
    for _ in range(100):  # the listener is back within a few seconds, even on a busy machine
        if hub.listening:
            break
        await asyncio.sleep(0.1)
    assert hub.listening
    await append(pool, cell, b"live again")
    assert seqs(await stream.collect(3, wait=5)) == [start + 1, start + 2, start + 3]


async def test_duplicate_and_stray_notifications_deliver_nothing_twice(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    start = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {cell: start})
    seq = await append(pool, cell, b"once")
    async with transaction(pool) as conn:
        for payload in (f"{b32e(cell)}:{seq}", f"{b32e(cell)}:{seq}", f"{b32e(cell)}:999", "junk"):
            await conn.execute("SELECT pg_notify($1, $2)", store.CHANNEL, payload)
    server.app[HUB_KEY].safety_poke()
    assert seqs(await stream.collect(1)) == [seq]
    await stream.silence()


async def test_a_poke_delivers_an_event_whose_notification_never_came(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    start = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {cell: start})
    await append(pool, cell, b"announced")
    await stream.collect(1)  # the hub has read everything it was told about
    async with transaction(pool) as conn:  # an append without its NOTIFY
        await conn.execute("UPDATE groups SET last_seq = last_seq + 1 WHERE group_id = $1", cell)
        await conn.execute(
            "INSERT INTO group_events (group_id, seq, kind, body) VALUES ($1, $2, 'message', 'x')",
            cell,
            start + 2,
        )
    await stream.silence(0.3)
    server.app[HUB_KEY].safety_poke()  # what the safety timer does every 10 s
    assert seqs(await stream.collect(2)) == [start + 1, start + 2]


async def test_news_announced_while_this_instance_commits_to_the_group_arrives_when_it_ends(
    founder: Actor, server, http, pool: Pool
) -> None:
    """A notification that comes while this instance's message writer commits to the group
    is held (most likely its own batch, which it caches itself), then delivered when the
    batch ends, without waiting for the 10 s safety poke; held once, never again."""
    cell = founder.cell or b""
    hub = server.app[HUB_KEY]
    start = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {cell: start})
    await append(pool, cell, b"first")
    await stream.collect(1)  # the group's feed now caches its tail
    hub.committing(frozenset({cell}))
    hub.committing(frozenset({cell}))  # two batches in flight for the group
    await append(pool, cell, b"another instance's")  # committed elsewhere: only its NOTIFY
    await stream.silence(0.3)
    hub.commit_ended(frozenset({cell}))
    await stream.silence(0.3)  # one batch is still committing
    hub.commit_ended(frozenset({cell}))
    assert seqs(await stream.collect(2, wait=2.0)) == [start + 1, start + 2]


async def test_a_member_removed_from_a_group_stops_receiving_it(
    founder: Actor, server_factory, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    instance = await server_factory()  # not the instance whose hub is told
    start = await last_seq(pool, cell)
    stream = await connect(http, instance.url, founder.token, {cell: start})
    await append(pool, cell, b"still a member")
    await stream.collect(1)
    async with transaction(pool) as conn:
        await group_store.remove_group_member(conn, cell, founder.id)
        await store.append_event(conn, cell, "roster", None, b"removed", NOW)
    refused = await stream.until("error")
    assert refused == {
        "type": "error",
        "code": "not_found",
        "group": b32e(cell),
        "message": "no such group",
    }
    await append(pool, cell, b"after removal")
    await stream.silence()
    assert seqs(stream.events) == [start + 1]


async def test_close_group_member_ends_a_local_subscription_at_once(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    stream = await connect(http, server.url, founder.token, {cell: await last_seq(pool, cell)})
    server.app[HUB_KEY].close_group_member(cell, founder.id)
    assert (await stream.until("error"))["code"] == "not_found"
    await append(pool, cell, b"x")
    await stream.silence()
    server.app[HUB_KEY].close_member_sockets(founder.id)
    assert (await stream.receive())["type"] == "closed"


# --- Sessions and authentication -------------------------------------------------------


async def test_a_revoked_session_closes_its_socket(
    founder: Actor, server, http, pool: Pool
) -> None:
    stream = await connect(http, server.url, founder.token, {})
    async with transaction(pool) as conn:
        await conn.execute("UPDATE sessions SET revoked_at = now()")
    await server.app[HUB_KEY].check_sessions()  # what the hub does every minute
    assert (await stream.until("error"))["code"] == "session_expired"
    assert (await stream.receive())["type"] == "closed"
    assert stream.ws.close_code == 4401


async def test_an_expired_session_gets_no_more_events(
    server_factory, http, pool: Pool, settings: Settings
) -> None:
    clock = FixedClock(datetime.now(UTC))
    instance = await server_factory(clock=clock)
    actor = Actor(http, instance.url, clock=clock)
    assert (await actor.found()).status == 201
    cell = actor.cell or b""
    async with transaction(pool) as conn:
        await group_store.add_group_member(conn, cell, actor.id, NOW)
    stream = await connect(http, instance.url, actor.token, {cell: await last_seq(pool, cell)})
    clock.advance((settings.session_ttl + timedelta(seconds=1)).total_seconds())
    await append(pool, cell, b"too late")
    assert (await stream.until("error"))["code"] == "session_expired"
    assert (await stream.receive())["type"] == "closed"
    assert stream.events == []


async def test_a_browser_logs_in_with_its_first_message(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    ws = await http.ws_connect(server.url + "/v1/ws")
    await ws.send_json({"type": "auth", "token": founder.token})
    stream = Stream(ws)
    assert (await stream.until("ready"))["member_id"] == founder.id_text
    start = await last_seq(pool, cell)
    assert (await stream.subscribe({cell: start}))["cursors"] == {b32e(cell): start}
    await append(pool, cell, b"hi")
    assert seqs(await stream.collect(1)) == [start + 1]


async def test_a_bad_token_is_refused_before_or_right_after_the_upgrade(
    founder: Actor, server, http
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(server.url + "/v1/ws", headers={"Authorization": "Bearer nope"})
    assert refused.value.status == 401
    ws = await http.ws_connect(server.url + "/v1/ws")
    await ws.send_json({"type": "auth", "token": "nope"})
    stream = Stream(ws)
    assert (await stream.receive())["code"] == "unauthorized"
    assert (await stream.receive())["type"] == "closed"
    assert ws.close_code == 4401
    ws = await http.ws_connect(server.url + "/v1/ws")
    await ws.send_str("not json")
    assert (await Stream(ws).receive())["code"] == "unauthorized"


async def test_a_plain_get_on_the_socket_endpoint_is_a_json_400(founder: Actor, server) -> None:
    reply = await founder.call("GET", "/v1/ws")
    assert (reply.status, reply.code) == (400, "bad_request")


async def test_malformed_messages_get_errors_and_the_socket_stays_open(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    stream = await connect(http, server.url, founder.token, {})
    for bad in (
        "[]",
        "{}",
        json.dumps({"type": "subscribe", "cursors": []}),
        json.dumps({"type": "subscribe", "cursors": {b32e(cell): -1}}),
        json.dumps({"type": "subscribe", "cursors": {b32e(cell): True}}),
        json.dumps({"type": "subscribe", "cursors": {"zz!": 0}}),
        json.dumps({"type": "auth", "token": founder.token}),
    ):
        await stream.ws.send_str(bad)
        assert (await stream.until("error"))["code"] == "bad_request", bad
    start = await last_seq(pool, cell)
    await stream.subscribe({cell: start})
    await append(pool, cell, b"still works")
    assert seqs(await stream.collect(1)) == [start + 1]


async def test_a_cursor_from_the_future_is_brought_back_to_the_newest_event(
    founder: Actor, server, http, pool: Pool
) -> None:
    cell = founder.cell or b""
    newest = await last_seq(pool, cell)
    stream = await connect(http, server.url, founder.token, {})
    assert (await stream.subscribe({cell: newest + 1000}))["cursors"] == {b32e(cell): newest}
    await append(pool, cell, b"next")
    assert seqs(await stream.collect(1)) == [newest + 1]


async def test_a_thousand_concurrent_events_reach_ten_sockets_once_each_in_order_across_a_restart(
    founder: Actor, settings: Settings, http, pool: Pool, database_url: str, instances
) -> None:
    """The delivery proof at this layer: 10 writers × 100 events, 10 sockets on two
    instances, one socket forced to reconnect and one instance restarted mid-stream."""
    cell = founder.cell or b""
    start = await last_seq(pool, cell)
    total, writers = 1000, 10
    url_a, runner_a = await start_instance(instances, settings, pool, database_url)
    url_b, _ = await start_instance(instances, settings, pool, database_url)
    live = {"a": url_a, "b": url_b}
    received: list[list[dict[str, Any]]] = [[] for _ in range(10)]
    force_reconnect = asyncio.Event()
    progressed = [asyncio.Event() for _ in range(10)]  # each client has 100 events

    async def follow(index: int) -> None:
        """A client: stream, and on any disconnect resume from its cursor on a live instance."""
        home = "a" if index % 2 else "b"
        while len(received[index]) < total:
            cursor = received[index][-1]["seq"] if received[index] else start
            stream = await connect(http, live.get(home, live["b"]), founder.token, {cell: cursor})
            stream.events = received[index]
            while len(received[index]) < total:
                if index == 0 and force_reconnect.is_set():
                    force_reconnect.clear()
                    await stream.ws.close()
                    break
                value = await stream.receive()
                if value["type"] == "closed":
                    break
                assert value["type"] == "event", value
                if len(received[index]) >= 100:
                    progressed[index].set()

    async def write(sender: int) -> None:
        for n in range(total // writers):
            async with transaction(pool) as conn:
                await store.append_event(
                    conn, cell, "message", bytes([sender]) * 32, b"%d" % n, NOW
                )

    clients = [asyncio.create_task(follow(i)) for i in range(10)]
    async with asyncio.timeout(120):
        appends = asyncio.gather(*(write(s) for s in range(writers)))
        await asyncio.gather(*(p.wait() for p in progressed))
        force_reconnect.set()
        del live["a"]  # instance A dies mid-stream; its clients move to B
        await runner_a.cleanup()
        await appends
        await asyncio.gather(*clients)
    expected = list(range(start + 1, start + total + 1))
    for events in received:
        assert seqs(events) == expected  # every event, once, in order
        for sender in range(writers):
            mine = [b64d(e["body"]) for e in events if e["sender"] == b32e(bytes([sender]) * 32)]
            assert mine == [b"%d" % n for n in range(total // writers)]
