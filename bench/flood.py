"""A bounded flood of hostile traffic against one `spokes-server` process, and what it costs.

    .venv/bin/python bench/flood.py [--requests 20000] [--sockets 2000] [-v]

Starts ``spokes-server serve`` (behind a pretend proxy: SPOKES_TRUST_FORWARDED_FOR=1,
so each flood request can claim its own source address) on its own embedded
PostgreSQL in a temporary folder, and builds one cell through the real API:
three members who keep working, and ten more whose sessions the floods use.
From two load processes, it sends junk and hostile HTTP requests (bad JSON,
deep JSON, oversized bodies, unknown routes and methods, bad tokens, login
challenges, invite guesses) and opens sockets (silent, badly logged in,
logged in and held, logged in and sending junk frames), while the three
members go on as members do: one sends a message every 0.25 s, one reads its
groups and events every 0.1 s and reconnects its socket every 2 s, one
receives the messages live on its socket. The flood runs twice, the same
each time from addresses of its own: the first warms the server up (its
pools, caches and allocator reach their working size), the second is
measured. The server's RSS is sampled throughout: before any flood, settled
after the first, at the peak of either, and after the second until it is
back near the level the first left.

Every request and socket is bounded in count and time; everything runs on
loopback, and the command stops the server when it is done. The test suite
runs the same flood, smaller (tests/server/test_flood_memory.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.actors import Actor  # noqa: E402
from bench.messages import (  # noqa: E402
    Cell,
    commit_epoch,
    found_cell,
    grow,
    machine,
    percentile,
    rss_kib,
    running_server,
    seal_all,
)
from crypto.encoding import b32e, b64e  # noqa: E402

FLOOD_MEMBERS = 5  # members whose sessions a flood's logged-in sockets use, each flood its own
# Addresses the members and the flood claim (X-Forwarded-For; documentation ranges).
MEMBER_SOURCE = "192.0.2.{}"
# Each flood (the warm-up, then the measured one) comes from addresses of its own, so the
# second is not refused for what the first spent of the per-source limits.
HOT_SOURCE = "203.0.113.{}"  # one source sends a quarter of a flood: it meets 429s
SPREAD_SOURCE = "10.{}.{}.{}"  # the rest, spread over `sources` addresses

SEND_EVERY_S = 0.25
READ_EVERY_S = 0.1
RECONNECT_EVERY_S = 2.0
SAMPLE_EVERY_S = 0.05
SETTLE_S = 3.0  # quiet after the warm-up before its level is read
CLIENT_TIMEOUT_S = 30.0  # a single flood request or socket step
OVERSIZED_BYTES = 400 * 1024  # past the server's 320 KiB bodies and frames
JUNK_BURST = 1_500  # frames a junk socket sends at once without reading its answers
DELIVERY_WAIT_S = 5.0  # for the last messages to reach the watcher after a flood
# "Back near its level" after a flood: within this much of the RSS the server settled
# at after the warm-up flood, or this fraction of it, whichever is more. Measured on
# 2 cores: 1-2 MiB above it once the flood's sockets have closed.
RECOVERY_KIB = 10 * 1024
RECOVERY_RATIO = 0.10
# What the server process may weigh at the flood's height (deploy/README.md says so).
RSS_BOUND_KIB = 128 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class FloodPlan:
    """How much hostile traffic, from how many clients and sources."""

    requests: int = 20_000
    sockets: int = 2_000
    request_tasks: int = 32  # concurrent request senders
    socket_tasks: int = 16  # concurrent socket openers
    sources: int = 2_000  # distinct addresses the spread part of the flood claims
    recovery_s: float = 30.0  # the longest wait for RSS to come back after the flood


@dataclass
class Figures:
    """What one flood measured."""

    answers: Counter[str] = field(default_factory=Counter)  # "kind status" of junk requests
    sockets: Counter[str] = field(default_factory=Counter)  # "kind outcome" of socket connects
    held_peak: int = 0  # flood sockets open at once, at most
    legit: dict[str, list[float]] = field(default_factory=dict)  # what -> seconds per answer
    legit_failures: list[str] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)  # send -> receipt on a member's socket
    undelivered: int = 0
    flood_s: float = 0.0
    server_cpu_s: float = 0.0  # CPU time the server process used during the flood
    cold_kib: int = 0  # RSS before any flood (the cell built)
    baseline_kib: int = 0  # RSS settled after the warm-up flood
    peak_kib: int = 0  # the highest RSS sample during either flood
    after_kib: int = 0  # RSS at the end of the recovery wait
    helper_kib: int = 0  # the server's signature helper process, after the flood
    recovered_s: float | None = None  # from the flood's end to RSS near the baseline
    rss: list[tuple[float, str, int]] = field(default_factory=list)  # (t, phase, KiB)

    def server_errors(self) -> dict[str, int]:
        """Answers of 500 or more other than 503 (an outage, with Retry-After)."""
        found = {**self.answers, **self.sockets}
        return {k: n for k, n in found.items() if _is_5xx(k.rsplit(" ", 1)[-1])}

    def every_answer(self) -> list[float]:
        """Seconds each of the members' answers took, deliveries on their socket included."""
        return [s for times in self.legit.values() for s in times] + self.delivery


