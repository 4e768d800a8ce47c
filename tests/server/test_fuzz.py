"""The HTTP API fuzzed from its own OpenAPI document (issue 12, hostile input).

schemathesis reads the document the server serves at ``/v1/openapi.json``
(server/http/routes.py ``openapi_document``) and sends the real server
(loopback, real PostgreSQL) what it makes of it: first the document's edge
cases (each bound and one past it, each field missing or of another type,
other methods, other content types), then random paths, queries, headers and
bodies, ones the document allows and ones it forbids. It does so as nobody,
as the founder of a network and as a newcomer not yet admitted, so the
handlers behind the login are reached; now and then a generated id is swapped
for a real one, so the rules behind "not found" are too. For every request:

- never a 5xx;
- the answer is one the document lists for that operation: its status, its
  content type, its body's schema and its headers (schemathesis's checks);
- a refused request (4xx) wrote nothing: the row count of every table in the
  public schema, read from the catalog so that a new table is covered without
  a change here, is the same after it as before.

The budget is fixed: the coverage phase's edge cases, then EXAMPLES random
cases per operation and identity, each operation's seeded from SEED, with no
example database and no shrinking, so CI sends the same ~2,700 requests every
run (20-30 s on 2 cores). The rate limits are lifted so that the handlers, not
the 429s, answer. ``GET /v1/ws`` is fuzzed as plain HTTP only (its refusals
before an upgrade): schemathesis speaks HTTP and cannot drive a WebSocket,
which tests/server/test_realtime.py and test_flood.py test.

schemathesis is used through its Python API (the OpenAPI loader, each
operation's strategies and coverage cases, its response checks), not its
pytest plugin, which pyproject.toml keeps from loading: see
``hypothesis_left_as_found``.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import aiohttp
import asyncpg
import hypothesis
import pytest
import requests
import schemathesis
import schemathesis.generation.hypothesis as schemathesis_hypothesis
from aiohttp import web
from hypothesis import core as hypothesis_core
from hypothesis import strategies as st
from hypothesis.internal import entropy as hypothesis_entropy
from hypothesis.internal.conjecture import engine as conjecture_engine
from hypothesis.strategies._internal import collections as strategies_collections
from hypothesis.strategies._internal import core as strategies_core
from schemathesis import Case, GenerationMode

from crypto.encoding import b32e
from server.app import create_app
from server.http.routes import openapi_document
from server.settings import RateLimit, Settings
from server.store.db import Pool, create_pool
from tests.conftest import with_database
from tests.server.actors import Actor, bring_in

T = TypeVar("T")

SEED = 20261202
EXAMPLES = 10  # random cases per operation (the coverage phase adds its edge cases)
START_S = 60.0  # any call into the server's thread: starting, a row count, stopping
REQUEST_S = 10.0  # one answer; far more than any takes, so only a hang fails it
OPERATION_S = 60  # every case of one operation; each takes 1-3 s

# A row in these may change on a refused request, by design:
# - rate_limits: a hit is counted before the request is judged, so a refused
#   request still spends one (services/ratelimit.py); that is what stops guessing.
WRITES_ON_REFUSAL = frozenset({"rate_limits"})

# Every rate limit lifted (new ones too), so that the handlers answer, not the 429s.
LIFTED_LIMITS = {
    f.name: RateLimit(1_000_000, 60) for f in fields(Settings) if f.name.startswith("rate_")
}

# Ids of the founded network's real things, filled in by the fixture: a random
# id only ever reaches "not found", a real one the rules behind it.
KNOWN_IDS: dict[str, list[str]] = {}

_TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname
"""


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxies, and no reading them per request
    return session


