"""PostgreSQL restarted ten times in a row under load (issue 12, failure survival).

Two server instances on a PostgreSQL cluster of this test's own, each with
its own pool and LISTEN connection, as a deployment runs them. Ten members
of one cell: three send over their sockets to the first instance, one posts
over HTTP to the second, four watch live on the second and one on the
first, and one (the resumer) hangs up at each restart and comes back
through the outage from its cursor, reading over HTTP meanwhile. Ten times,
without touching the servers, the cluster is stopped (a fast shutdown, or
every third time an immediate one: a crash), left down for a third of a
second and started again.

What must hold: the pools, the LISTEN connections and every background
task come back by themselves (no task crashed, both instances listen again);
delivery latency after each restart is about what it was before; every
request during the outage gets 503 with Retry-After (no other 5xx) and
every socket send the code ``unavailable`` (never ``internal``); every
member resumes from its cursor; and every accepted message is in the log
once, delivered to every watcher once, in the group's order and each
sender's. The figures are printed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import pytest

from crypto.encoding import b32e, b64d, b64e, decode
from crypto.messages import Header
from server.errors import DATABASE_OUTAGE
from server.http.appkeys import HUB_KEY, METRICS_KEY
from server.settings import Settings
from tests.e2e.test_kill_batch import _stored
from tests.server.own_postgres import OwnPostgres, own_postgres
from tests.server.test_delivery import GENEROUS, Instance, Member, current_seq, form_cell
from tests.server.test_message_batches import send_frame

RESTARTS = 10
DOWN_S = 0.3  # the cluster stays stopped this long each time (out ~0.6 s in all)
# After a crash PostgreSQL first syncs its whole data folder, file by file (~1.5 s
# here); syncfs does the same in one call.
RECOVERY = "-c recovery_init_sync_method=syncfs"
WARM_UP_S = 1.0
# Latency windows: messages sent in WINDOW_S from SETTLE_S after the cluster's return,
# or from when both instances listen again if that is later ("after"), and in WINDOW_S
# ending TAIL_S before the next stop ("before"). TAIL_S leaves the last of them time to
# arrive before the next outage delays them. How long LISTEN took is reported apart.
SETTLE_S = 0.3
WINDOW_S = 0.5
TAIL_S = 0.25
SOCKET_RATE = 35.0  # messages a second per socket sender (three of them)
HTTP_RATE = 15.0  # the HTTP sender's
OFFERED = 3 * SOCKET_RATE + HTTP_RATE
RETRY_S = 0.1  # a refused send is sent again after this (Retry-After says 1 s: we hurry)
ANSWER_TIMEOUT_S = 10.0
BACK_WITHIN_S = 5.0  # both instances listen again within this of the cluster's return
DRAIN_S = 15.0
# Generous, for a 2-core machine shared with other tests: a lost LISTEN, or a task
# that died, would show as up to 10 s (the safety tick).
LATENCY_AFTER_MAX_S = 2.0
LATENCY_AFTER_P50_S = (3.0, 0.1)  # after-window median < 3 x the run's median before + 0.1 s

MessageKey = tuple[bytes, int]  # (sender, counter)


@dataclass
class Run:
    """What every client saw, with when: the test's record of the whole run."""

    stopping: bool = False  # the senders finish the message in hand, then stop
    final_seq: int | None = None  # the last accepted message's, once the senders stopped
    outage: asyncio.Event = field(default_factory=asyncio.Event)  # set while the cluster is down
    sent_at: dict[MessageKey, float] = field(default_factory=dict)  # the accepted attempt
    seqs: dict[MessageKey, int] = field(default_factory=dict)
    arrivals: list[tuple[str, MessageKey, float]] = field(default_factory=list)  # who, what, when
    http_statuses: Counter[int] = field(default_factory=Counter)
    refusals: list[tuple[str, float]] = field(default_factory=list)  # ("503"/"unavailable", when)
    socket_errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[int | None] = field(default_factory=Counter)  # sockets the server closed
    bad_503: list[str] = field(default_factory=list)  # 503s without Retry-After or the code

    def accepted(self, key: MessageKey, seq: int, at: float) -> None:
        assert key not in self.sent_at, "a message was accepted twice"
        self.sent_at[key], self.seqs[key] = at, seq

    def answered(self, status: int, headers: Any, body: str | None) -> None:
        """Note an HTTP answer; a 503 must say Retry-After and `unavailable`
        (``body`` None: a refused WebSocket upgrade, whose body aiohttp does not pass on)."""
        self.http_statuses[status] += 1
        if status == 503:
            self.refusals.append(("503", time.monotonic()))
            code = "unavailable" if body is None else json.loads(body)["error"]["code"]
            if headers.get("Retry-After") != "1" or code != "unavailable":
                self.bad_503.append(f"{headers.get('Retry-After')} {code}")