def _is_5xx(status: str) -> bool:
    """An HTTP status of 500 or more other than 503 (not a socket's 4-digit close code)."""
    return len(status) == 3 and status.isdigit() and int(status) >= 500 and int(status) != 503


def near(baseline_kib: int, kib: int, allowance_kib: int, ratio: float) -> bool:
    """Whether ``kib`` is within the allowance of the baseline: a fixed amount or a ratio."""
    return kib <= baseline_kib + max(allowance_kib, int(baseline_kib * ratio))


# --- The cell: three members, and five for each flood ---------------------------------------


@dataclass
class Members:
    """The cell the flood runs beside: three members who keep working, and for each
    flood five whose sessions its logged-in sockets use."""

    cell: Cell
    sender: Actor  # sends a message every SEND_EVERY_S
    reader: Actor  # reads groups and events, reconnects its socket
    watcher: Actor  # receives the messages on its socket
    flooders: list[list[Actor]]  # five for each flood

    @property
    def group(self) -> str:
        return b32e(self.cell.group)


def source_session(number: int) -> aiohttp.ClientSession:
    """An HTTP client whose requests claim their own source address (through the proxy)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        headers={"X-Forwarded-For": MEMBER_SOURCE.format(number)},
    )


async def build_cell(url: str, sessions: list[aiohttp.ClientSession]) -> Members:
    """A founder and two members (three sources), then five for each flood (two more)."""
    cell = await found_cell(sessions[0], url)
    founder = cell.members[0]
    (reader,) = await grow(cell, sessions[1], url, 1)
    (watcher,) = await grow(cell, sessions[2], url, 1)
    flooders = [await grow(cell, session, url, FLOOD_MEMBERS) for session in sessions[3:5]]
    await commit_epoch(cell)
    return Members(cell, founder, reader, watcher, flooders)


# --- The members' own traffic during the flood ---------------------------------------------


class Legit:
    """The three members at work; every answer timed, every wrong one noted."""

    def __init__(self, url: str, members: Members) -> None:
        self.url, self.members = url, members
        self.times: dict[str, list[float]] = {}
        self.failures: list[str] = []
        self.sent_at: dict[int, float] = {}  # seq -> when its send started
        self.received: dict[int, float] = {}  # seq -> when the watcher had it
        self.caught_up = asyncio.Event()  # every message sent so far was received

    def note(self, what: str, started: float, good: bool, detail: object = "") -> None:
        self.times.setdefault(what, []).append(time.monotonic() - started)
        if not good:
            self.failures.append(f"{what}: {detail}"[:300])

    async def send_forever(self, stop: asyncio.Event) -> None:
        members = self.members
        me, cell = members.sender, members.cell
        keys = cell.keys[me.id]
        while not stop.is_set():
            (sealed,) = seal_all(cell, me, keys, 1, "http")
            body = json.loads(sealed)
            started = time.monotonic()
            reply = await me.call("POST", f"/v1/groups/{members.group}/messages", body)
            self.note("send a message", started, reply.status == 201, reply.body)
            if reply.status == 201:
                seq = int(reply.body["cursor"])
                self.sent_at[seq] = started
                if seq not in self.received:
                    self.caught_up.clear()
            await _pause(stop, SEND_EVERY_S)

    async def read_forever(self, stop: asyncio.Event) -> None:
        me, group = self.members.reader, self.members.group
        paths = ["/v1/groups", f"/v1/groups/{group}/events?since=0&limit=20", "/v1/me"]
        turn = 0
        while not stop.is_set():
            path = paths[turn % len(paths)]
            turn += 1
            started = time.monotonic()
            reply = await me.call("GET", path)
            self.note("read", started, reply.status == 200, reply.body)
            await _pause(stop, READ_EVERY_S)

    async def reconnect_forever(self, stop: asyncio.Event) -> None:
        """The reader's socket, opened afresh every RECONNECT_EVERY_S: connect, log in,
        subscribe, each answer timed."""
        me = self.members.reader
        while not stop.is_set():
            started = time.monotonic()
            try:
                ws = await me.http.ws_connect(
                    self.url + "/v1/ws", headers={"Authorization": f"Bearer {me.token}"}
                )
                ready = await ws.receive_json(timeout=CLIENT_TIMEOUT_S)
                self.note("open a socket", started, ready.get("type") == "ready", ready)
                started = time.monotonic()
                await ws.send_json({"type": "subscribe", "cursors": {self.members.group: 0}})
                subscribed = await _next_of_type(ws, "subscribed")
                self.note("subscribe", started, subscribed is not None, "no answer")
                await ws.close()
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                self.note("open a socket", started, False, repr(exc))
            await _pause(stop, RECONNECT_EVERY_S)

    async def watch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The watcher's socket: every message event's delivery time."""
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            at = time.monotonic()
            data = json.loads(frame.data)
            events = data["events"] if data.get("type") == "batch" else [data]
            for event in events:
                if event.get("type") == "event" and event.get("kind") == "message":
                    self.received[int(event["seq"])] = at
            if not self.sent_at.keys() - self.received:
                self.caught_up.set()

    def delivery(self) -> list[float]:
        """Seconds from each message's send to its arrival on the watcher's socket
        (often before the sender had its answer)."""
        return [at - self.sent_at[seq] for seq, at in self.received.items() if seq in self.sent_at]

    async def open_watcher(self) -> aiohttp.ClientWebSocketResponse:
        me = self.members.watcher
        ws = await me.http.ws_connect(
            self.url + "/v1/ws", headers={"Authorization": f"Bearer {me.token}"}
        )
        assert (await ws.receive_json(timeout=CLIENT_TIMEOUT_S))["type"] == "ready"
        await ws.send_json({"type": "subscribe", "cursors": {self.members.group: 10**9}})
        assert await _next_of_type(ws, "subscribed") is not None
        return ws


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _next_of_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any] | None:
    async with asyncio.timeout(CLIENT_TIMEOUT_S):
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                return None
            data = json.loads(frame.data)
            if data.get("type") == kind:
                return dict(data)
    return None


