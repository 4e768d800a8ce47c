"""End to end: a backup made with pg_dump, restored with pg_restore, and members carry on.

The operator's procedure of deploy/README.md ("Backup and restore"), with the
real PostgreSQL tools of the embedded cluster the tests run on: `pg_dump
--format=custom` of the live database, a fresh database, `pg_restore` into it,
then `spokes-server serve` on it with the same server secret. Members keep
the keystores they have (their homes are only pointed at the new server's
address) and carry on: they read what was sent before the dump, send, and
admit a newcomer. The dump holds no message text, name or contact; it does
hold the pseudonymous member ids.

A restore to an older point rolls back logs that members verified, and their
clients raise the lying alarm (`verification_failed`), by design: a roster
log or revocation chain shorter than the one a client verified, or a
sender's message that names a previous one the server no longer has.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pgserver
import pytest

from bench.network import move_to_server
from crypto.keys import parse_member_id
from tests.conftest import SpawnServer, _admin_execute, run_sync, with_database
from tests.e2e.conftest import SECRET_VARIABLE, Snapshots, StartFrom
from tests.e2e.test_cells import admit, cell_of_three, member_id, texts
from tests.e2e.test_lying_server import caught
from tests.e2e.test_member_flow import ENV, invite, join, run
from tests.server.test_dump import encodings

_restores = itertools.count(1)

Restore = Callable[[Path], str]


def pg_tool(name: str, *args: str) -> bytes:
    """Run PostgreSQL's `name` (the embedded cluster's own, else the one on PATH); its stdout."""
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    binary = str(bundled) if bundled.exists() else shutil.which(name)
    assert binary, f"{name} is needed for this test"
    process = subprocess.run([binary, *args], capture_output=True, timeout=60)
    assert process.returncode == 0, f"{name}: {process.stderr.decode(errors='replace')}"
    return process.stdout


def dump(database_url: str, file: Path) -> None:
    """`pg_dump --format=custom` of the live database (a consistent snapshot) into `file`."""
    pg_tool("pg_dump", "--format=custom", "--file", str(file), "--dbname", database_url)


@pytest.fixture
def restore(pg_admin_url: str) -> Iterator[Restore]:
    """``restore(dump_file)``: a fresh, empty database with the dump restored into it; its URL."""
    made: list[str] = []

    def into_fresh_database(file: Path) -> str:
        name = f"backup_{os.getpid()}_{next(_restores)}"
        create = f"CREATE DATABASE {name} TEMPLATE template0"  # empty, whatever template1 holds
        pg_tool("psql", "--dbname", pg_admin_url, "--quiet", "--command", create)
        made.append(name)
        url = with_database(pg_admin_url, name)
        pg_tool(
            "pg_restore", "--exit-on-error", "--single-transaction", "--no-owner",
            "--dbname", url, str(file),
        )  # fmt: skip
        return url

    yield into_fresh_database
    for name in made:
        run_sync(_admin_execute(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def lose(pg_admin_url: str, database_url: str) -> None:
    """The original database is gone (its server still runs, on nothing): only the dump is left."""
    name = urlsplit(database_url).path.lstrip("/")
    run_sync(_admin_execute(pg_admin_url, f"DROP DATABASE {name} WITH (FORCE)"))


def serve_restored(spawn_server: SpawnServer, database_url: str, secret: str, *homes: Path) -> str:
    """`spokes-server serve` on the restored database, every home pointed at it; its URL."""
    url = spawn_server("--database-url", database_url, env={SECRET_VARIABLE: secret}).url
    for home in homes:
        move_to_server(home, url, ENV["SPOKES_PASSPHRASE"])
    return url


def roster_of(home: Path) -> tuple[object, ...]:
    """What cellmates compare when they meet: their cell's roster seq, epoch and fingerprint."""
    (cell,) = run(home, "cells")["groups"]
    return tuple(cell[k] for k in ("group_id", "members", "epoch", "roster_seq", "fingerprint"))


