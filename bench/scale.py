"""Member-scoped reads on a network of 100,000 members and 1,000,000 messages.

    .venv/bin/python bench/scale.py [--members 100000] [--messages 1000000]
                                    [--concurrency 50] [--duration 10 | --requests N]
                                    [--server-workers 1] [--keep DIR] [--json]

Fills an embedded PostgreSQL (loopback only: a unix socket in a temporary
folder, or in --keep DIR to serve the same fill again) with a whole
network, bulk-loaded with COPY by bench/scale_fill.py. The network has
cells of 10, three levels of councils of 10 seats, and the messages spread
over every group. It also holds what the reads touch: roster logs, epochs,
profiles, motions, sessions, invites, admissions, vouches, newcomers being
vetted, blocks and revocations. Every statement is signed by the key it
names, and every id and size is what the client makes. Message ciphertexts
and signatures are random bytes of the real sizes. The roster logs never
went through a rule book. The bench measures the database's reads, not
verification. bench/scale_fill.py says exactly what is real.

Then `spokes-server serve` runs on that database, as bench/messages.py
starts it. The reads go over HTTP, each member with a real session token
(stored hashed, as server/store/sessions.py stores them). They are my
groups, my cell's events since a cursor, my cell's roster log, a cellmate's
evidence and my cell's pending list. Each read is timed alone, then with
--concurrency members at once, each a different member in its own cell. It
prints p50/p99/max and reads/s, the server's and PostgreSQL's CPU per read,
the EXPLAIN (ANALYZE, BUFFERS) of every query each read makes (run
in-process through the same service functions), the server's RSS and the
database's size per member and per message. Every phase is bounded by
--duration and --requests. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.messages import machine, percentile, rss_kib, running_server  # noqa: E402
from bench.scale_fill import Filled, Filler, Reader, Shape  # noqa: E402
from crypto.encoding import b32d  # noqa: E402
from server.migrate import migrate_url  # noqa: E402
from server.pg import ensure_database, start_embedded  # noqa: E402
from server.services import auth  # noqa: E402
from server.services import events as event_service  # noqa: E402
from server.services import evidence as evidence_service  # noqa: E402
from server.services import groups as group_service  # noqa: E402

READS = ("groups", "events", "roster", "evidence", "pending")
TARGET_P99_MS = 20.0
ALONE_SHARE = 0.3  # the alone phase runs this share of --duration and --requests
PACED_SHARE = 0.3  # the paced phase offers this share of the flat-out throughput
PHASE_CAP_S = 600.0  # no phase runs longer, whatever the options say
BIG_TABLE_ROWS = 10_000  # a sequential scan on a table this big is a missing index
FILLED = "filled.json"
CpuSample = dict[str, dict[int, float]]  # group of processes -> pid -> CPU seconds so far
CPU_GROUPS = ("server", "postgres", "bench")  # the server, PostgreSQL, the load generator


# --- The reads ---------------------------------------------------------------------------


def read_path(read: str, reader: Reader, rng: random.Random) -> str:
    """The request a member makes for `read` (the events read starts at a random cursor)."""
    if read == "groups":
        return "/v1/groups"
    if read == "events":
        return f"/v1/groups/{reader.cell}/events?since={rng.randrange(reader.cell_events)}"
    if read == "roster":
        return f"/v1/groups/{reader.cell}/roster"
    if read == "evidence":
        return f"/v1/members/{reader.cellmate}/evidence"
    return "/v1/admissions/pending"


def check(read: str, reader: Reader, path: str, body: dict[str, Any]) -> str | None:
    """What is wrong with a read's answer, if anything: it must hold the rows filled."""
    if read == "groups":
        found = len(body["groups"])
        return None if found == reader.groups else f"{found} groups, not {reader.groups}"
    if read == "events":
        since = int(path.rsplit("=", 1)[1])
        seqs = [e["seq"] for e in body["events"]]
        wanted = list(range(since + 1, min(reader.cell_events, since + 100) + 1))
        return None if seqs == wanted else f"events {seqs[:3]}… after {since}"
    if read == "roster":
        found = len(body["events"])
        return None if found == reader.roster_events else f"{found} roster events"
    if read == "evidence":
        return None if body["member_id"] == reader.cellmate else "another member's evidence"
    found_ids = tuple(p["member_id"] for p in body["pending"])
    return None if found_ids == reader.pending else f"pending {found_ids}"


