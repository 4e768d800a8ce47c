"""Message throughput, delivery latency and memory of one Spokes server.

    .venv/bin/python bench/messages.py [--members 200|1000] [--rate N] [--duration S]

Starts ``spokes-server serve --port 0`` on its own embedded PostgreSQL in a
temporary folder, builds a network through the real API with crypto/ (cells
of 10, grown by invites and cut by split motions), gives every member a live
WebSocket, seals and signs every message before the clock starts, then drives
the senders at a fixed offered load and then flat out, and prints what the
server accepted, how long delivery to the whole cell took, and what the
server and its PostgreSQL weigh. Loopback only; every phase is bounded by
count and time, and the command stops the server when it is done.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.actors import Actor, Reply  # noqa: E402
from crypto import epochs, motions, roster  # noqa: E402
from crypto.chains import make_verdict  # noqa: E402
from crypto.encoding import b32e, b64d, b64e  # noqa: E402
from crypto.epochs import EpochKeys  # noqa: E402
from crypto.messages import Header, seal_message  # noqa: E402
from crypto.network import KeyBundle, Policy  # noqa: E402
from crypto.roster import RosterState  # noqa: E402
from crypto.statements import from_wire  # noqa: E402
from server.http.events import MAX_SOCKETS_PER_MEMBER  # noqa: E402

CELL = 10
# Cells grow to twice their size, then split; the policy must let them.
POLICY = Policy(
    cell_min=2,
    cell_max=2 * CELL,
    vouches=1,
    probation_seconds=0,
    vetting_seconds=0,
    invite_quota=100,
)
UNLIMITED = "1000000/3600"
FLAT_IN_FLIGHT = 200  # messages in flight in all when flat out, unless --window says
DRAIN_S = 15.0  # how long to wait for the last deliveries after a phase
SETUP_CONCURRENCY = 8  # cells grown at once


# --- The server under test -----------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    data_dir: Path

    def server_pids(self) -> list[int]:
        """The server's process and every process it spawned (workers, helpers)."""
        pids = [self.process.pid]
        for pid in pids:  # grows as it goes: children, then theirs
            pids += [p for p in _all_pids() if _ppid(p) == pid and "spawn_main" in _cmdline(p)]
        return pids

    def server_rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.server_pids())

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user + system) spent so far by the server's processes, and by PostgreSQL's."""
        return (
            sum(cpu_seconds(pid) for pid in self.server_pids()),
            sum(cpu_seconds(pid) for pid in self.postgres_pids()),
        )

    def postgres_pids(self) -> list[int]:
        """The embedded cluster's postmaster and every backend it forked."""
        pidfile = self.data_dir / "pg" / "postmaster.pid"
        master = int(pidfile.read_text().split()[0])
        children = [pid for pid in _all_pids() if _ppid(pid) == master]
        return [master, *children]