@dataclass
class FuzzServer:
    """A live server in a thread of its own, so the fuzzer's blocking calls can reach it."""

    url: str
    tokens: dict[str, str]  # who -> bearer token: "founder", "pending"
    loop: asyncio.AbstractEventLoop
    pool: Pool
    tables: list[str]
    http: requests.Session = field(default_factory=_session)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    last: float = 0.0
    settled: dict[str, int] | None = None  # the row counts, when nothing can have moved them

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_S)

    def counts(self) -> dict[str, int]:
        return self.run(_row_counts(self.pool, self.tables))

    def send(self, case: Case, who: str | None = None) -> None:
        """Send one case, as ``who`` or as nobody; check the answer and the database."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else None
        now = time.perf_counter()
        if self.last:
            self.seconds[case.operation.label] += now - self.last
        self.last = now
        before = self.settled or self.counts()
        response = case.call(
            base_url=self.url, session=self.http, headers=headers, timeout=REQUEST_S
        )
        after = self.counts()
        self.statuses[(case.operation.label, response.status_code)] += 1
        # After a refusal the rows stay where this request left them: schemathesis's
        # checks send requests of their own (auth probes) only after a 2xx.
        self.settled = after if response.status_code >= 400 else None
        case.validate_response(response, headers=headers)
        if response.status_code >= 400:
            changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
            assert not changed, (
                f"{case.method} {case.formatted_path} was refused with {response.status_code} "
                f"but changed rows (before, after): {changed}"
            )

    def request(self, method: str, path: str, body: Any) -> requests.Response:
        """A request of the test's own, not checked: it may write, so the next send counts
        the rows afresh."""
        self.settled = None
        return self.http.request(method, self.url + path, json=body, timeout=REQUEST_S)

    def summary(self, seconds: float) -> str:
        sent = sum(self.statuses.values())
        refused = sum(n for (_, status), n in self.statuses.items() if status >= 400)
        lines = [
            f"fuzz: {sent} requests ({refused} refused, each checked for writes) in {seconds:.1f}s"
        ]
        by_operation: dict[str, Counter[int]] = {}
        for (label, status), n in sorted(self.statuses.items()):
            by_operation.setdefault(label, Counter())[status] += n
        lines += [
            f"  {label}: {dict(counts)} {self.seconds[label]:.1f}s"
            for label, counts in by_operation.items()
        ]
        return "\n".join(lines)


async def _row_counts(pool: Pool, tables: list[str]) -> dict[str, int]:
    query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)  # noqa: S608
    async with pool.acquire() as conn:
        return {row[0]: row[1] for row in await conn.fetch(query)}


async def _start(
    settings: Settings, database_url: str
) -> tuple[web.AppRunner, Pool, str, dict[str, str]]:
    """The server, and a network in it: its founder, a member they brought in, a newcomer
    still waiting to be admitted, and an invite nobody used."""
    pool = await create_pool(database_url, min_size=1, max_size=5)
    app = create_app(settings.with_changes(database_url=database_url), pool)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    async with aiohttp.ClientSession() as http:
        founder, admitted, pending = Actor(http, url), Actor(http, url), Actor(http, url)
        assert (await founder.found()).status == 201
        await bring_in(founder, admitted)
        code, reply = await founder.invite()
        assert reply.status == 201, reply.body
        assert (await pending.join(code, founder)).status == 201  # and logged in; not admitted
        code, reply = await founder.invite()
        assert reply.status == 201, reply.body
    assert founder.cell is not None
    KNOWN_IDS["group_id"] = [b32e(founder.cell)]
    KNOWN_IDS["member_id"] = [founder.id_text, admitted.id_text, pending.id_text]
    KNOWN_IDS["lookup_id"] = [b32e(code.lookup_id)]
    tokens = {"founder": founder.token, "pending": pending.token}
    return runner, pool, url, {who: token for who, token in tokens.items() if token}


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def fuzz_server(
    pg_admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzServer]:
    """One server and database for the whole module: every identity, every operation.

    Module-scoped, so it can't take the per-test ``settings`` and
    ``database_url`` fixtures; it makes the same: a copy of the migrated
    template, and settings with a random secret (and the limits lifted).
    """
    name = f"fuzz_{os.getpid()}"
    database_url = with_database(pg_admin_url, name)
    settings = Settings(
        server_secret=os.urandom(32),
        data_dir=tmp_path_factory.mktemp("fuzz") / "data",
        signature_helper=False,
        **LIFTED_LIMITS,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-server", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(START_S)

    run(_admin(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_database}"))
    runner: web.AppRunner | None = None
    try:
        runner, pool, url, tokens = run(_start(settings, database_url))
        server = FuzzServer(url, tokens, loop, pool, run(_tables(pool)))
        started = time.perf_counter()
        yield server
        print(server.summary(time.perf_counter() - started))
        server.http.close()
    finally:
        if runner is not None:
            run(runner.cleanup())
            run(pool.close())
        run(_admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_S)
        loop.close()


async def _tables(pool: Pool) -> list[str]:
    """Every table of the public schema, from the catalog, less WRITES_ON_REFUSAL."""
    async with pool.acquire() as conn:
        names = [row[0] for row in await conn.fetch(_TABLES_SQL)]
    return [t for t in names if t not in WRITES_ON_REFUSAL]


def _schema() -> Any:
    """The document the server serves at /v1/openapi.json (server/http/routes.py)."""
    config = schemathesis.Config.from_dict(
        {
            "checks": {
                # Valid-looking bodies are still refused: their signatures are random.
                "positive_data_acceptance": {"enabled": False},
                # What refuses a request the document forbids; 413 too (schemathesis's
                # default list lacks it), for a field so long the body is over the limit.
                "negative_data_rejection": {
                    "expected-statuses": [400, 401, 403, 404, 405, 409, 410, 413, 415, 429]
                },
            }
        }
    )
    return schemathesis.openapi.from_dict(openapi_document(), config=config)


SCHEMA = _schema()
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, operations in openapi_document()["paths"].items()
    for method in operations
    if method != "parameters"
]


def fuzz(server: FuzzServer, label: str, who: str | None, *, edges: bool) -> None:
    """Send one operation its cases as ``who``: with ``edges``, first the coverage
    phase's edge cases (each bound and one past it, each field missing or of another
    type, other methods, other content types), then EXAMPLES random ones, valid and
    invalid, the same every run (seeded)."""
    method, path = label.split(" ", 1)
    operation = SCHEMA[path][method]
    if edges:
        generation = SCHEMA.config.generation_for(operation=operation, phase="coverage")
        for case in SCHEMA.iter_coverage_cases(
            operation, generation_modes=list(GenerationMode), generation_config=generation
        ):
            server.send(case, who)
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ).flatmap(with_real_ids)

    @hypothesis.seed(zlib.crc32(f"{SEED} {who} {label}".encode()))
    @hypothesis.settings(
        max_examples=EXAMPLES,
        database=None,  # nothing remembered from an earlier run
        deadline=None,
        # Reported as found, not shrunk: shrinking sends many more requests and could
        # outlast OPERATION_S, and the seed reproduces the run anyway.
        phases=[hypothesis.Phase.generate],
        # The time-based health check would fail a run on a busy CI machine.
        suppress_health_check=[hypothesis.HealthCheck.too_slow],
    )
    @hypothesis.given(case=cases)
    def each(case: Case) -> None:
        server.send(case, who)

    each()


_SCHEMAS = openapi_document()["components"]["schemas"]
_ID_PATTERNS = {
    "group_id": re.compile(_SCHEMAS["Id16"]["pattern"]),
    "lookup_id": re.compile(_SCHEMAS["Id16"]["pattern"]),
    "member_id": re.compile(_SCHEMAS["Id32"]["pattern"]),
}


def with_real_ids(case: Case) -> st.SearchStrategy[Case]:
    """The case, or the case with a real id in place of a generated valid one.

    Only a valid one: a case meant to be invalid stays invalid, only now
    perhaps about a real group or member, deeper in the handler.
    """
    swaps: list[tuple[str, str, str]] = [("", "", "")]  # the case as generated
    for name, value in (case.path_parameters or {}).items():
        if _is_valid_id(name, value):
            swaps += [("path", name, real) for real in KNOWN_IDS[name]]
    if isinstance(case.body, dict) and _is_valid_id("member_id", case.body.get("member_id")):
        swaps += [("body", "member_id", real) for real in KNOWN_IDS["member_id"]]
    return st.sampled_from(swaps).map(lambda swap: _swapped(case, *swap))


def _is_valid_id(name: str, value: Any) -> bool:
    pattern = _ID_PATTERNS.get(name)
    return pattern is not None and isinstance(value, str) and bool(pattern.fullmatch(value))


def _swapped(case: Case, where: str, name: str, real: str) -> Case:
    if where == "path":
        case.path_parameters = {**(case.path_parameters or {}), name: real}
    elif where == "body":
        case.body = {**case.body, name: real}
    return case


@pytest.fixture(scope="module", autouse=True)
def hypothesis_left_as_found() -> Iterator[None]:
    """schemathesis patches Hypothesis for the whole process the first time it makes a
    strategy (a bigger buffer; a printer that prints nothing, so a failing property
    test elsewhere would show blank arguments). Put Hypothesis back for the tests after
    these; pyproject.toml keeps schemathesis's pytest plugin, which does the same at
    start-up, from loading at all."""
    modules = [
        hypothesis_core,
        hypothesis_entropy,
        conjecture_engine,
        strategies_core,
        strategies_collections,
    ]
    saved = [(module, dict(vars(module))) for module in modules]
    yield
    for module, before in saved:
        for name in set(vars(module)) - set(before):
            delattr(module, name)
        for name, value in before.items():
            if vars(module).get(name) is not value:
                setattr(module, name, value)
    vars(schemathesis_hypothesis.setup).pop("_is_patched", None)  # patch again if used again


@pytest.mark.timeout(OPERATION_S)
@pytest.mark.parametrize("label", OPERATIONS)
def test_anonymous_requests_get_documented_answers_and_refusals_write_nothing(
    fuzz_server: FuzzServer, label: str
) -> None:
    """What anyone on the internet can send, edge cases included."""
    fuzz(fuzz_server, label, None, edges=True)


@pytest.mark.timeout(OPERATION_S)
@pytest.mark.parametrize("label", OPERATIONS)
def test_founder_requests_get_documented_answers_and_refusals_write_nothing(
    fuzz_server: FuzzServer, label: str
) -> None:
    fuzz(fuzz_server, label, "founder", edges=True)


@pytest.mark.timeout(OPERATION_S)
@pytest.mark.parametrize("label", OPERATIONS)
def test_newcomer_requests_get_documented_answers_and_refusals_write_nothing(
    fuzz_server: FuzzServer, label: str
) -> None:
    """A newcomer not yet admitted: the refusals (403, 404) and their own partial
    evidence. Random cases only: the edge cases mostly repeat the founder's refusals."""
    fuzz(fuzz_server, label, "pending", edges=False)


def test_a_refusal_that_writes_is_caught(fuzz_server: FuzzServer) -> None:
    """The write check is not idle: a failed login spends its challenge, by design
    (docs/API.md: one try per challenge), and the check sees that row go."""
    founder = KNOWN_IDS["member_id"][0]
    reply = fuzz_server.request("POST", "/v1/auth/challenge", {"member_id": founder})
    assert reply.status_code == 200
    wrong = {"member_id": founder, "challenge": reply.json()["challenge"], "signature": "A" * 86}
    case = SCHEMA["/v1/auth/session"]["POST"].Case(body=wrong, media_type="application/json")
    with pytest.raises(AssertionError, match=r"refused with 401 .*login_challenges"):
        fuzz_server.send(case)
