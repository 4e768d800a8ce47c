"""An embedded PostgreSQL cluster that one test owns: it may stop, start and reconfigure it.

The session's shared cluster (tests/conftest.py) must never be restarted
under the other tests; a test about PostgreSQL itself going away, or running
out of something, starts one of these instead. It runs pgserver's own
binaries with the options pgserver starts it with (a unix socket only, no
TCP), as pgserver's system user when the test runs as root.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from server.migrate import migrate_url
from server.pg import EmbeddedPostgres, ensure_database, start_embedded
from tests.conftest import _outside_pytest_tmp, run_sync

PG_CTL_TIMEOUT_S = 30


class OwnPostgres:
    """A running cluster; ``stop`` and ``start`` it as often as the test needs."""

    def __init__(self, embedded: EmbeddedPostgres) -> None:
        self._embedded = embedded
        self.pgdata = embedded.pgdata
        self.socket_dir = embedded.server.get_postmaster_info().socket_dir
        self.user: str | None = embedded.server.system_user
        self.running = True

    def url(self, database: str = "spokes") -> str:
        return self._embedded.url(database)

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` ends every session cleanly, ``immediate`` is a crash."""
        self._pg_ctl("-m", mode, "stop")
        self.running = False

    def start(self, *options: str) -> None:
        """Start it again (returns once it accepts connections); ``options`` are
        ``postgres`` flags for this run only, e.g. ``"-c max_connections=5"``."""
        flags = [f"-o {option}" for option in options]
        self._pg_ctl(
            "-o",
            '-h ""',
            "-o",
            f"-k {self.socket_dir}",
            *[part for flag in flags for part in flag.split(" ", 1)],
            "-l",
            str(self.pgdata / "log"),
            "start",
        )
        self.running = True

    def restart(self, *options: str) -> None:
        self.stop()
        self.start(*options)

    def close(self) -> None:
        if self.running:
            self.stop()
        # pgserver would stop the postmaster it started, which a restart replaced:
        # only its handle is left to drop.
        self._embedded.server.cleanup_mode = None
        self._embedded.stop()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415 - slow import

        # Files, not pipes: the postmaster pg_ctl starts would hold a pipe open for good.
        with tempfile.TemporaryFile("w+") as errors:
            done = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w", *args],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                user=self.user,
                timeout=PG_CTL_TIMEOUT_S,
                check=False,
            )
            errors.seek(0)
            if done.returncode != 0:
                raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {errors.read()}")


@contextmanager
def own_postgres(prefix: str = "spokes-own-pg-") -> Iterator[OwnPostgres]:
    """A fresh cluster with the database ``spokes`` migrated; stopped and removed after."""
    with _outside_pytest_tmp(prefix) as folder:
        cluster = OwnPostgres(start_embedded(folder))
        try:
            run_sync(ensure_database(cluster.url("postgres")))
            run_sync(migrate_url(cluster.url()))
            yield cluster
        finally:
            cluster.close()
