"""Embedded PostgreSQL (the ``pgserver`` package) for running without a database URL.

Rule: whoever calls :func:`start_embedded` calls :meth:`EmbeddedPostgres.stop`;
pgserver's own atexit hook does not run when a process dies by a signal.
The cluster listens only on a unix socket inside the data folder, never on TCP.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import asyncpg

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

DATABASE_NAME = "spokes"


@dataclass
class EmbeddedPostgres:
    """A running embedded cluster; ``pgdata`` lives under the server's data folder."""

    pgdata: Path
    server: PostgresServer

    def url(self, database: str = DATABASE_NAME) -> str:
        """A URL asyncpg and psql accept, pointing at the cluster's unix socket."""
        return socket_url(self.server.get_postmaster_info().socket_dir, database)

    def stop(self) -> None:
        """Stop the cluster (unless another live process still holds a handle on it)."""
        self.server.cleanup()


def socket_url(socket_dir: Path | None, database: str) -> str:
    """Build ``postgresql://postgres@/DB?host=SOCKETDIR`` with the path escaped."""
    if socket_dir is None:
        raise RuntimeError("embedded PostgreSQL reported no unix socket directory")
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(socket_dir), safe='/')}"


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Initialise (first time) and start the cluster in ``data_dir/pg``; blocking."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "pg"
    _forget_dead_handles(pgdata)
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore", UserWarning)
        from pgserver.postgres_server import get_server

    server = get_server(pgdata, cleanup_mode="stop")
    return EmbeddedPostgres(pgdata=pgdata, server=server)


async def ensure_database(admin_url: str, name: str = DATABASE_NAME) -> None:
    """Create database ``name`` through ``admin_url`` unless it already exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return
        try:
            # Identifiers cannot be parameters; quote it ourselves.
            await conn.execute(f'CREATE DATABASE "{_ident(name)}"')
        except asyncpg.DuplicateDatabaseError:
            pass  # another instance created it between our check and now
    finally:
        await conn.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"refusing unusual database name {name!r}")
    return name


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that no longer exist from pgserver's handle list.

    pgserver stops the cluster only when the last process holding a handle
    exits; a process killed with SIGKILL never removes its pid, and then no
    later clean exit would ever stop the cluster.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