def test_members_carry_on_after_the_database_is_restored_from_a_dump(
    tmp_path: Path,
    start_from: StartFrom,
    snapshots: Snapshots,
    spawn_server: SpawnServer,
    server_command: list[str],
    pg_admin_url: str,
    restore: Restore,
) -> None:
    _, database_url, (founder, b, c) = start_from(cell_of_three)
    secret = snapshots.get(cell_of_three, (), spawn_server).server_secret
    ids = {home: member_id(home) for home in (founder, b, c)}
    run(founder, "profile", "set", "--name", "Ana Lindqvist", "--contact", "ana@example.org")
    run(founder, "send", "cell", "meet at the old mill at dawn")
    run(b, "send", "cell", "bring the banner and the first aid kit")
    before = texts(run(b, "read", "cell", "--since", "0"))
    assert before == ["meet at the old mill at dawn", "bring the banner and the first aid kit"]
    cell = roster_of(founder)

    backup = tmp_path / "spokes.dump"
    dump(database_url, backup)  # while the server runs
    lose(pg_admin_url, database_url)
    restored = restore(backup)
    # The dump holds the schema and its migrations' record: nothing is applied again.
    migrated = subprocess.run(
        [*server_command, "migrate", "--database-url", restored, "--data-dir", str(tmp_path)],
        env={**os.environ, SECRET_VARIABLE: secret},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert '"applied": []' in migrated.stdout
    url = serve_restored(spawn_server, restored, secret, founder, b, c)

    # C had read nothing: the history comes from the restored server, verified.
    got = run(c, "read", "cell")["messages"]
    assert [m["text"] for m in got] == before
    assert [m["sender"] for m in got] == [ids[founder], ids[b]]
    assert got[0]["sender_name"] == "Ana Lindqvist"  # from the sealed profile, verified
    for home in (founder, b):
        assert texts(run(home, "read", "cell", "--since", "0")) == before
    assert roster_of(founder) == cell  # the roster log, verified again from the restored one

    run(b, "send", "cell", "restored: carry on")
    for home in (founder, c):
        assert texts(run(home, "read", "cell")) == ["restored: carry on"]

    d, d_joined = join(tmp_path, "d", url, invite(founder))
    admit(founder, d_joined, b, c)
    assert run(d, "status")["status"] == "active"
    assert run(d, "read", "cell", "--since", "0")["messages"] == []
    run(c, "send", "cell", "welcome, D")
    assert texts(run(d, "read", "cell")) == ["welcome, D"]
    assert texts(run(b, "read", "cell"))[-1] == "welcome, D"
    members = {m["member_id"] for m in run(d, "members", "cell")["members"]}
    assert members == {*ids.values(), d_joined["member_id"]}

    # What a stolen backup gives: pseudonymous ids, but no text, name or contact.
    script = pg_tool("pg_restore", "--file", "-", str(backup))  # the whole dump as SQL
    assert b"COPY public.group_events" in script
    assert parse_member_id(ids[founder]).hex().encode() in script
    for plain in [*before, "Ana Lindqvist", "ana@example.org"]:
        for form in encodings(plain):
            assert form not in script, f"{plain!r} is in the dump as {form[:24]!r}"


def test_members_who_saw_a_roster_change_after_the_backup_raise_the_alarm_on_restore(
    tmp_path: Path,
    start_from: StartFrom,
    snapshots: Snapshots,
    spawn_server: SpawnServer,
    pg_admin_url: str,
    restore: Restore,
) -> None:
    url, database_url, (founder, b, c) = start_from(cell_of_three)
    secret = snapshots.get(cell_of_three, (), spawn_server).server_secret
    backup = tmp_path / "spokes.dump"
    dump(database_url, backup)
    # After the dump the cell admits D, so its roster log grows; then talks.
    d, d_joined = join(tmp_path, "d", url, invite(founder))
    admit(founder, d_joined, b, c)
    run(founder, "send", "cell", "after the backup")
    assert texts(run(b, "read", "cell")) == ["after the backup"]

    lose(pg_admin_url, database_url)
    serve_restored(spawn_server, restore(backup), secret, founder, b, c, d)
    # Every client that verified the longer log refuses the restored one.
    for home in (b, c, founder):
        caught(home, "read", "cell", because="fewer than")
    # D was admitted after the backup: the restored server has never heard of them.
    run(d, "status", expect="login_failed")


def test_a_message_lost_to_the_restore_raises_the_alarm_when_its_sender_writes_again(
    tmp_path: Path,
    start_from: StartFrom,
    snapshots: Snapshots,
    spawn_server: SpawnServer,
    pg_admin_url: str,
    restore: Restore,
) -> None:
    url, database_url, (founder, b, c) = start_from(cell_of_three)
    secret = snapshots.get(cell_of_three, (), spawn_server).server_secret
    run(founder, "send", "cell", "before the backup")
    backup = tmp_path / "spokes.dump"
    dump(database_url, backup)
    run(founder, "send", "cell", "after the backup")  # B reads it; C does not
    assert texts(run(b, "read", "cell")) == ["before the backup", "after the backup"]

    lose(pg_admin_url, database_url)
    serve_restored(spawn_server, restore(backup), secret, founder, b, c)
    # No roster changed, so the logs agree and sending goes on. C's first
    # message takes the place (the group's event number) of the lost one,
    # which B's client had already read.
    run(c, "send", "cell", "first on the restored server")
    run(c, "send", "cell", "second on the restored server")
    run(founder, "send", "cell", "founder again")
    # Each message names its sender's previous one: the founder's names the
    # lost message, which C never saw; C's second names its first, which B
    # never saw.
    caught(c, "read", "cell", because="was dropped")
    # B's client read the lost message at that number: the server no longer holds it
    # there (client/messages.py check_cursor_event), whatever came after.
    caught(b, "read", "cell", because="rolled back")