@contextmanager
def running_server(
    workers: int = 1,
    keep: Path | None = None,
    *,
    lift_limits: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """`spokes-server serve` on its own embedded PostgreSQL, in a temporary folder, or in
    `keep` (made if missing, left in place after) to serve the same database again.

    Every member comes from 127.0.0.1, so the per-address limits are lifted unless
    `lift_limits` is false; `env` adds to the server's environment."""
    folder = Path(tempfile.mkdtemp(prefix="spokes-bench-")) if keep is None else keep
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # run as root, pgserver's postgres user must reach the folder
    env = {**os.environ, **(env or {})}
    if lift_limits:
        for name in (
            "REDEEM_PER_SOURCE",
            "INVITE_FETCH_PER_SOURCE",
            "LOGIN_PER_SOURCE",
            "SOCKET_PER_SOURCE",
        ):
            env[f"SPOKES_RATE_{name}"] = UNLIMITED
        env["SPOKES_RATE_LOGIN_PER_MEMBER"] = UNLIMITED
        env["SPOKES_RATE_SOCKET_PER_MEMBER"] = UNLIMITED  # idle sockets: many per member
    command = [str(Path(sys.executable).parent / "spokes-server"), "serve", "--port", "0"]
    command += ["--workers", str(workers)]
    process = subprocess.Popen(  # noqa: S603
        [*command, "--data-dir", str(folder / "data")],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"spokes-server did not start: {line!r}")
        yield Server(line.split()[-1], process, folder / "data")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system time of a live process (a backend that ended is not counted)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    cores = len(os.sched_getaffinity(0))
    return f"{cores} cores, {model}, {int(mem) // 1024} MiB RAM, Linux {platform.release()}"


# --- Building the network through the API ---------------------------------------------


@dataclass
class Cell:
    state: RosterState
    members: list[Actor]
    bundles: dict[bytes, KeyBundle] = field(default_factory=dict)
    keys: dict[bytes, EpochKeys] = field(default_factory=dict)  # member -> their epoch keys

    @property
    def group(self) -> bytes:
        return self.state.group


def ok(reply: Reply, expected: int = 201) -> dict[str, Any]:
    if reply.status != expected:
        raise SystemExit(f"setup failed: {reply.status} {reply.body}")
    return reply.body


async def post_event(cell: Cell, author: Actor, op: str, fields: Any, **extra: Any) -> None:
    event = roster.sign_event(author.key, author.network, cell.state, op, author.now(), fields)
    path = f"/v1/groups/{b32e(cell.group)}/roster"
    ok(await author.call("POST", path, {"event": event.to_wire(), **extra}))
    cell.state = roster.apply(cell.state, event, rules=rules_of(author))


def rules_of(actor: Actor) -> roster.GroupRules:
    assert actor.genesis is not None
    return roster.GroupRules.of(actor.genesis)


async def grow(cell: Cell, http: aiohttp.ClientSession, url: str, count: int) -> list[Actor]:
    """Invite, admit, vouch for and add ``count`` newcomers to the cell's roster."""
    inviter = cell.members[0]
    voucher = cell.members[1] if len(cell.members) > 1 else None
    added = []
    for _ in range(count):
        newcomer = Actor(http, url)
        code, reply = await inviter.invite()
        ok(reply)
        ok(await newcomer.join(code, inviter))
        ok(await inviter.admit(newcomer, code))
        admission = await inviter.admission_of(newcomer)
        vouches = []
        if voucher is not None and await newcomer.status() == "pending":
            # An outsider to the inviter's subtree vouches, and the add carries it.
            vouch = make_verdict("vouch", voucher.key, voucher.network, admission, voucher.now())
            ok(await voucher.call("POST", "/v1/vouches", {"vouch": vouch.statement.to_wire()}))
            vouches.append(vouch.statement)
        bundle = newcomer.bundle()
        cell.bundles[newcomer.id] = bundle
        # The policy asks for one vouch: the inviter's certificate is it (and
        # the outsider's, where branch diversity asks for one).
        fields = roster.add_fields(bundle, admission, vouches)
        await post_event(cell, inviter, "add", fields)
        cell.members.append(newcomer)
        added.append(newcomer)
    return added


async def split(cell: Cell, moved: list[Actor]) -> Cell:
    """Move ``moved`` to a new cell by a split motion every one of them signs."""
    opener = cell.members[0]
    network = opener.network
    motion = motions.make_split_motion(
        opener.key, network, cell.state, [m.id for m in moved], opener.now()
    )
    path = f"/v1/groups/{b32e(cell.group)}/motions"
    motion_id = ok(await opener.call("POST", path, {"motion": motion.statement.to_wire()}))[
        "motion_id"
    ]
    signatures = []
    for member in moved:
        signature = motions.sign_motion(member.key, network, motion, member.now())
        wire = {"signature": signature.to_wire()}
        ok(await member.call("POST", f"/v1/motions/{motion_id}/signatures", wire))
        signatures.append(signature)
    _, new_group = motions.split_terms(motion)
    carrier = moved[0]
    event = roster.sign_event(
        carrier.key,
        network,
        cell.state,
        "split",
        carrier.now(),
        motions.split_event_fields(motion, signatures),
    )
    creation = roster.make_group(
        carrier.key,
        network,
        carrier.now(),
        [cell.bundles[m.id] for m in moved],
        origin=event.id,
        lines=cell.state.lines,
        group=new_group,
        rules=rules_of(carrier),
    )
    body = {"event": event.to_wire(), "create": creation.statement.to_wire()}
    ok(await carrier.call("POST", f"/v1/groups/{b32e(cell.group)}/roster", body))
    cell.state = roster.apply(cell.state, event, rules=rules_of(carrier))
    cell.members = [m for m in cell.members if m not in moved]
    for member in moved:
        member.cell = new_group  # their invites now bring newcomers to the new cell
    bundles = {m.id: cell.bundles[m.id] for m in moved}
    return Cell(creation.state, list(moved), bundles)


async def commit_epoch(cell: Cell) -> None:
    """One member seals a fresh epoch to the cell; every member opens their own box."""
    author = cell.members[0]
    state = cell.state
    secret = epochs.new_epoch_secret()
    epoch = state.epoch + 1
    commit = epochs.commit_next_epoch(secret, state)
    boxes = {b32e(m): b64e(box) for m, box in commit.boxes.items()}
    await post_event(cell, author, "epoch", commit.fields, secrets=boxes)
    for member in cell.members:
        path = f"/v1/groups/{b32e(cell.group)}/epochs/{epoch}/secret"
        sealed = b64d(ok(await member.call("GET", path), 200)["sealed"])
        assert cell.state.commitment is not None
        opened = epochs.open_secret(
            member.kem,
            sealed,
            state.group,
            epoch,
            state.roster_hash,
            member.id,
            cell.state.commitment,
        )
        cell.keys[member.id] = epochs.derive_epoch_keys(opened, state.group, epoch, state.members)


async def found_cell(http: aiohttp.ClientSession, url: str) -> Cell:
    """Found a network under POLICY: its first cell, with the founder logged in."""
    founder = Actor(http, url)
    ok(await founder.found(POLICY))
    assert founder.cell is not None
    reply = await founder.call("GET", f"/v1/groups/{b32e(founder.cell)}/roster")
    first = roster.verify_log(
        [from_wire(w, "roster", founder.network) for w in ok(reply, 200)["events"]],
        rules=rules_of(founder),
    )
    return Cell(first, [founder], {founder.id: founder.bundle()})


async def build_network(http: aiohttp.ClientSession, url: str, members: int) -> list[Cell]:
    """Found a network, then grow every cell to 2 x CELL and split it, until ``members``."""
    cells = [await found_cell(http, url)]
    await grow(cells[0], http, url, CELL - 1)
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def double(cell: Cell) -> Cell:
        async with gate:
            newcomers = await grow(cell, http, url, CELL)
            return await split(cell, newcomers)

    while len(cells) * CELL < members:
        wanted = min(len(cells), members // CELL - len(cells))
        cells += await asyncio.gather(*(double(c) for c in cells[:wanted]))
        print(f"  {len(cells) * CELL} members in {len(cells)} cells", file=sys.stderr)
    for cell in cells:
        await commit_epoch(cell)
    return cells


# --- Load workers (separate processes: the load generator must not be the bottleneck) ---


@dataclass
class EpochPlan:
    """The next epoch of a cell, committed ahead: its roster event's request body."""

    epoch: int
    body: str  # {"event": ..., "secrets": {member: box}}


@dataclass
class CellPlan:
    """A cell's rekeys: who commits them and the epochs after the current one, in order."""

    group: str
    author_token: str
    epoch: int  # the cell's current epoch when the load starts
    next_epochs: list[EpochPlan]
    current: int = 0  # index into a member's streams: epochs moved on since the start
    rekeying: asyncio.Future[None] | None = None
    rekeys: list[float] = field(default_factory=list)  # seconds each rekey took


@dataclass
class MemberPlan:
    token: str
    member: str
    group: str
    cursor: int
    offered: int  # messages to send in the fixed-rate phase
    flat: int  # ... at most, in the flat-out phase
    # Pre-sealed messages, serialised, per epoch from the cell's current one on:
    # streams[k] is sealed under the k-th epoch after the start.
    streams: list[list[str]]
    cell: int = 0  # index into the worker's cells
    used: list[int] = field(default_factory=list)  # messages taken from each stream
    socket: Any = None  # this member's WebSocket, once the worker opened it
    waiting: dict[str, asyncio.Future[str | int]] = field(default_factory=dict)


@dataclass
class WorkerPlan:
    url: str
    members: list[MemberPlan]
    cells: list[CellPlan]
    rate: float  # this worker's share of the offered load, messages/s
    duration: float
    send: str  # "ws": over each member's socket; "http": POST /v1/groups/{g}/messages
    window: int = 1  # messages each member keeps in flight when flat out


@dataclass
class Sent:
    group: str
    seq: int
    sender: str
    started: float


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    asyncio.run(_worker(plan, pipe))


async def _worker(plan: WorkerPlan, pipe: Connection) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        receipts: dict[tuple[str, int], list[tuple[str, float]]] = defaultdict(list)
        for m in plan.members:
            m.used = [0] * len(m.streams)
            m.socket = await _open_socket(http, plan.url, m)
        readers = [asyncio.create_task(_read(m, receipts)) for m in plan.members]
        pipe.send("ready")
        results: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        for phase in ("offered", "flat"):
            start_at = await loop.run_in_executor(None, pipe.recv)
            # The load generator's own collector must not pause what it times (the
            # plan's sealed messages and the receipts are many objects): collected
            # between phases instead.
            gc.collect()
            gc.disable()
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            for cell in plan.cells:
                cell.rekeys.clear()
            if phase == "offered":
                sent, refused, elapsed = await _offered(http, plan)
            else:
                sent, refused, elapsed = await _flat(http, plan)
            await _wait_for_delivery(sent, receipts, len(plan.members))
            results[phase] = _latencies(sent, receipts, refused, elapsed)
            results[phase]["rekeys"] = [t for cell in plan.cells for t in cell.rekeys]
            gc.enable()
            pipe.send(results[phase])
        await loop.run_in_executor(None, pipe.recv)  # done
        for task in readers:
            task.cancel()
        for m in plan.members:
            await m.socket.close()


async def _open_socket(
    http: aiohttp.ClientSession, url: str, member: MemberPlan
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(
        url + "/v1/ws",
        headers={"Authorization": f"Bearer {member.token}"},
        heartbeat=None,
        max_msg_size=0,
    )
    await ws.receive_json()  # ready
    await ws.send_json({"type": "subscribe", "cursors": {member.group: member.cursor}})
    reply = await ws.receive_json()
    assert reply["type"] == "subscribed", reply
    return ws


# The load generator reads only what it measures (which message reached whom,
# when), so it scans event frames instead of decoding them whole.
_MESSAGE_EVENT = re.compile(r'"group":"([a-z2-7]+)","seq":(\d+),"kind":"message"')


async def _read(
    member: MemberPlan, receipts: dict[tuple[str, int], list[tuple[str, float]]]
) -> None:
    async for message in member.socket:
        at = time.monotonic()
        text = message.data
        if text.startswith(('{"type":"sent"', '{"type":"error"')):
            frame = json.loads(text)
            waiting = member.waiting.pop(frame.get("ref"), None)
            if waiting is not None and not waiting.done():
                sent = frame["type"] == "sent"
                waiting.set_result(frame["cursor"] if sent else frame.get("code", "error"))
            continue
        for group, seq in _MESSAGE_EVENT.findall(text):
            receipts[(group, int(seq))].append((member.member, at))


# A send refused for these is sealed again under the cell's next epoch, as the
# client does (client/messages.py): the epoch was retired by the policy's
# message or age limit, or another member committed the next one first.
_NEXT_EPOCH = ("rekey_required", "stale_epoch")


# What _send gives when the member has no message sealed ahead left in the
# cell's current epoch (they are sealed with room to spare; see seal_all).
_USED_UP = "used_up"


async def _send(http: aiohttp.ClientSession, plan: WorkerPlan, member: MemberPlan) -> Sent | str:
    """Send the member's next message; on a retired epoch, rekey the cell and send again.

    The code of a refusal for any other reason, or _USED_UP.
    """
    cell = plan.cells[member.cell]
    answer: str | int = _USED_UP
    started = time.monotonic()  # a rekey on the way counts in the message's latency
    for _ in range(3):
        epoch = cell.current
        if epoch >= len(member.streams) or member.used[epoch] >= len(member.streams[epoch]):
            return _USED_UP
        body = member.streams[epoch][member.used[epoch]]
        member.used[epoch] += 1
        answer = await _post(http, plan, member, body)
        if isinstance(answer, int):
            return Sent(member.group, answer, member.member, started)
        if answer not in _NEXT_EPOCH:
            return answer
        await _rekey(http, plan, cell, epoch)
    return str(answer)


async def _rekey(http: aiohttp.ClientSession, plan: WorkerPlan, cell: CellPlan, seen: int) -> None:
    """Move the cell past epoch index ``seen``: one member commits the next epoch (its
    roster event with a box for every member), and every member fetches their box.

    The epoch was committed ahead with every message, so each member's keys are
    known here; fetching the boxes puts their load on the server as a real
    rekey does, opening them (client work) is left out.
    """
    if cell.current > seen:
        return
    if cell.rekeying is not None:
        await cell.rekeying
        return
    if seen >= len(cell.next_epochs):
        raise SystemExit(f"bench: cell {cell.group} needs more than {seen} epochs sealed ahead")
    cell.rekeying = asyncio.get_running_loop().create_future()
    began = time.monotonic()
    try:
        upcoming = cell.next_epochs[seen]
        headers = {"Authorization": f"Bearer {cell.author_token}"}
        headers["Content-Type"] = "application/json"
        path = f"{plan.url}/v1/groups/{cell.group}/roster"
        async with http.post(path, data=upcoming.body.encode(), headers=headers) as resp:
            if resp.status != 201:
                raise SystemExit(f"bench: epoch commit refused: {resp.status} {await resp.text()}")
        path = f"{plan.url}/v1/groups/{cell.group}/epochs/{upcoming.epoch}/secret"
        members = [m for m in plan.members if plan.cells[m.cell] is cell]
        await asyncio.gather(*(_fetch(http, path, m.token) for m in members))
        cell.current = seen + 1
        cell.rekeys.append(time.monotonic() - began)
    finally:
        cell.rekeying.set_result(None)
        cell.rekeying = None


async def _fetch(http: aiohttp.ClientSession, path: str, token: str) -> None:
    async with http.get(path, headers={"Authorization": f"Bearer {token}"}) as resp:
        if resp.status != 200:
            raise SystemExit(f"bench: epoch secret refused: {resp.status} {await resp.text()}")
        await resp.read()


async def _post(
    http: aiohttp.ClientSession, plan: WorkerPlan, member: MemberPlan, body: str
) -> str | int:
    """The cursor the server gave the message, or the code it refused it with."""
    if plan.send == "ws":
        ref = body[body.index('"ref":"') + 7 :].split('"', 1)[0]
        answer: asyncio.Future[str | int] = asyncio.get_running_loop().create_future()
        member.waiting[ref] = answer
        await member.socket.send_str(body)
        return await answer
    headers = {"Authorization": f"Bearer {member.token}", "Content-Type": "application/json"}
    path = f"{plan.url}/v1/groups/{member.group}/messages"
    async with http.post(path, data=body.encode(), headers=headers) as resp:
        reply = await resp.json()
        if resp.status != 201:
            return str(reply.get("error", {}).get("code", resp.status))
        return int(reply["cursor"])


async def _offered(
    http: aiohttp.ClientSession, plan: WorkerPlan
) -> tuple[list[Sent], Counter[str], float]:
    """Open loop: one send every 1/rate seconds, whatever the answers do."""
    queue = [
        m
        for turn in range(max(m.offered for m in plan.members))
        for m in plan.members
        if turn < m.offered
    ]
    count = min(len(queue), int(plan.rate * plan.duration))
    tasks = []
    begin = time.monotonic()
    for i in range(count):
        delay = begin + i / plan.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_send(http, plan, queue[i])))
    done = await asyncio.gather(*tasks)
    elapsed = time.monotonic() - begin
    sent = [s for s in done if isinstance(s, Sent)]
    return sent, Counter(s for s in done if isinstance(s, str)), elapsed


async def _flat(
    http: aiohttp.ClientSession, plan: WorkerPlan
) -> tuple[list[Sent], Counter[str], float]:
    """Closed loop: every member keeps ``plan.window`` messages in flight, each sending the
    next as soon as one is accepted."""
    sent: list[Sent] = []
    refused: Counter[str] = Counter()
    begin = time.monotonic()
    stop = begin + plan.duration
    left = {id(m): m.flat for m in plan.members}

    async def one(member: MemberPlan) -> None:
        while left[id(member)] > 0 and time.monotonic() < stop:
            left[id(member)] -= 1
            result = await _send(http, plan, member)
            if isinstance(result, Sent):
                sent.append(result)
            else:
                refused[result] += 1
                if result == _USED_UP:
                    return

    await asyncio.gather(*(one(m) for m in plan.members for _ in range(plan.window)))
    return sent, refused, time.monotonic() - begin


async def _wait_for_delivery(
    sent: list[Sent], receipts: dict[tuple[str, int], list[tuple[str, float]]], _members: int
) -> None:
    deadline = time.monotonic() + DRAIN_S
    while time.monotonic() < deadline:
        if all(len(receipts.get((s.group, s.seq), ())) >= CELL for s in sent):
            return
        await asyncio.sleep(0.1)


def _latencies(
    sent: list[Sent],
    receipts: dict[tuple[str, int], list[tuple[str, float]]],
    refused: Counter[str],
    elapsed: float,
) -> dict[str, Any]:
    """Per message: from the send call to its receipt by the last other member of the cell."""
    latencies = []
    undelivered = 0
    for s in sent:
        others = [at for who, at in receipts.get((s.group, s.seq), ()) if who != s.sender]
        if len(others) < CELL - 1:
            undelivered += 1
            continue
        latencies.append(max(others) - s.started)
    return {
        "accepted": len(sent),
        "refused": dict(refused),
        "elapsed": elapsed,
        "undelivered": undelivered,
        "latencies": latencies,
    }


# --- The run ----------------------------------------------------------------------------


def commit_ahead(cell: Cell, count: int) -> tuple[list[EpochKeys], list[EpochPlan]]:
    """The cell's current epoch keys and ``count`` epochs after it, each committed ahead by
    the cell's first member as a roster ``epoch`` event (with a box for every member) to
    be posted when the server retires the one before, as a member's client does."""
    author, state = cell.members[0], cell.state
    keys = [cell.keys[author.id]]
    upcoming = []
    for _ in range(count):
        secret = epochs.new_epoch_secret()
        commit = epochs.commit_next_epoch(secret, state)
        event = roster.sign_event(
            author.key, author.network, state, "epoch", author.now(), commit.fields
        )
        boxes = {b32e(m): b64e(box) for m, box in commit.boxes.items()}
        body = {"event": event.to_wire(), "secrets": boxes}
        upcoming.append(EpochPlan(state.epoch + 1, json.dumps(body, separators=(",", ":"))))
        keys.append(epochs.derive_epoch_keys(secret, state.group, state.epoch + 1, state.members))
        state = roster.apply(state, event, rules=rules_of(author))
    return keys, upcoming


def seal_all(cell: Cell, member: Actor, keys: EpochKeys, count: int, send: str) -> list[str]:
    """``count`` messages of one member in one epoch, sealed, signed and serialised."""
    chain = keys.chains[member.id]
    bodies = []
    for _ in range(count):
        counter, key = chain.next_for_sending()
        header = Header(cell.group, keys.epoch, member.id, counter)
        message = seal_message(member.key, header, key, {"text": f"bench {counter}"})
        parts = {
            "header": b64e(message.header),
            "ciphertext": b64e(message.ciphertext),
            "signature": b64e(message.signature),
        }
        if send == "ws":
            ref = f"{keys.epoch}.{counter}"
            parts = {"type": "send", "ref": ref, "group": b32e(cell.group), **parts}
        bodies.append(json.dumps(parts, separators=(",", ":")))
    return bodies


def plan_cell(cell: Cell, offered: int, flat: int, send: str) -> tuple[CellPlan, list[MemberPlan]]:
    """A cell's members' messages, sealed ahead under its current epoch and as many
    later ones as the phases can retire (at the policy's message limit), with room to
    spare: a member who sends more than their share of an epoch waits for the next."""
    limit = POLICY.epoch_messages
    total = CELL * (offered + flat)
    keys, upcoming = commit_ahead(cell, total // limit + 1)
    share = min(offered + flat, 2 * limit // CELL)
    members = [
        MemberPlan(
            member.token or "",
            member.id_text,
            b32e(cell.group),
            10**9,  # past the end: brought back to the newest event
            offered,
            flat,
            [seal_all(cell, member, epoch_keys, share, send) for epoch_keys in keys],
        )
        for member in cell.members
    ]
    author = cell.members[0].token or ""
    return CellPlan(b32e(cell.group), author, cell.state.epoch, upcoming), members


def idle_socket_room(cells: list[Cell]) -> int:
    """How many idle sockets the members may add to the one each already holds: the
    server allows MAX_SOCKETS_PER_MEMBER open at once per member."""
    return sum(len(c.members) for c in cells) * (MAX_SOCKETS_PER_MEMBER - 1)


async def open_idle_sockets(url: str, cells: list[Cell], count: int) -> list[Any]:
    """``count`` more sockets, each subscribed to its member's cell, that then say nothing."""
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    members = [(m, c) for c in cells for m in c.members]
    sockets = []
    for i in range(count):
        member, cell = members[i % len(members)]
        # Past the end: brought back to the newest event, nothing to replay.
        plan = MemberPlan(member.token or "", member.id_text, b32e(cell.group), 10**9, 0, 0, [])
        sockets.append(await _open_socket(http, url, plan))
    return [http, *sockets]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summarise(
    name: str, parts: list[dict[str, Any]], offered: float | None, cpu: list[float]
) -> list[str]:
    accepted = sum(p["accepted"] for p in parts)
    elapsed = max(p["elapsed"] for p in parts)
    latencies = [x * 1000 for p in parts for x in p["latencies"]]
    refusals: Counter[str] = Counter()
    for p in parts:
        refusals.update(p["refused"])
    used_up = refusals.pop(_USED_UP, 0)
    if refusals or used_up:
        print(
            f"  {name}: refused {dict(refusals)}; sealed ahead, used up: {used_up}", file=sys.stderr
        )
    rekeys = [x * 1000 for p in parts for x in p["rekeys"]]
    undelivered = sum(p["undelivered"] for p in parts)
    load = f"{offered:.0f}/s offered" if offered is not None else "flat out"
    rekey_ms = f"{len(rekeys)} ({percentile(rekeys, 50):.0f} ms)" if rekeys else "0"
    return [
        f"| {load} | {accepted / elapsed:,.0f} | "
        f"{percentile(latencies, 50):.1f} | {percentile(latencies, 95):.1f} | "
        f"{percentile(latencies, 99):.1f} | {accepted:,} | {refusals.total()} | {undelivered} "
        f"| {rekey_ms} | {1000 * cpu[0] / max(accepted, 1):.2f} "
        f"| {1000 * cpu[1] / max(accepted, 1):.2f} |"
    ]


async def setup(server: Server, members: int) -> tuple[list[Cell], float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        begin = time.monotonic()
        cells = await build_network(http, server.url, members)
        return cells, time.monotonic() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=200, help="members, in cells of 10")
    parser.add_argument("--rate", type=float, default=1000, help="offered load, messages/s")
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase")
    parser.add_argument("--workers", type=int, default=2, help="load-generating processes")
    parser.add_argument("--idle", type=int, default=1000, help="idle sockets for the memory test")
    parser.add_argument(
        "--send",
        choices=("ws", "http"),
        default="ws",
        help="send over each member's WebSocket (default) or by POST /v1/groups/{g}/messages",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help=f"messages each member keeps in flight when flat out "
        f"(default: enough for {FLAT_IN_FLIGHT} in all, at least 1)",
    )
    parser.add_argument(
        "--server-workers", type=int, default=1, help="spokes-server processes (serve --workers)"
    )
    args = parser.parse_args()
    if args.members < 2 * CELL or args.members % CELL:
        parser.error(f"--members must be a multiple of {CELL}, at least {2 * CELL}")

    with running_server(args.server_workers) as server:
        base_server = server.server_rss_kib()
        print(f"server at {server.url}; building {args.members} members...", file=sys.stderr)
        cells, setup_s = asyncio.run(setup(server, args.members))
        print(f"  built in {setup_s:.0f}s; sealing messages...", file=sys.stderr)

        per_member_offered = int(args.rate * args.duration / args.members) + 1
        per_member_flat = int(5000 * args.duration / args.members) + 1
        shares: list[tuple[list[CellPlan], list[MemberPlan]]] = [
            ([], []) for _ in range(args.workers)
        ]
        for index, cell in enumerate(cells):  # whole cells per worker
            cell_plans, member_plans = shares[index % args.workers]
            cell_plan, members = plan_cell(cell, per_member_offered, per_member_flat, args.send)
            for member in members:
                member.cell = len(cell_plans)
            cell_plans.append(cell_plan)
            member_plans += members
        # Flat out needs enough messages in flight to keep the server busy: with few
        # members, each keeps several (as a member's daemon relaying a burst does).
        window = args.window or -(-FLAT_IN_FLIGHT // args.members)
        context = mp.get_context("spawn")
        pipes = []
        processes = []
        for cell_plans, member_plans in shares:
            mine, theirs = context.Pipe()
            rate = args.rate / args.workers
            plan = WorkerPlan(
                server.url, member_plans, cell_plans, rate, args.duration, args.send, window
            )
            process = context.Process(target=worker_main, args=(plan, theirs), daemon=True)
            process.start()
            pipes.append(mine)
            processes.append(process)
        for pipe in pipes:
            assert pipe.recv() == "ready"
        time.sleep(1)
        with_sockets = server.server_rss_kib()
        # Idle sockets before any load, so that freed request memory can't hide them.
        held = asyncio.new_event_loop()
        idle_count = min(args.idle, idle_socket_room(cells))
        idle = held.run_until_complete(open_idle_sockets(server.url, cells, idle_count))
        time.sleep(2)
        with_idle = server.server_rss_kib()
        pg_with_idle = sum(rss_kib(p) for p in server.postgres_pids())
        for ws in idle[1:]:
            held.run_until_complete(ws.close())
        held.run_until_complete(idle[0].close())
        held.close()
        rows = []
        for phase, offered in (("offered", args.rate), ("flat", None)):
            print(f"  phase: {phase}", file=sys.stderr)
            start_at = time.monotonic() + 0.5
            cpu_before = server.cpu_seconds()
            for pipe in pipes:
                pipe.send(start_at)
            parts = [pipe.recv() for pipe in pipes]
            cpu = [b - a for a, b in zip(cpu_before, server.cpu_seconds(), strict=True)]
            rows += summarise(phase, parts, offered, cpu)
        after_load = server.server_rss_kib()
        pg_after_load = sum(rss_kib(p) for p in server.postgres_pids())
        for pipe in pipes:
            pipe.send("done")
        for process in processes:
            process.join(10)

    mib = 1024.0
    print()
    print(f"Spokes message benchmark, {time.strftime('%Y-%m-%d')}")
    print(f"machine: {machine()}")
    print(
        f"network: {args.members} members in {len(cells)} cells of {CELL}, one WebSocket each "
        f"({args.workers} load processes; flat out, {window} in flight per member); "
        f"setup took {setup_s:.0f}s"
    )
    print(
        f"server: {args.server_workers} process(es) (serve --workers); messages sent "
        + ("over each member's WebSocket" if args.send == "ws" else "by HTTP POST")
    )
    print()
    print(
        "| phase | accepted msg/s | p50 ms | p95 ms | p99 ms | accepted | refused | late "
        "| rekeys (p50) | server CPU ms/msg | PostgreSQL CPU ms/msg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print()
    print("| memory | MiB |")
    print("|---|---|")
    print(f"| server RSS at start (no members) | {base_server / mib:.1f} |")
    print(f"| server RSS, {args.members} sockets open | {with_sockets / mib:.1f} |")
    print(
        f"| server RSS per open socket (incl. setup state) | "
        f"{(with_sockets - base_server) / args.members:.0f} KiB |"
    )
    print(
        f"| PostgreSQL RSS with those sockets (postmaster + backends) | {pg_with_idle / mib:.1f} |"
    )
    print(f"| server RSS after the load | {after_load / mib:.1f} |")
    print(f"| PostgreSQL RSS after the load (postmaster + backends) | {pg_after_load / mib:.1f} |")
    if idle_count:
        print(
            f"| {idle_count} idle sockets, extra server RSS | {(with_idle - with_sockets) / mib:.1f} "
            f"({(with_idle - with_sockets) / idle_count:.1f} KiB each) |"
        )


if __name__ == "__main__":
    main()