@dataclass
class Watcher:
    """A member reading the cell live: its cursor, and the events it got in order."""

    member: Member
    name: str
    cursor: int = 0
    keys: list[MessageKey] = field(default_factory=list)
    connections: int = 0
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def caught_up(self, run: Run) -> bool:
        return run.final_seq is not None and self.cursor >= run.final_seq

    def take(self, run: Run, events: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for event in events:
            assert event["seq"] == self.cursor + 1, (
                "an event came twice, out of order or not at all"
            )
            self.cursor = event["seq"]
            if event["kind"] == "message":
                key = message_key(event["body"])
                self.keys.append(key)
                run.arrivals.append((self.name, key, now))


def message_key(body: str) -> MessageKey:
    fields = decode(b64d(body))
    assert isinstance(fields, dict) and isinstance(fields["header"], bytes)
    return key_of(fields["header"])


@pytest.fixture
def cluster() -> Iterator[OwnPostgres]:
    with own_postgres("spokes-restarts-pg-") as pg:
        yield pg


@pytest.fixture
async def instances(
    cluster: OwnPostgres, settings: Settings
) -> AsyncIterator[tuple[Instance, Instance]]:
    """Two instances, each opening its own pool and LISTEN on the cluster."""
    effective = settings.with_changes(
        database_url=cluster.url(),
        metrics_port=0,
        rate_redeem_per_source=GENEROUS,
        rate_login_per_source=GENEROUS,
        rate_login_per_member=GENEROUS,
    )
    pair = (Instance(effective, None), Instance(effective, None))  # None: a pool of its own
    for instance in pair:
        await instance.start()
    yield pair
    for instance in reversed(pair):
        await instance.stop()


def headers_of(member: Member) -> dict[str, str]:
    return {"Authorization": f"Bearer {member.actor.token}"}


# --- the clients --------------------------------------------------------------------------


async def paced(run: Run, rate: float, send_one: Any) -> None:
    """Call ``send_one(n)`` for n = 0, 1, ... at ``rate`` a second until the run stops
    (a sender held up by an outage goes on at the same pace, without a burst)."""
    n, due = 0, time.monotonic()
    while not run.stopping:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await send_one(n)
        n, due = n + 1, max(due + 1 / rate, time.monotonic())


async def send_over_socket(run: Run, http: aiohttp.ClientSession, member: Member) -> None:
    """Send sealed messages one at a time, each again (the same bytes) until accepted."""
    async with http.ws_connect(member.instance.url + "/v1/ws", headers=headers_of(member)) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "ready"

        async def send_one(n: int) -> None:
            message = member.view.seal(f"s{n}")
            while True:
                attempt = time.monotonic()
                await ws.send_json(send_frame(str(n), member.view.group, message))
                answer = await answer_to(ws, str(n))
                if answer["type"] == "sent":
                    run.accepted(key_of(message.header), answer["cursor"], attempt)
                    return
                run.socket_errors[answer["code"]] += 1
                run.refusals.append((answer["code"], time.monotonic()))
                await asyncio.sleep(RETRY_S)

        await paced(run, SOCKET_RATE, send_one)


async def answer_to(ws: aiohttp.ClientWebSocketResponse, ref: str) -> dict[str, Any]:
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            frame = await ws.receive_json()
            if frame.get("ref") == ref:
                return dict(frame)


def key_of(header_bytes: bytes) -> MessageKey:
    header = Header.decode(header_bytes)
    return header.sender, header.counter


async def send_over_http(run: Run, http: aiohttp.ClientSession, member: Member, url: str) -> None:
    path = f"{url}/v1/groups/{b32e(member.view.group)}/messages"

    async def send_one(n: int) -> None:
        message = member.view.seal(f"h{n}")
        body = {p: b64e(getattr(message, p)) for p in ("header", "ciphertext", "signature")}
        while True:
            attempt = time.monotonic()
            async with http.post(path, json=body, headers=headers_of(member)) as response:
                text = await response.text()
                run.answered(response.status, response.headers, text)
            if response.status == 201:
                run.accepted(key_of(message.header), json.loads(text)["cursor"], attempt)
                return
            await asyncio.sleep(RETRY_S)

    await paced(run, HTTP_RATE, send_one)


async def watch(run: Run, http: aiohttp.ClientSession, watcher: Watcher, *, hang_up: bool) -> None:
    """Read the cell live, resuming from the cursor after every close.

    With ``hang_up`` (the resumer) the socket is closed from this side when an
    outage starts; until it connects again the events are read over HTTP.
    """
    member = watcher.member
    group = b32e(member.view.group)
    while not watcher.caught_up(run):
        if hang_up and run.outage.is_set():
            await read_over_http(run, http, watcher)
        try:
            ws = await http.ws_connect(member.instance.url + "/v1/ws", headers=headers_of(member))
        except aiohttp.WSServerHandshakeError as refused:
            run.answered(refused.status, refused.headers or {}, None)
            await asyncio.sleep(RETRY_S)
            continue
        watcher.connections += 1
        async with ws:
            await ws.send_json({"type": "subscribe", "cursors": {group: watcher.cursor}})
            reading = asyncio.create_task(read_socket(run, ws, watcher))
            waits = {reading}
            if hang_up:
                waits.add(asyncio.create_task(run.outage.wait()))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        if hang_up and run.outage.is_set():
            await asyncio.sleep(RETRY_S)


async def read_socket(run: Run, ws: aiohttp.ClientWebSocketResponse, watcher: Watcher) -> None:
    while not watcher.caught_up(run):
        try:
            message = await ws.receive(timeout=0.2)
        except TimeoutError:
            continue
        if message.type != aiohttp.WSMsgType.TEXT:  # the server closed it
            run.closes[ws.close_code] += 1
            return
        frame = json.loads(message.data)
        if frame["type"] == "error":
            run.socket_errors[frame["code"]] += 1
            continue
        if frame["type"] == "subscribed":
            watcher.subscribed.set()
        events = frame["events"] if frame["type"] == "batch" else [frame]
        watcher.take(run, [e for e in events if e["type"] == "event"])


async def read_over_http(run: Run, http: aiohttp.ClientSession, watcher: Watcher) -> None:
    member = watcher.member
    path = f"/v1/groups/{b32e(member.view.group)}/events?since={watcher.cursor}&limit=500"
    async with http.get(member.instance.url + path, headers=headers_of(member)) as response:
        text = await response.text()
        run.answered(response.status, response.headers, text)
    if response.status == 200:
        watcher.take(run, json.loads(text)["events"])


# --- what the operator would look at ------------------------------------------------------


async def realtime_backends(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spokes-realtime'"
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def task_crashes(http: aiohttp.ClientSession, instance: Instance) -> dict[str, float]:
    """Each supervised task's crashes, as the instance's metrics report them."""
    metrics = instance.runner.app[METRICS_KEY] if instance.runner else None
    assert metrics is not None and metrics.address is not None
    host, port = metrics.address
    async with http.get(f"http://{host}:{port}/metrics") as response:
        text = await response.text()
    crashes = {}
    for line in text.splitlines():
        if line.startswith("spokes_background_task_crashes_total{"):
            name = line.split('task="', 1)[1].split('"', 1)[0]
            crashes[name] = float(line.rsplit(" ", 1)[1])
    return crashes


async def idle_in_transaction(run: Run, url: str, longest: list[float]) -> None:
    """Sample how long any backend has sat idle inside a transaction (reconnecting as needed)."""
    query = """SELECT coalesce(max(extract(epoch FROM now() - state_change)), 0)::float8
               FROM pg_stat_activity WHERE state = 'idle in transaction'"""
    while not run.stopping:
        try:
            conn = await asyncpg.connect(url)
            try:
                while not run.stopping:
                    longest.append(await conn.fetchval(query))
                    await asyncio.sleep(0.05)
            finally:
                conn.terminate()
        except (*DATABASE_OUTAGE, asyncpg.PostgresError):
            await asyncio.sleep(RETRY_S)


# --- the test -----------------------------------------------------------------------------


@dataclass
class Restart:
    number: int
    mode: str
    stopped: float
    up: float = 0.0
    listening: float = 0.0  # both instances' LISTEN back (and seen by PostgreSQL)

    @property
    def after_from(self) -> float:
        return max(self.up + SETTLE_S, self.listening)

    def in_before(self, at: float) -> bool:
        return self.stopped - TAIL_S - WINDOW_S <= at < self.stopped - TAIL_S


async def test_postgresql_restarted_ten_times_under_load_loses_nothing(
    cluster: OwnPostgres,
    instances: tuple[Instance, Instance],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    first, second = instances
    members = await form_cell(http, first)
    for member in members[3:8]:
        member.instance = second
    watchers = [Watcher(m, f"w{n}") for n, m in enumerate(members[4:], start=4)]
    start = await current_seq(members[0])
    for watcher in watchers:
        watcher.cursor = start
    run = Run()
    longest_idle: list[float] = []
    readers = [asyncio.create_task(watch(run, http, w, hang_up=w.name == "w9")) for w in watchers]
    async with asyncio.timeout(10):
        for watcher in watchers:
            await watcher.subscribed.wait()
    senders = [
        *(asyncio.create_task(send_over_socket(run, http, m)) for m in members[:3]),
        asyncio.create_task(send_over_http(run, http, members[3], second.url)),
    ]
    tasks = [
        *senders,
        *readers,
        asyncio.create_task(idle_in_transaction(run, cluster.url(), longest_idle)),
    ]
    restarts: list[Restart] = []
    try:
        await asyncio.sleep(WARM_UP_S)
        for number in range(RESTARTS):
            mode = "immediate" if number % 3 == 2 else "fast"  # a crash every third time
            restart = Restart(number + 1, mode, time.monotonic())
            restarts.append(restart)
            run.outage.set()
            await asyncio.to_thread(cluster.stop, restart.mode)
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(cluster.start, RECOVERY)
            restart.up = time.monotonic()
            run.outage.clear()
            await until_listening(cluster, instances)
            restart.listening = time.monotonic()
            next_stop = restart.after_from + WINDOW_S + TAIL_S
            await asyncio.sleep(max(0.0, next_stop - time.monotonic()))
        run.stopping = True
        async with asyncio.timeout(DRAIN_S):
            await asyncio.gather(*senders)
            run.final_seq = max(run.seqs.values())
            await asyncio.gather(*tasks)
    finally:
        run.stopping = True
        for task in tasks:
            task.cancel()

    # Nothing lost, nothing twice, in order: the log holds exactly what was accepted.
    stored = await _stored(cluster.url(), members[0].view.group)
    accepted = set(run.sent_at)
    assert len(stored) == len(set(stored))
    assert {key_of(header) for header in stored} == accepted
    for watcher in watchers:
        assert len(watcher.keys) == len(accepted), watcher.name
        assert set(watcher.keys) == accepted, watcher.name
        for sender in (m.actor.id for m in members[:4]):
            counters = [c for s, c in watcher.keys if s == sender]
            assert counters == sorted(counters), "a sender's messages arrived out of order"
    assert [w.connections for w in watchers[:-1]] == [1] * 5  # open through all ten restarts
    assert watchers[-1].connections >= RESTARTS + 1  # the resumer came back every time

    # Only 503 with Retry-After, and `unavailable` on sockets: never a 500 or `internal`.
    assert set(run.http_statuses) <= {200, 201, 503}, run.http_statuses
    assert not run.bad_503, run.bad_503
    assert set(run.socket_errors) <= {"unavailable"}, run.socket_errors
    assert set(run.closes) <= {1013}, run.closes  # "try again later", after an outage

    # Everything came back by itself: no task crashed, both listen, pools answer.
    for instance in instances:
        hub = instance.runner.app[HUB_KEY] if instance.runner else None
        assert hub is not None and hub.listening
        assert set(hub.crashes.values()) == {0}, hub.crashes
        crashes = await task_crashes(http, instance)
        assert {"hub.listen", "hub.read_ahead", "hub.tick", "prune"} <= set(crashes)
        assert set(crashes.values()) == {0.0}, crashes
        async with http.get(instance.url + "/v1/groups", headers=headers_of(members[0])) as reply:
            assert reply.status == 200  # through the instance's own pool

    # Nothing failed that the outage doesn't explain: no unhandled error, no crashed task
    # or socket writer (each of those logs an error).
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[:5]
    refused_upgrades = [r for r in caplog.records if "unavailable in GET /v1/ws" in r.getMessage()]
    report(run, restarts, watchers, longest_idle)
    print(f"WebSocket upgrades refused with 503 during the outages: {len(refused_upgrades)}")
    assert refused_upgrades


async def until_listening(cluster: OwnPostgres, instances: tuple[Instance, Instance]) -> None:
    """Both hubs LISTEN again, and PostgreSQL sees both connections."""
    async with asyncio.timeout(BACK_WITHIN_S):
        while True:
            hubs = [i.runner.app[HUB_KEY] for i in instances if i.runner is not None]
            if all(hub.listening for hub in hubs):
                try:
                    if await realtime_backends(cluster.url()) == len(instances):
                        return
                except (*DATABASE_OUTAGE, asyncpg.PostgresError):
                    pass
            await asyncio.sleep(0.02)


def report(run: Run, restarts: list[Restart], watchers: list[Watcher], idle: list[float]) -> None:
    print(
        f"\n{len(run.sent_at)} messages accepted ({sum(run.http_statuses.values())} HTTP "
        f"answers: {dict(run.http_statuses)}; socket refusals {dict(run.socket_errors)}), "
        f"each delivered once to {len(watchers)} watchers; longest idle in transaction "
        f"{max(idle, default=0) * 1000:.0f} ms"
    )
    print("restart mode      down  listen  503s  unavailable  before p50/max  after p50/max (ms)")
    windows = []
    for restart, following in zip(restarts, [*restarts[1:], None], strict=True):
        before = latencies(run, restart.stopped - TAIL_S - WINDOW_S, restart.stopped - TAIL_S)
        after = latencies(run, restart.after_from, restart.after_from + WINDOW_S)
        until = following.stopped if following else math.inf
        refused = Counter(kind for kind, t in run.refusals if restart.stopped <= t < until)
        print(
            f"{restart.number:>7} {restart.mode:<9} {restart.up - restart.stopped:.2f}s "
            f"{restart.listening - restart.up:.2f}s {refused['503']:>5} "
            f"{refused['unavailable']:>12}  {ms(before, 50):>6}/{ms(before, 100):<6}  "
            f"{ms(after, 50):>6}/{ms(after, 100):<6}"
        )
        assert before and after, "no message was delivered in a window"
        windows.append((restart, before, after))
    steady = [k for k, at in run.sent_at.items() if any(r.in_before(at) for r in restarts)]
    rate = len(steady) / (WINDOW_S * len(restarts))
    print(f"accepted in the windows before the stops: {rate:.0f}/s (offered {OFFERED:.0f}/s)")
    usual = statistics.median(value for _, before, _ in windows for value in before)
    times, plus = LATENCY_AFTER_P50_S
    for restart, _, after in windows:
        assert max(after) < LATENCY_AFTER_MAX_S, (restart, max(after))
        assert statistics.median(after) < times * usual + plus, (restart, usual)


def latencies(run: Run, start: float, end: float) -> list[float]:
    return [
        at - run.sent_at[key]
        for _, key, at in run.arrivals
        if key in run.sent_at and start <= run.sent_at[key] < end
    ]


def ms(values: list[float], percentile: int) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, len(ordered) * percentile // 100)] * 1000:.0f}"