# --- The flood: run in load processes of its own --------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a load process needs: where, the cell, this flood's number and its members' tokens."""

    url: str
    group: str
    round: int
    tokens: list[str]
    member_ids: list[str]

    def source(self, i: int, sources: int) -> str:
        """The address the ``i``-th request or socket claims."""
        if random.Random(i).random() < 0.25:  # not i % 4: that would tie a kind to a source
            return HOT_SOURCE.format(7 + self.round)
        k = i % min(sources, 65536)
        return SPREAD_SOURCE.format(self.round, k // 256, k % 256)


def _random_id(size: int) -> str:
    return b32e(os.urandom(size))


_JSON = {"Content-Type": "application/json"}


def junk_request(i: int, target: Target) -> tuple[str, str, str, dict[str, str], bytes | None]:
    """The ``i``-th request of the flood: (kind, method, path, headers, body)."""
    kinds: list[Callable[[], tuple[str, str, str, dict[str, str], bytes | None]]] = [
        lambda: ("bad json", "POST", "/v1/auth/challenge", _JSON, b'{"member_id": '),
        lambda: ("deep json", "POST", "/v1/auth/challenge", _JSON, b"[" * 100_000),
        lambda: ("unknown route", "GET", f"/v1/{_random_id(5)}/x", {}, None),
        lambda: ("wrong method", "DELETE", "/v1/groups", {}, None),
        lambda: ("bad token", "GET", "/v1/groups", _bearer(_random_id(32)), None),
        lambda: ("bad header", "GET", "/v1/me", {"Authorization": "Basic eDp5"}, None),
        lambda: (
            "challenge",
            "POST",
            "/v1/auth/challenge",
            _JSON,
            json.dumps({"member_id": random.choice([*target.member_ids, _random_id(32)])}).encode(),
        ),
        lambda: (
            "bad login",
            "POST",
            "/v1/auth/session",
            _JSON,
            json.dumps(
                {
                    "member_id": _random_id(32),
                    "challenge": b64e(os.urandom(32)),
                    "signature": b64e(os.urandom(64)),
                }
            ).encode(),
        ),
        lambda: ("invite guess", "GET", f"/v1/invites/{_random_id(16)}", {}, None),
        lambda: (
            "redeem guess",
            "POST",
            f"/v1/invites/{_random_id(16)}/redeem",
            _JSON,
            json.dumps({"join": {}, "key_bundle": {}, "proof": b64e(os.urandom(64))}).encode(),
        ),
        lambda: (
            "wrong media type",
            "POST",
            f"/v1/groups/{target.group}/messages",
            {"Content-Type": "text/plain", **_bearer(target.tokens[0])},
            b"hello",
        ),
        lambda: (
            "bad query",
            "GET",
            f"/v1/groups/{target.group}/events?since=-1&limit=99999999999",
            _bearer(target.tokens[i % len(target.tokens)]),
            None,
        ),
        lambda: ("not a socket", "GET", "/v1/ws", {}, None),
        lambda: ("health", "GET", "/healthz", {}, None),
        lambda: ("long header", "GET", "/v1/me", {"X-Junk": "j" * 9_000}, None),
        lambda: (
            "bad message",
            "POST",
            f"/v1/groups/{target.group}/messages",
            {**_JSON, **_bearer(target.tokens[i % len(target.tokens)])},
            json.dumps({"header": "!!", "ciphertext": "", "signature": 7}).encode(),
        ),
    ]
    if i % 64 == 63:  # an oversized body now and then: 400 KiB a time is costly to send
        return ("oversized", "POST", "/v1/networks", _JSON, b'{"x":"' + b"a" * OVERSIZED_BYTES)
    return kinds[i % len(kinds)]()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def send_junk(target: Target, count: int, tasks: int, sources: int) -> dict[str, Any]:
    """``count`` junk requests from ``tasks`` concurrent senders; every answer's status."""
    answers: Counter[str] = Counter()
    numbers = iter(range(count))
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as http:

        async def sender() -> None:
            for i in numbers:
                kind, method, path, headers, body = junk_request(i, target)
                headers = {**headers, "X-Forwarded-For": target.source(i, sources)}
                try:
                    async with http.request(
                        method, target.url + path, headers=headers, data=body
                    ) as response:
                        await response.read()
                        answers[f"{kind} {response.status}"] += 1
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    # The server may close a connection on a refused body before
                    # it was all sent; only that is a dropped answer, not an error.
                    answers[f"{kind} {type(exc).__name__}"] += 1

        await asyncio.gather(*(sender() for _ in range(tasks)))
    return {"answers": answers}


SOCKET_KINDS = ("silent", "bad auth", "bad bearer", "member", "junk frames")


async def open_sockets(
    target: Target, count: int, tasks: int, sources: int, pipe: Connection
) -> None:
    """``count`` socket connects of every kind. Those that stay open are held; once all
    are made the pipe hears "opened", and the held sockets close when it answers."""
    outcomes: Counter[str] = Counter()
    held: list[aiohttp.ClientWebSocketResponse] = []
    peak = 0
    numbers = iter(range(count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def opener() -> None:
            nonlocal peak
            for i in numbers:
                kind = SOCKET_KINDS[i % len(SOCKET_KINDS)]
                # The hot source opens a quarter, the rest come from spread addresses.
                headers = {"X-Forwarded-For": target.source(i, sources)}
                if kind in ("member", "junk frames"):
                    # Not i % tokens: every kind would come with one member's token.
                    headers.update(
                        _bearer(target.tokens[i // len(SOCKET_KINDS) % len(target.tokens)])
                    )
                elif kind == "bad bearer":
                    headers.update(_bearer(_random_id(32)))
                try:
                    async with asyncio.timeout(CLIENT_TIMEOUT_S):
                        ws = await http.ws_connect(
                            target.url + "/v1/ws", headers=headers, heartbeat=None
                        )
                        outcome, keep = await _socket_work(kind, ws, target)
                except aiohttp.WSServerHandshakeError as exc:
                    outcome, keep = str(exc.status), False
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                    outcome, keep = type(exc).__name__, False
                outcomes[f"{kind} {outcome}"] += 1
                if keep:
                    held.append(ws)
                    peak = max(peak, sum(1 for w in held if not w.closed))

        await asyncio.gather(*(opener() for _ in range(tasks)))
        pipe.send("opened")
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        for ws in held:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
    pipe.send({"sockets": outcomes, "held_peak": peak})


async def _socket_work(
    kind: str, ws: aiohttp.ClientWebSocketResponse, target: Target
) -> tuple[str, bool]:
    """What a socket of ``kind`` does once upgraded; (its outcome, whether to hold it)."""
    if kind == "silent":  # the server gives it AUTH_TIMEOUT_S to log in, then closes it
        return "open", True
    if kind == "bad auth":
        await ws.send_json({"type": "auth", "token": _random_id(32)})
        await _until_closed(ws)
        return f"closed {ws.close_code}", False
    first = await ws.receive()
    if first.type != aiohttp.WSMsgType.TEXT or json.loads(first.data).get("type") != "ready":
        return f"not ready {first.type.name}", False
    await ws.send_json({"type": "subscribe", "cursors": {target.group: 10**9}})
    if kind == "member":
        return "ready", True
    # Junk frames: bad JSON, deep JSON, a burst without reading, then one too large.
    await ws.send_str("{not json")
    await ws.send_str("[" * 50_000)
    await ws.send_str(json.dumps({"type": "nonsense"}))
    burst = json.dumps({"type": "unsubscribe", "groups": []})
    for _ in range(JUNK_BURST):
        await ws.send_str(burst)
    await ws.send_str("x" * OVERSIZED_BYTES)
    await _until_closed(ws)
    return f"closed {ws.close_code}", False


async def _until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


def load_main(role: str, target: Target, plan: FloodPlan, count: int, pipe: Connection) -> None:
    """A load process: junk requests (``role`` "requests") or sockets ("sockets")."""
    if role == "requests":
        pipe.send(asyncio.run(send_junk(target, count, plan.request_tasks, plan.sources)))
    else:
        asyncio.run(open_sockets(target, count, plan.socket_tasks, plan.sources, pipe))


# --- Running a flood and sampling the server's memory -------------------------------------


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (the server's signature helper)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit() and _parent(entry) == pid:
                found.append(int(entry.name))
    return found


def _parent(entry: Path) -> int:
    return int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """The server process's RSS every SAMPLE_EVERY_S, tagged with the phase."""

    def __init__(self, pid: int) -> None:
        self.pid, self.phase = pid, "setup"
        self.samples: list[tuple[float, str, int]] = []
        self._began = time.monotonic()

    def now_kib(self) -> int:
        return rss_kib(self.pid)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.samples.append((time.monotonic() - self._began, self.phase, self.now_kib()))
            await _pause(stop, SAMPLE_EVERY_S)

    def peak(self, phase: str) -> int:
        return max((kib for _, p, kib in self.samples if p == phase), default=0)


async def flood(target: Target, plan: FloodPlan, requests: int, sockets: int) -> dict[str, Any]:
    """One flood from two load processes (junk requests, sockets); what they saw.

    The flood ends once every request is answered and every socket connect
    made, and the sockets still open are closed.
    """
    context = mp.get_context("spawn")
    loop = asyncio.get_running_loop()
    ends, processes = [], []
    try:
        for role, count in (("requests", requests), ("sockets", sockets)):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=load_main, args=(role, target, plan, count, theirs), daemon=True
            )
            process.start()
            theirs.close()  # a load process that dies ends the pipe: recv raises, no hang
            ends.append(ours)
            processes.append(process)
        junk, held = ends
        result: dict[str, Any] = await loop.run_in_executor(None, junk.recv)
        assert await loop.run_in_executor(None, held.recv) == "opened"
        held.send("close")
        result.update(await loop.run_in_executor(None, held.recv))
        return result
    finally:
        for process in processes:  # done by now, unless the flood failed
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)


async def measure(url: str, pid: int, plan: FloodPlan) -> Figures:
    """Build the cell; flood once to warm up (the server's pools, caches and allocator
    reach their working size) and settle; flood again, the same, while the members
    work; then wait (at most ``plan.recovery_s``) for the server's RSS to come back
    near the level it settled at after the warm-up: within RECOVERY_KIB or
    RECOVERY_RATIO of it. The members' figures are the second flood's."""
    sessions = [source_session(n) for n in range(1, 6)]
    sampler = Sampler(pid)
    done_sampling = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(done_sampling))
    figures = Figures()
    try:
        members = await build_cell(url, sessions)
        everyone = [
            members.sender,
            members.reader,
            members.watcher,
            *(m for each in members.flooders for m in each),
        ]
        targets = [
            Target(
                url,
                members.group,
                number,
                [m.token or "" for m in flooders],
                [m.id_text for m in everyone],
            )
            for number, flooders in enumerate(members.flooders)
        ]
        sampler.phase = "warm-up"
        figures.cold_kib = sampler.now_kib()
        await with_members(url, members, flood(targets[0], plan, plan.requests, plan.sockets))
        await asyncio.sleep(SETTLE_S)
        figures.baseline_kib = sampler.now_kib()
        sampler.phase = "flood"
        started, cpu = time.monotonic(), cpu_seconds(pid)
        legit, result = await with_members(
            url, members, flood(targets[1], plan, plan.requests, plan.sockets)
        )
        figures.flood_s = time.monotonic() - started
        figures.server_cpu_s = cpu_seconds(pid) - cpu
        sampler.phase = "after"
        figures.answers, figures.sockets = result["answers"], result["sockets"]
        figures.held_peak = result["held_peak"]
        figures.legit, figures.legit_failures = legit.times, legit.failures
        figures.delivery = legit.delivery()
        figures.undelivered = len(legit.sent_at.keys() - legit.received)
        figures.peak_kib = max(sampler.peak("warm-up"), sampler.peak("flood"))
        figures.helper_kib = sum(rss_kib(child) for child in children(pid))
        ended = time.monotonic()
        while time.monotonic() - ended < plan.recovery_s:
            figures.after_kib = sampler.now_kib()
            if near(figures.baseline_kib, figures.after_kib, RECOVERY_KIB, RECOVERY_RATIO):
                figures.recovered_s = time.monotonic() - ended
                break
            await asyncio.sleep(0.25)
        return figures
    finally:
        done_sampling.set()
        await sampling
        figures.rss = sampler.samples
        for session in sessions:
            await session.close()


async def with_members(url: str, members: Members, work: Awaitable[T]) -> tuple[Legit, T]:
    """``work`` (a flood) while the three members work beside it; their record, and its result."""
    legit = Legit(url, members)
    watcher = await legit.open_watcher()
    watching = asyncio.create_task(legit.watch(watcher))
    stop = asyncio.Event()
    working = [
        asyncio.create_task(job(stop))
        for job in (legit.send_forever, legit.read_forever, legit.reconnect_forever)
    ]
    try:
        result = await work
    finally:
        stop.set()
        await asyncio.gather(*working)
        # The last messages sent: give them a moment to arrive.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(legit.caught_up.wait(), DELIVERY_WAIT_S)
        await watcher.close()
        await watching
    return legit, result


# --- The command -----------------------------------------------------------------------------


def report(figures: Figures, plan: FloodPlan) -> list[str]:
    """The figures as the README shows them."""
    mib = 1024
    statuses: Counter[str] = Counter()
    for key, n in figures.answers.items():
        statuses[key.rsplit(" ", 1)[-1]] += n
    lines = [
        f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}",
        f"flood: {plan.requests:,} requests and {plan.sockets:,} socket connects in "
        f"{figures.flood_s:.1f} s (the server busy {figures.server_cpu_s:.1f} s of CPU); "
        f"at most {figures.held_peak:,} flood sockets open at once",
        "answers: " + ", ".join(f"{k} x{n}" for k, n in sorted(statuses.items())),
        "sockets: " + ", ".join(f"{k} x{n}" for k, n in sorted(figures.sockets.items())),
        f"5xx (other than 503): {sum(figures.server_errors().values())}",
        "",
        "| members' requests | count | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    rows = {**figures.legit, "message delivered live": figures.delivery}
    for what, times in rows.items():
        ms = [t * 1000 for t in times]
        lines.append(
            f"| {what} | {len(ms)} | {percentile(ms, 50):.0f} | {percentile(ms, 99):.0f} "
            f"| {max(ms, default=float('nan')):.0f} |"
        )
    recovered = (
        f"{figures.recovered_s:.1f} s after the flood"
        if figures.recovered_s is not None
        else f"not within {plan.recovery_s:.0f} s"
    )
    lines += [
        f"members' failures: {len(figures.legit_failures)}; undelivered: {figures.undelivered}",
        "",
        f"server RSS: {figures.cold_kib / mib:.0f} MiB before any flood, "
        f"{figures.baseline_kib / mib:.0f} MiB after the warm-up, "
        f"{figures.peak_kib / mib:.0f} MiB at the peak of either flood, "
        f"{figures.after_kib / mib:.0f} MiB after; back near the warm-up level: {recovered}; "
        f"its signature helper {figures.helper_kib / mib:.0f} MiB",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="junk requests")
    parser.add_argument("--sockets", type=int, default=2_000, help="socket connects")
    parser.add_argument("-v", "--verbose", action="store_true", help="answers by kind")
    parser.add_argument("--rss-log", type=Path, help="write every RSS sample here (JSON)")
    args = parser.parse_args()
    plan = FloodPlan(requests=args.requests, sockets=args.sockets)
    # Behind a proxy, as deploy/ runs it: each flood request may claim its own address.
    proxied = {"SPOKES_TRUST_FORWARDED_FOR": "1"}
    with running_server(lift_limits=False, env=proxied) as server:
        figures = asyncio.run(measure(server.url, server.process.pid, plan))
    print("\n".join(report(figures, plan)))
    if args.verbose:
        for key, n in sorted({**figures.answers, **figures.sockets}.items()):
            print(f"  {key}: {n}")
    for failure in figures.legit_failures[:10]:
        print("  failed:", failure)
    if args.rss_log is not None:
        args.rss_log.write_text(json.dumps(asdict(figures)["rss"]))


if __name__ == "__main__":
    main()
