"""Fixtures shared by every test: real PostgreSQL, settings, a running server.

PostgreSQL: one embedded cluster per session (or ``SPOKES_TEST_DATABASE_URL``,
an admin URL of a server where we may create databases). The migrations are
applied once to ``spokes_template``; each test that asks for ``database_url``
gets a fresh ``CREATE DATABASE ... TEMPLATE spokes_template`` copy, dropped
afterwards. Database setup is synchronous (run in a helper thread), so these
fixtures serve sync and async tests alike and never touch a test's event loop.

Area conftests (tests/store/, tests/client/, ...) add their own fixtures on top.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from server.app import create_app
from server.clock import Clock
from server.clock import now as system_now
from server.migrate import migrate
from server.pg import start_embedded
from server.settings import Settings
from server.store.db import Pool, create_pool

T = TypeVar("T")
POOL_CLOSE_S = 20.0
RUNNER_CLEANUP_S = 30.0

TEMPLATE_DB = "spokes_template"
_db_counter = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "spokes_settings(**changes): override Settings fields for the `settings` fixture, "
        "e.g. @pytest.mark.spokes_settings(rate_login_per_source=RateLimit(2, 60))",
    )


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in a helper thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (keeps host, socket and credentials)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


# --- PostgreSQL -------------------------------------------------------------


@contextmanager
def _outside_pytest_tmp(prefix: str) -> Iterator[Path]:
    """A temp folder for embedded PostgreSQL, deliberately not under tmp_path.

    Run as root, pgserver runs postgres as the OS user ``pgserver``, which must
    traverse every parent folder. Each pytest session resets
    /tmp/pytest-of-<user> to mode 0700, so a concurrent session (or pytest's
    cleanup of old numbered dirs) would cut a running cluster off its files.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL of the session's PostgreSQL (database ``postgres``)."""
    external = os.environ.get("SPOKES_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with _outside_pytest_tmp("spokes-test-pg-") as folder:
        embedded = start_embedded(folder)
        try:
            yield embedded.url("postgres")
        finally:
            embedded.stop()


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data folder (not yet created) where ``spokes-server`` may run embedded PostgreSQL."""
    with _outside_pytest_tmp("spokes-test-data-") as folder:
        yield folder / "data"


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> str:
    """Name of the migrated template database, built once per session."""
    run_sync(_build_template(pg_admin_url))
    return TEMPLATE_DB


async def _build_template(admin_url: str) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        conn = await asyncpg.connect(with_database(admin_url, TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        # A template must have no open connections while it is copied.
        await admin.execute(
            f"ALTER DATABASE {TEMPLATE_DB} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )
    finally:
        await admin.close()


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """URL of a fresh, fully migrated database that only this test uses."""
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    run_sync(_admin_execute(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_database}"))
    try:
        yield with_database(pg_admin_url, name)
    finally:
        run_sync(_admin_execute(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


async def _admin_execute(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


HTTP_CLOSE_S = 10


async def bounded(work: Coroutine[Any, Any, Any], seconds: float) -> bool:
    """Run `work` for at most `seconds`; False if it had not finished by then.

    Unlike asyncio.wait_for, it does not wait for the cancelled work to wind
    down: a teardown stuck in a shutdown that never ends (seen twice in full
    runs, in a server's or a pool's close) is left behind, not waited on for
    ever, and the suite goes on.
    """
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if task in done:
        task.result()
        return True
    task.cancel()
    return False


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """An asyncpg pool on this test's database."""
    p = await create_pool(database_url, min_size=1, max_size=5)
    try:
        yield p
    finally:
        # close() waits for every connection to come back, without end; a
        # connection a finished test's task never returned must not hang the suite.
        if not await bounded(p.close(), POOL_CLOSE_S):
            p.terminate()
            warnings.warn("a test left a pooled connection in use", stacklevel=1)


# --- Settings and the in-process server --------------------------------------


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings with a random secret and a temp data dir; see the spokes_settings marker."""
    # In-process servers check signatures in-process unless a test asks for the
    # helper process (tests/server/test_verifier.py): one spawn per test is slow.
    changes: dict[str, Any] = {"signature_helper": False}
    for marker in reversed(list(request.node.iter_markers("spokes_settings"))):
        changes.update(marker.kwargs)
    return Settings(server_secret=os.urandom(32), data_dir=tmp_path / "data", **changes)


@dataclass
class RunningServer:
    """A live in-process server on 127.0.0.1."""

    url: str
    settings: Settings
    pool: Pool
    app: web.Application
    clock: Clock = field(default=system_now)


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def server_factory(
    settings: Settings, pool: Pool, database_url: str
) -> AsyncIterator[ServerFactory]:
    """``await server_factory(settings=None, clock=None)`` starts another live server.

    All servers of one test share its database (like instances behind a proxy).
    """
    runners: list[web.AppRunner] = []

    async def start(
        settings: Settings = settings,
        clock: Clock = system_now,
        configure: Callable[[web.Application], None] | None = None,
    ) -> RunningServer:
        effective = settings.with_changes(database_url=database_url, host="127.0.0.1", port=0)
        app = create_app(effective, pool, clock=clock)
        if configure is not None:
            configure(app)  # e.g. add a test-only route
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return RunningServer(f"http://{host}:{port}", effective, pool, app, clock)

    yield start
    for runner in reversed(runners):
        # A server whose shutdown never ends must not hang the whole suite
        # (seen once in ~5 full runs under load, in a test's teardown): bound
        # it and say so. Shutdown that always completes is part 5's work.
        if not await bounded(runner.cleanup(), RUNNER_CLEANUP_S):
            warnings.warn("a test server's shutdown did not finish", stacklevel=1)


@pytest.fixture
async def server(server_factory: ServerFactory) -> RunningServer:
    """One live server with the test's settings, database and the system clock."""
    return await server_factory()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client session (its close bounded, as the servers' and pools' are)."""
    session = aiohttp.ClientSession()
    try:
        yield session
    finally:
        if not await bounded(session.close(), HTTP_CLOSE_S):
            warnings.warn("a test's HTTP session did not close", stacklevel=1)


# --- The real `spokes-server` command as a subprocess -------------------------


@dataclass
class ServerProcess:
    """A ``spokes-server serve`` subprocess that has printed its listening line."""

    url: str
    process: subprocess.Popen[str]
    data_dir: Path
    stderr_path: Path

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, wait, and return the exit status (SIGKILL if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode

    def stderr(self) -> str:
        """Everything the process logged so far."""
        return self.stderr_path.read_text(errors="replace")


def _spokes_server_command() -> list[str]:
    script = Path(sys.executable).parent / "spokes-server"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "server.cli"]


@pytest.fixture
def server_command() -> list[str]:
    """argv prefix that runs the installed ``spokes-server`` command."""
    return _spokes_server_command()


SpawnServer = Callable[..., ServerProcess]


@pytest.fixture
def spawn_server(tmp_path: Path, embedded_data_dir: Path) -> Iterator[SpawnServer]:
    """``spawn_server(*extra_args, data_dir=None, env=None, timeout=60)`` runs
    ``spokes-server serve --port 0`` and returns once it prints ``listening on``.

    Without ``--database-url`` in ``extra_args`` it runs embedded PostgreSQL in
    ``data_dir`` (default: a fresh folder under ``embedded_data_dir``; never pass
    one under tmp_path, see ``_outside_pytest_tmp``). Every process still
    running is killed after the test.
    """
    started: list[ServerProcess] = []

    def spawn(
        *extra_args: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> ServerProcess:
        data_dir = data_dir or embedded_data_dir.parent / f"server-{len(started)}"
        stderr_path = tmp_path / f"server-{len(started)}.stderr"
        command = [
            *_spokes_server_command(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *extra_args,
        ]
        full_env = {**os.environ, **(env or {})}
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=full_env
            )
        running = ServerProcess("", process, data_dir, stderr_path)
        started.append(running)
        running.url = _await_listening(running, timeout)
        return running

    yield spawn
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        if running.process.stdout is not None:
            running.process.stdout.close()


def _await_listening(running: ServerProcess, timeout: float) -> str:
    stdout = running.process.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put("")  # EOF

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(
            f"spokes-server printed nothing in {timeout}s; stderr:\n{running.stderr()}"
        ) from None
    prefix = "listening on "
    if not line.startswith(prefix):
        running.process.kill()
        raise AssertionError(f"unexpected first line {line!r}; stderr:\n{running.stderr()}")
    return line[len(prefix) :].strip()