async def verify_reads(url: str, readers: list[Reader], seed: int = 1) -> list[str]:
    """Each read once for each reader, every answer checked against the fill; the problems."""
    rng = random.Random(seed)
    problems = []
    async with aiohttp.ClientSession() as http:
        for reader in readers:
            headers = {"Authorization": f"Bearer {reader.token}"}
            for read in READS:
                path = read_path(read, reader, rng)
                async with http.get(url + path, headers=headers) as resp:
                    body = await resp.json()
                    status = resp.status
                problem = f"{status} {body}" if status != 200 else check(read, reader, path, body)
                if problem is not None:
                    problems.append(f"{read} as {reader.member[:8]}: {problem}")
    return problems


@dataclass
class Phase:
    """One read by `members` members at once: back to back (`rate` None), or paced so that
    together they offer `rate` reads a second."""

    read: str
    members: int
    rate: float | None = None
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process group -> CPU seconds used

    def summary(self) -> dict[str, Any]:
        ms = [x * 1000 for x in self.latencies]
        count = len(ms)
        return {
            "read": self.read,
            "members": self.members,
            "offered_per_s": None if self.rate is None else round(self.rate, 1),
            "reads": count,
            "errors": self.errors,
            "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms, default=float("nan")), 2),
            "reads_per_s": round(count / self.elapsed, 1) if self.elapsed else 0.0,
            "kib_per_read": round(self.bytes / max(1, count) / 1024, 1),
            "cpu_ms_per_read": {k: round(v * 1000 / max(1, count), 2) for k, v in self.cpu.items()},
        }


