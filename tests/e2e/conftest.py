"""Fixtures the end-to-end tests share: a server on the test's own database, and
networks built once and restored for each test that starts from them.

Building a network through the `spokes` command costs about half a second a
command, and many tests start from the same one (found, invite, join, admit,
vouch...). ``start_from(build, *args)`` runs ``build(folder, url, *args)`` once per
session against a live server, then stops that server so that what the build
left is at rest: the homes it made and the database it wrote, kept as a
template. Each test that asks for the same build gets its own copy of both,
behind a fresh server with the same secret, its homes pointed at that server.
So every test starts from exactly what ``build`` made and changes only its copy.

A build goes through the `spokes` command only, as honest members would; what
an operator does to the network belongs in the test.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

from bench.network import move_to_server
from client.state import StateFile
from tests.conftest import SpawnServer, _admin_execute, run_sync, with_database
from tests.e2e.test_member_flow import ENV

Build = Callable[..., Sequence[Path]]
"""``build(folder, url, *args)``: a network made against the server at ``url``,
its homes directly in ``folder``; returns them, in the order the tests unpack
them. It leaves no process running in a home (no `spokes watch`, no unlock
agent: a socket in a home fails the copy)."""

SECRET_VARIABLE = "SPOKES_SERVER_SECRET"
_copies = itertools.count(1)


@pytest.fixture
def served(spawn_server: SpawnServer, database_url: str) -> tuple[str, str]:
    """A `spokes-server serve` on this test's own database: (its URL, the database's URL)."""
    return spawn_server("--database-url", database_url).url, database_url


class Restored(NamedTuple):
    """A test's own copy of a built network, live: ``url, database_url, homes = ...``."""

    url: str
    database_url: str
    homes: tuple[Path, ...]  # in the test's tmp_path, in the order the build returned them


StartFrom = Callable[..., Restored]


@dataclass(frozen=True)
class Snapshot:
    """A built network at rest: its homes in ``folder``, its database a template."""

    folder: Path
    homes: tuple[Path, ...]  # relative to folder
    database: str
    server_secret: str  # hex; the build's server and every copy's share it


class Snapshots:
    """The session's snapshots, one per ``(build, args)``, taken on first use."""

    def __init__(self, admin_url: str, template: str, folder: Path) -> None:
        self.admin_url = admin_url
        self.template = template
        self.folder = folder
        self.databases: list[str] = []
        self._taken: dict[tuple[Build, tuple[object, ...]], Snapshot] = {}

    def get(self, build: Build, args: tuple[object, ...], spawn: SpawnServer) -> Snapshot:
        """The snapshot of ``build(..., *args)``, built now (with ``spawn``) if it is the first ask."""
        if (build, args) not in self._taken:
            self._taken[build, args] = self._take(build, args, spawn)
        return self._taken[build, args]

    def _take(self, build: Build, args: tuple[object, ...], spawn: SpawnServer) -> Snapshot:
        number = len(self.databases) + 1
        database = f"snapshot_{os.getpid()}_{number}"
        self.execute(f"CREATE DATABASE {database} TEMPLATE {self.template}")
        self.databases.append(database)
        folder = self.folder / f"{number}-{build.__name__}"
        folder.mkdir()
        secret = os.urandom(32).hex()
        server = spawn(
            "--database-url", with_database(self.admin_url, database), env={SECRET_VARIABLE: secret}
        )
        homes = tuple(home.relative_to(folder) for home in build(folder, server.url, *args))
        # Stopped, the server has closed its connections (a template must have
        # none); the build's `spokes` commands have all returned: both are at rest.
        assert server.stop() == 0, server.stderr()
        self.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        return Snapshot(folder, homes, database, secret)

    def execute(self, sql: str) -> None:
        run_sync(_admin_execute(self.admin_url, sql))


@pytest.fixture(scope="session")
def snapshots(
    pg_admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Snapshots]:
    """The session's built networks; their databases are dropped at the end."""
    taken = Snapshots(pg_admin_url, template_database, tmp_path_factory.mktemp("snapshots"))
    yield taken
    for database in taken.databases:
        taken.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.fixture
def start_from(
    snapshots: Snapshots, spawn_server: SpawnServer, pg_admin_url: str, tmp_path: Path
) -> Iterator[StartFrom]:
    """``start_from(build, *args)``: this test's own copy of what ``build`` makes.

    The build runs once per session (in the first test that asks); every test
    gets its homes copied into its ``tmp_path`` (modes kept) and a copy of its
    database, behind a fresh server. Once per test: the homes land in ``tmp_path``.
    """
    databases: list[str] = []

    def start(build: Build, *args: object) -> Restored:
        assert not databases, "start_from() gives a test one network"
        snapshot = snapshots.get(build, args, spawn_server)
        database = f"restored_{os.getpid()}_{next(_copies)}"
        snapshots.execute(f"CREATE DATABASE {database} TEMPLATE {snapshot.database}")
        databases.append(database)
        database_url = with_database(pg_admin_url, database)
        server = spawn_server(
            "--database-url", database_url, env={SECRET_VARIABLE: snapshot.server_secret}
        )
        shutil.copytree(snapshot.folder, tmp_path, dirs_exist_ok=True)
        for home in tmp_path.iterdir():
            if StateFile(home).exists():
                move_to_server(home, server.url, ENV["SPOKES_PASSPHRASE"])
        return Restored(server.url, database_url, tuple(tmp_path / h for h in snapshot.homes))

    yield start
    for database in databases:
        snapshots.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
