"""The real ``spokes-server`` command, run as a subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from server.migrate import load_migrations


def _get(url: str) -> tuple[int, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own test server)
        return response.status, json.loads(response.read())


def test_serve_with_embedded_postgres_answers_and_stops_cleanly_on_sigterm(
    spawn_server: Any, embedded_data_dir: Path
) -> None:
    data_dir = embedded_data_dir
    running = spawn_server(data_dir=data_dir)
    assert running.url.startswith("http://127.0.0.1:")
    assert not running.url.endswith(":0")
    assert _get(running.url + "/healthz") == (200, {"status": "ok"})

    pgdata = data_dir / "pg"
    assert (pgdata / "postmaster.pid").exists()
    secret = data_dir / "server-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    started = time.monotonic()
    assert running.stop(timeout=15) == 0, running.stderr()
    assert time.monotonic() - started < 10
    # pg_ctl stop removes postmaster.pid once the cluster is down.
    assert not (pgdata / "postmaster.pid").exists(), running.stderr()
    assert "Traceback" not in running.stderr()


def test_serve_restarts_on_the_same_data_dir(spawn_server: Any, embedded_data_dir: Path) -> None:
    data_dir = embedded_data_dir
    first = spawn_server(data_dir=data_dir)
    secret = (data_dir / "server-secret").read_text()
    assert first.stop() == 0
    second = spawn_server(data_dir=data_dir)
    assert _get(second.url + "/healthz")[0] == 200
    assert (data_dir / "server-secret").read_text() == secret
    assert second.stop() == 0


def test_serve_with_database_url_uses_it(spawn_server: Any, database_url: str) -> None:
    running = spawn_server("--database-url", database_url)
    assert _get(running.url + "/healthz")[0] == 200
    assert not (running.data_dir / "pg").exists()
    assert running.stop() == 0


def _migrate(command: list[str], *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [*command, "migrate", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_migrate_with_embedded_postgres_prints_json_and_is_idempotent(
    server_command: list[str], embedded_data_dir: Path
) -> None:
    data_dir = embedded_data_dir
    every = [m.version for m in load_migrations()]
    assert _migrate(server_command, "--data-dir", str(data_dir)) == {
        "applied": every,
        "current": every[-1],
    }
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    again = _migrate(server_command, "--data-dir", str(data_dir))
    assert again == {"applied": [], "current": every[-1]}


def test_migrate_with_database_url_reports_current_version(
    server_command: list[str], database_url: str, tmp_path: Path
) -> None:
    result = _migrate(
        server_command, "--database-url", database_url, "--data-dir", str(tmp_path / "d")
    )
    assert result == {"applied": [], "current": load_migrations()[-1].version}


def test_help_describes_each_command(server_command: list[str]) -> None:
    for args in (["--help"], ["serve", "--help"], ["migrate", "--help"]):
        done = subprocess.run(
            [*server_command, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0
        assert "usage: spokes-server" in done.stdout
    serve_help = subprocess.run(
        [*server_command, "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    for option in ("--host", "--port", "--data-dir", "--database-url"):
        assert option in serve_help


def _workers_of(pid: int) -> list[int]:
    """The server processes `serve --workers` spawned under ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_text = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat_text.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _tcp_connections(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` on local ``port`` (from /proc/<pid>/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink()
        except OSError:
            continue
        if str(target).startswith("socket:["):
            inodes.add(str(target)[8:-1])
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


def test_serve_with_workers_shares_the_port_and_stops_them_all(
    spawn_server: Any, database_url: str
) -> None:
    import http.client

    # Without signature helpers, the only processes the server spawns are its workers.
    running = spawn_server(
        "--database-url", database_url, "--workers", "2", "-v",
        env={"SPOKES_SIGNATURE_HELPER": "0"},
    )  # fmt: skip
    (worker,) = _workers_of(running.process.pid)
    port = int(running.url.rsplit(":", 1)[1])
    # Held connections, each hashed by the kernel to one of the two listeners.
    connections = []
    for _ in range(24):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
        connections.append(conn)
    time.sleep(0.2)
    served = [_tcp_connections(p, port) for p in (running.process.pid, worker)]
    assert all(n > 0 for n in served), served
    # Ours, and maybe the fixture's own readiness probe still kept alive.
    assert 24 <= sum(served) <= 25, served
    for conn in connections:
        conn.close()
    assert running.stop() == 0, running.stderr()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)
    assert "Traceback" not in running.stderr()
    # -v holds for the worker too: every request's access line, whichever process served it.
    assert running.stderr().count("GET /healthz 200") >= 24, running.stderr()[-2000:]


def test_workers_and_helpers_stop_when_the_server_is_killed(
    spawn_server: Any, database_url: str
) -> None:
    running = spawn_server("--database-url", database_url, "--workers", "2")
    spawned = _descendants(running.process.pid)
    assert len(spawned) == 3, spawned  # a worker, and a signature helper for each process
    running.process.kill()  # no clean-up runs in the server itself
    running.process.wait()
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in spawned) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in spawned)


def _descendants(pid: int) -> list[int]:
    children = _workers_of(pid)
    return children + [g for c in children for g in _descendants(c)]


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_serve_refuses_a_bad_worker_count(server_command: list[str]) -> None:
    done = subprocess.run(
        [*server_command, "serve", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers must be 1 to 64" in done.stderr


def test_every_option_of_spokes_server_has_help_stating_its_default() -> None:
    from server.cli import _parser
    from tests.client.test_cli import options_without_help

    assert options_without_help(_parser()) == []


def _listen_backlog(port: str) -> int:
    """The listening socket's backlog as the kernel holds it (`ss -ltn`: Send-Q)."""
    lines = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"],  # noqa: S607 - iproute2 on PATH
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    (line,) = lines
    return int(line.split()[2])


def test_the_listen_backlog_is_large_by_default_and_configurable(
    spawn_server: Any, embedded_data_dir: Path
) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    default = spawn_server(data_dir=embedded_data_dir)
    # aiohttp's own default, 128, overflowed under a burst of connects.
    assert _listen_backlog(default.url.rsplit(":", 1)[1]) == min(4096, somaxconn)
    assert default.stop(timeout=15) == 0
    chosen = spawn_server(data_dir=embedded_data_dir, env={"SPOKES_LISTEN_BACKLOG": "77"})
    assert _listen_backlog(chosen.url.rsplit(":", 1)[1]) == 77
    assert chosen.stop(timeout=15) == 0


def test_a_bad_listen_backlog_is_refused_before_anything_starts(
    server_command: list[str], tmp_path: Path
) -> None:
    for value in ("lots", "0"):
        done = subprocess.run(  # noqa: S603 - our own command
            [*server_command, "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
            env={**os.environ, "SPOKES_LISTEN_BACKLOG": value},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert "SPOKES_LISTEN_BACKLOG" in done.stderr
        assert "Traceback" not in done.stderr