async def run_phase(
    url: str,
    readers: list[Reader],
    read: str,
    duration: float,
    requests: int,
    *,
    members: int,
    rate: float | None = None,
    cpu: Callable[[], CpuSample] = dict,
    seed: int = 2,
) -> Phase:
    """`members` members at once read `read` until `duration` seconds or `requests` reads.

    Who reads turns over `readers`: the k-th of the `members` tasks acts as
    readers k, k + members, k + 2 x members, ... in turn, so that at any moment
    `members` different members read and, over the phase, the reads touch as
    many members (and cells) as there are readers, not the same few rows.
    Without `rate`, each task reads back to back (closed loop: the server's
    capacity). With it, reads start on a schedule, `rate` a second in all,
    whatever earlier answers do (open loop).
    """
    phase = Phase(read, members, rate)
    rng = random.Random(seed)
    duration = min(duration, PHASE_CAP_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(reader: Reader) -> None:
            path = read_path(read, reader, rng)
            headers = {"Authorization": f"Bearer {reader.token}"}
            started = time.perf_counter()
            async with http.get(url + path, headers=headers) as resp:
                body = await resp.read()
            phase.latencies.append(time.perf_counter() - started)
            phase.bytes += len(body)
            phase.errors += resp.status != 200

        before, began = cpu(), time.monotonic()
        if rate is None:
            left = [requests]

            async def member(k: int) -> None:
                for turn in range(requests):
                    if left[0] <= 0 or time.monotonic() >= began + duration:
                        return
                    left[0] -= 1
                    await one(readers[(k + turn * members) % len(readers)])

            await asyncio.gather(*(member(k) for k in range(members)))
        else:
            started: list[asyncio.Task[None]] = []
            for i in range(min(requests, int(rate * duration))):
                await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
                started.append(asyncio.create_task(one(readers[i % len(readers)])))
            await asyncio.gather(*started)
        phase.elapsed = time.monotonic() - began
        after = cpu()
        phase.cpu = cpu_used(before, after)
    return phase


# --- EXPLAIN: every query a read makes, through the service functions themselves ---------


@dataclass(frozen=True)
class Plan:
    sql: str
    plan: str
    generic: str  # the plan the server may switch to once the statement is prepared and reused
    runs: int = 1  # how many times the read ran this query


WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


class ExplainingConnection:
    """A connection that EXPLAINs (ANALYZE, BUFFERS) each read before it runs it."""

    def __init__(self, conn: Any, plans: list[Plan]) -> None:
        self.conn, self.plans = conn, plans

    def transaction(self, **kwargs: Any) -> Any:
        return self.conn.transaction(**kwargs)

    async def _explain(self, sql: str, args: tuple[Any, ...]) -> None:
        if WRITES.search(sql) or sql.lstrip().upper().startswith("SELECT PG_NOTIFY"):
            return
        explain = "EXPLAIN (ANALYZE, BUFFERS) " + sql
        plan = "\n".join(r[0] for r in await self.conn.fetch(explain, *args))
        await self.conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            # A fresh statement text, so that asyncpg prepares it anew under that mode.
            generic_sql = explain + " -- generic"
            generic = "\n".join(r[0] for r in await self.conn.fetch(generic_sql, *args))
        finally:
            await self.conn.execute("RESET plan_cache_mode")
        self.plans.append(Plan(" ".join(sql.split()), plan, generic))

    async def _run(self, method: str, sql: str, args: tuple[Any, ...], kwargs: Any) -> Any:
        await self._explain(sql, args)
        return await getattr(self.conn, method)(sql, *args, **kwargs)

    async def fetch(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", sql, args, kwargs)

    async def fetchrow(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", sql, args, kwargs)

    async def fetchval(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", sql, args, kwargs)

    async def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("execute", sql, args, kwargs)


class ExplainingPool:
    """Stands in for the server's pool: every connection it lends EXPLAINs as it goes."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plans: list[Plan] = []

    @asynccontextmanager
    async def acquire(self, **_: Any) -> AsyncIterator[ExplainingConnection]:
        yield ExplainingConnection(self.conn, self.plans)


async def explain_reads(conn: Any, reader: Reader) -> dict[str, list[Plan]]:
    """Each read as the server makes it for `reader`, with every query's plan.

    The server's own service functions run here, in-process, on a pool that
    EXPLAINs each query with the very parameters it is given. Authentication
    comes first, as every request's does. Each distinct query is kept once,
    with the plan of its first run and how often the read ran it.
    """
    now = datetime.now(UTC)
    member, cell = b32d(reader.member), b32d(reader.cell)
    rng = random.Random(3)
    pool = ExplainingPool(conn)
    session = await auth.authenticate(pool, reader.token, now)
    plans: dict[str, list[Plan]] = {"authentication": pool.plans}
    calls: dict[str, Callable[[Any], Any]] = {
        "groups": lambda pool: event_service.my_groups(pool, member),
        "events": lambda pool: event_service.read_events(
            pool, member, cell, rng.randrange(reader.cell_events), 100
        ),
        "roster": lambda pool: group_service.roster(pool, session, cell),
        "evidence": lambda pool: evidence_service.member_evidence(
            pool, session, b32d(reader.cellmate), now
        ),
        "pending": lambda pool: evidence_service.pending(pool, session, now),
    }
    for read, call in calls.items():
        pool = ExplainingPool(conn)
        await call(pool)
        runs = Counter(plan.sql for plan in pool.plans)
        seen: dict[str, Plan] = {}
        for plan in pool.plans:
            seen.setdefault(plan.sql, replace(plan, runs=runs[plan.sql]))
        plans[read] = list(seen.values())
    return plans


SCAN = re.compile(r"(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan) (?:using \S+ )?on (\w+)")


def scans(plan: str) -> list[tuple[str, str]]:
    """(scan type, table) of every scan node in a plan's text."""
    return SCAN.findall(plan)


def sequential_scans(plans: dict[str, list[Plan]], rows: dict[str, int]) -> list[str]:
    """Every sequential scan on a big table, in any read's plan (custom or generic)."""
    found = []
    for read, items in plans.items():
        for plan in items:
            for text in (plan.plan, plan.generic):
                for kind, table in scans(text):
                    if kind == "Seq Scan" and rows.get(table, 0) >= BIG_TABLE_ROWS:
                        found.append(f"{read}: {table} ({plan.sql[:80]}…)")
    return sorted(set(found))


# --- Sizes --------------------------------------------------------------------------------


async def sizes(conn: Any) -> dict[str, Any]:
    """The database's size, each table's (with its indexes and TOAST), and rows."""
    database = await conn.fetchval("SELECT pg_database_size(current_database())")
    tables = await conn.fetch(
        """SELECT c.relname, pg_total_relation_size(c.oid) AS total,
                  pg_relation_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes,
                  c.reltuples::bigint AS rows
           FROM pg_class c WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
           ORDER BY total DESC"""
    )
    events = await conn.fetch(
        """SELECT kind, count(*) AS rows, sum(pg_column_size(e.*))::bigint AS bytes
           FROM group_events e GROUP BY kind"""
    )
    return {
        "database": int(database),
        "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
        "version": await conn.fetchval("SHOW server_version"),
        "tables": {r["relname"]: dict(r) for r in tables},
        "group_events": {r["kind"]: {"rows": r["rows"], "bytes": r["bytes"]} for r in events},
    }


def per_message_and_member(found: dict[str, Any], filled: Filled) -> dict[str, float]:
    """Bytes per message (its group_events row's share and its messages row), and what the
    fill added besides, per member."""
    shape = filled.shape
    events = found["tables"]["group_events"]
    kinds = found["group_events"]
    all_bytes = sum(k["bytes"] for k in kinds.values()) or 1
    all_rows = sum(k["rows"] for k in kinds.values()) or 1
    message = kinds.get("message", {"rows": 0, "bytes": 0})
    share = (events["total"] - events["indexes"]) * message["bytes"] / all_bytes
    share += events["indexes"] * message["rows"] / all_rows
    per_message = (share + found["tables"]["messages"]["total"]) / max(1, shape.messages)
    rest = found["database"] - filled.empty_database - per_message * shape.messages
    return {"per_message": per_message, "per_member": rest / max(1, shape.members)}


# --- Processes ----------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """`root` and every process below it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree = [root]
    for pid in tree:
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return found


def cpu_used(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """CPU seconds each group used between two samples. A process that started in between
    counts from zero; one that ended in between takes its share with it."""
    return {
        group: sum(t - before.get(group, {}).get(pid, 0.0) for pid, t in pids.items())
        for group, pids in after.items()
    }


# --- The run ------------------------------------------------------------------------------


async def fill(url: str, shape: Shape, say: Callable[[str], None]) -> Filled:
    """Fill the empty database at `url`; VACUUM ANALYZE, as autovacuum would in time."""
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT count(*) FROM members"):
            raise SystemExit("the database already holds members: use an empty --keep folder")
        empty = await conn.fetchval("SELECT pg_database_size(current_database())")
        started = time.monotonic()
        filled = await Filler(conn, shape, int(time.time()), say).fill()
        filled.seconds = time.monotonic() - started
        filled.empty_database = int(empty)
        say(f"  filled in {filled.seconds:.0f} s; VACUUM ANALYZE…")
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return filled


def prepared_database(folder: Path, shape: Shape, say: Callable[[str], None]) -> Filled:
    """The embedded PostgreSQL in `folder`, migrated and filled (once: a kept fill is reused)."""
    record = folder / FILLED
    embedded = start_embedded(folder / "server" / "data")
    try:
        url = embedded.url()
        asyncio.run(ensure_database(embedded.url("postgres")))
        asyncio.run(migrate_url(url))
        if record.exists():
            kept = json.loads(record.read_text())
            if kept["shape"] != asdict(shape):
                raise SystemExit(f"{folder} holds another fill: {kept['shape']}")
            say(f"using the fill kept in {folder}")
            readers = [Reader(**{**r, "pending": tuple(r["pending"])}) for r in kept["readers"]]
            return Filled(**{**kept, "shape": Shape(**kept["shape"]), "readers": readers})
        say(f"filling {shape.members:,} members and {shape.messages:,} messages…")
        filled = asyncio.run(fill(url, shape, say))
        record.write_text(json.dumps({**asdict(filled), "shape": asdict(shape)}))
        return filled
    finally:
        embedded.stop()


async def measure(
    url: str,
    db_url: str,
    filled: Filled,
    args: argparse.Namespace,
    cpu: Callable[[], CpuSample],
) -> dict[str, Any]:
    say = _say(args)
    # The readers are members of cells spread over the whole network, one per cell.
    readers = list(filled.readers)
    random.Random(filled.shape.seed).shuffle(readers)
    members = min(args.concurrency, len(readers))
    problems = await verify_reads(url, readers[:members])
    if problems:
        raise SystemExit("reads did not return the rows filled:\n  " + "\n  ".join(problems[:10]))
    say(f"{members} members read what was filled; timing reads by {len(readers)} members…")
    phases = []
    for read in READS:
        alone = await run_phase(
            url, readers, read, args.duration * ALONE_SHARE,
            max(1, int(args.requests * ALONE_SHARE)), members=1, cpu=cpu,
        )  # fmt: skip
        flat = await run_phase(
            url, readers, read, args.duration, args.requests, members=members, cpu=cpu
        )
        # Then at a third of what flat out reached: latency under load, not in a queue.
        rate = PACED_SHARE * len(flat.latencies) / max(flat.elapsed, 1e-9)
        paced = await run_phase(
            url, readers, read, args.duration, args.requests, members=members, rate=rate, cpu=cpu
        )
        summaries = [phase.summary() for phase in (alone, flat, paced)]
        phases += summaries
        say(
            f"  {read}: p99 {summaries[0]['p99_ms']} ms alone, {summaries[2]['p99_ms']} ms at "
            f"{rate:.0f}/s; {summaries[1]['reads_per_s']}/s flat out"
        )
    conn = await asyncpg.connect(db_url)
    try:
        plans = await explain_reads(conn, readers[0])
        found = await sizes(conn)
    finally:
        await conn.close()
    rows = {name: int(t["rows"]) for name, t in found["tables"].items()}
    return {"phases": phases, "plans": plans, "sizes": found, "rows": rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    say = _say(args)
    shape = Shape(members=args.members, messages=args.messages)
    temporary = args.keep is None
    folder = Path(tempfile.mkdtemp(prefix="spokes-scale-")) if temporary else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # run as root, pgserver's postgres user must reach the folder
    try:
        filled = prepared_database(folder, shape, say)
        with running_server(args.server_workers, keep=folder / "server") as server:
            # The bench's own handle on the same cluster, for EXPLAIN and sizes.
            embedded = start_embedded(folder / "server" / "data")
            try:
                tree = process_tree(server.process.pid)

                def cpu() -> CpuSample:
                    return {
                        "server": cpu_seconds(tree),
                        "postgres": cpu_seconds(server.postgres_pids()),
                        "bench": {0: time.process_time()},  # the load generator itself
                    }

                result = asyncio.run(measure(server.url, embedded.url(), filled, args, cpu))
                result["server_rss_kib"] = sum(rss_kib(p) for p in tree)
                result["postgres_rss_kib"] = sum(rss_kib(p) for p in server.postgres_pids())
            finally:
                embedded.stop()
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    result.update(
        shape=asdict(shape),
        fill_seconds=round(filled.seconds),
        counts=filled.counts,
        machine=machine(),
        load=os.getloadavg(),
        server_workers=args.server_workers,
        concurrency=args.concurrency,
    )
    result["bytes"] = per_message_and_member(result["sizes"], filled)
    return result


def report(result: dict[str, Any]) -> None:
    shape = Shape(**result["shape"])
    sizes = result["sizes"]
    print(f"Spokes scale benchmark, {time.strftime('%Y-%m-%d')}")
    print(f"machine: {result['machine']}; load average {result['load'][0]:.2f} (1 min) at the end")
    councils = " → ".join(f"{n:,}" for n in shape.councils())
    print(
        f"network: {shape.members:,} members in {shape.cells:,} cells of {shape.cell_size}, "
        f"councils of {shape.fanout}: {shape.cells:,} cells → {councils}; "
        f"{shape.messages:,} messages; filled in {result['fill_seconds']:,} s"
    )
    print(
        f"server: {result['server_workers']} process(es); PostgreSQL {sizes['version']}, "
        f"shared_buffers {sizes['shared_buffers']}"
    )
    print()
    report_phases(result["phases"])
    report_sizes(result)
    report_plans(result["plans"], result["rows"])


def report_phases(phases: list[dict[str, Any]]) -> None:
    print(
        "| read | members, load | p50 ms | p99 ms | max ms | reads/s | KiB/read "
        "| CPU ms/read: server, PostgreSQL, load generator | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for p in phases:
        cpu = ", ".join(f"{p['cpu_ms_per_read'].get(k, 0):.2f}" for k in CPU_GROUPS)
        target = "" if p["p99_ms"] < TARGET_P99_MS else " (over 20)"
        if p["members"] == 1:
            load = "1, alone"
        elif p["offered_per_s"] is None:
            load = f"{p['members']}, flat out"
        else:
            load = f"{p['members']}, {p['offered_per_s']:,.0f}/s offered"
        print(
            f"| {p['read']} | {load} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f}{target} "
            f"| {p['max_ms']:.1f} | {p['reads_per_s']:,.0f} | {p['kib_per_read']:.1f} "
            f"| {cpu} | {p['errors']} |"
        )
    print()


def report_sizes(result: dict[str, Any]) -> None:
    mib, sizes = 1024 * 1024, result["sizes"]
    server_mib, postgres_mib = result["server_rss_kib"] / 1024, result["postgres_rss_kib"] / 1024
    print(
        f"server RSS after the reads: {server_mib:.0f} MiB; "
        f"PostgreSQL (postmaster + backends): {postgres_mib:.0f} MiB"
    )
    per = result["bytes"]
    print(
        f"database: {sizes['database'] / mib:,.0f} MiB; "
        f"{per['per_member'] / 1024:.1f} KiB per member (all but the messages), "
        f"{per['per_message']:.0f} bytes per message"
    )
    print()
    print("| table | rows | total MiB | heap MiB | indexes MiB |")
    print("|---|---|---|---|---|")
    for name, t in sizes["tables"].items():
        print(
            f"| {name} | {t['rows']:,} | {t['total'] / mib:,.1f} | {t['heap'] / mib:,.1f} "
            f"| {t['indexes'] / mib:,.1f} |"
        )
    print()
    print("| group_events by kind | rows | MiB (row bytes) | bytes each |")
    print("|---|---|---|---|")
    for kind, k in sorted(sizes["group_events"].items(), key=lambda item: -item[1]["bytes"]):
        each = k["bytes"] / max(1, k["rows"])
        print(f"| {kind} | {k['rows']:,} | {k['bytes'] / mib:,.1f} | {each:,.0f} |")
    print()


def report_plans(plans_by_read: dict[str, list[Plan]], rows: dict[str, int]) -> None:
    for read, plans in plans_by_read.items():
        print(f"### {read}: {sum(p.runs for p in plans)} queries ({len(plans)} distinct)")
        for plan in plans:
            print(f"-- {plan.sql}" + (f" (run {plan.runs} times)" if plan.runs > 1 else ""))
            print(plan.plan)
            if scans(plan.generic) != scans(plan.plan):
                print("-- generic plan (once prepared and reused):")
                print(plan.generic)
            print()
    found = sequential_scans(plans_by_read, rows)
    print("sequential scans on big tables: " + ("; ".join(found) if found else "none"))


def _say(args: argparse.Namespace) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    return say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="members, in cells of 10")
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in all")
    parser.add_argument("--concurrency", type=int, default=50, help="members reading at once")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument(
        "--requests", type=int, default=10**9, help="reads per phase at most (default: no bound)"
    )
    parser.add_argument(
        "--server-workers", type=int, default=1, help="spokes-server processes (serve --workers)"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the filled database in DIR; run again to reuse it"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.members < 20 or args.members % 10:
        parser.error("--members must be a multiple of 10, at least 20")
    result = run(args)
    if args.json:
        plans = {k: [asdict(p) for p in v] for k, v in result["plans"].items()}
        print(json.dumps({**result, "plans": plans}, default=str))
    else:
        report(result)


if __name__ == "__main__":
    main()
