"""Exhaustion answers 503 with Retry-After, never a hang or a 500 (issue 12).

Each on a real PostgreSQL: a pool whose every connection is stuck behind a
lock (the request waits the bounded acquire time, then gets 503); a cluster
with no connection slot left (SQLSTATE 53300); and a tablespace on a full
tmpfs (53100, disk_full), where a refused message writes nothing and the
same message is stored once space is back. Out of memory (53200) is not
provoked here: it takes the same path, the class 53 entry of
server/errors.py DATABASE_OUTAGE.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from crypto.encoding import b32e, b64e
from server.settings import Settings, SettingsError, load_settings
from tests.conftest import _outside_pytest_tmp
from tests.e2e.test_kill_batch import _stored
from tests.server.actors import Actor, Reply
from tests.server.own_postgres import OwnPostgres, own_postgres
from tests.server.test_delivery import GENEROUS, Instance, form_cell
from tests.server.test_message_batches import send_frame

ACQUIRE_TIMEOUT_S = 0.5
SMALL_POOL = {"db_pool_size": 2, "db_acquire_timeout_s": ACQUIRE_TIMEOUT_S}  # two locks fill it
FILLER = "spokes-test-filler"
_PARTS = ("header", "ciphertext", "signature")
BEFORE_FULL = 5  # application_name of the test's own connections


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnPostgres]:
    """A cluster of this module's own: one test reconfigures it, one fills a disk of it."""
    with own_postgres() as pg:
        yield pg


@pytest.fixture
async def own_database(cluster: OwnPostgres, request: pytest.FixtureRequest) -> str:
    """A migrated database on the module's cluster, for this test only."""
    from server.migrate import migrate_url  # noqa: PLC0415
    from server.pg import ensure_database  # noqa: PLC0415

    name = f"t_{request.node.name[5:40]}"
    await ensure_database(cluster.url("postgres"), name)
    await migrate_url(cluster.url(name))
    return cluster.url(name)


@pytest.fixture
async def running() -> AsyncIterator[list[Instance]]:
    """Instances the test starts (each opens its own pool from its settings); stopped after."""
    started: list[Instance] = []
    yield started
    for instance in reversed(started):
        await instance.stop()


async def start(running: list[Instance], settings: Settings, url: str, **changes: object) -> str:
    instance = Instance(settings.with_changes(database_url=url, **changes), None)
    await instance.start()
    running.append(instance)
    return instance.url


async def founded(
    running: list[Instance],
    settings: Settings,
    url: str,
    http: aiohttp.ClientSession,
    **changes: object,
) -> tuple[str, Actor]:
    """An instance of its own on ``url``, and the founder of a network on it."""
    server_url = await start(running, settings, url, **changes)
    founder = Actor(http, server_url)
    assert (await founder.found()).status == 201
    return server_url, founder


async def closed_with(ws: aiohttp.ClientWebSocketResponse, code: str, close_code: int) -> None:
    """The socket says error ``code``, then closes with ``close_code``."""
    said = await ws.receive_json(timeout=ACQUIRE_TIMEOUT_S + 5)
    assert (said["type"], said["code"]) == ("error", code), said
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == close_code


async def assert_unavailable(response: aiohttp.ClientResponse) -> None:
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"] == "1"
    assert (await response.json())["error"]["code"] == "unavailable"


# --- Settings ---------------------------------------------------------------------------


def test_pool_size_and_acquire_wait_come_from_the_environment(tmp_path: Path) -> None:
    env = {"SPOKES_DB_POOL_SIZE": "7", "SPOKES_DB_ACQUIRE_TIMEOUT": "1.5"}
    settings = load_settings(data_dir=tmp_path, env=env)
    assert (settings.db_pool_size, settings.db_acquire_timeout_s) == (7, 1.5)
    defaults = load_settings(data_dir=tmp_path, env={})
    assert (defaults.db_pool_size, defaults.db_acquire_timeout_s) == (20, 5.0)
    for bad in (
        {"SPOKES_DB_POOL_SIZE": "0"},
        {"SPOKES_DB_POOL_SIZE": "many"},
        {"SPOKES_DB_ACQUIRE_TIMEOUT": "0"},
        {"SPOKES_DB_ACQUIRE_TIMEOUT": "nan"},
        {"SPOKES_DB_ACQUIRE_TIMEOUT": "soon"},
    ):
        with pytest.raises(SettingsError, match="SPOKES_DB|database"):
            load_settings(data_dir=tmp_path, env=bad)


# --- Pool exhaustion ----------------------------------------------------------------------


async def test_a_pool_whose_every_connection_is_stuck_answers_503_promptly(
    settings: Settings,
    database_url: str,
    running: list[Instance],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, founder = await founded(running, settings, database_url, http, **SMALL_POOL)
    async with stuck_behind_a_lock(database_url, founder) as waiting:
        with caplog.at_level(logging.WARNING, logger="spokes.error"):
            started = time.monotonic()
            async with http.get(
                url + "/v1/groups", headers={"Authorization": f"Bearer {founder.token}"}
            ) as response:
                await assert_unavailable(response)
            answered_s = time.monotonic() - started
        assert ACQUIRE_TIMEOUT_S * 0.9 <= answered_s < ACQUIRE_TIMEOUT_S + 1.0, answered_s
        assert "database unavailable in GET /v1/groups (TimeoutError)" in caplog.text
        async with http.get(url + "/healthz") as response:
            assert response.status == 200  # the server itself never stopped answering
        assert not any(task.done() for task in waiting)
    assert [reply.status for reply in await asyncio.gather(*waiting)] == [200, 200]
    assert (await founder.call("GET", "/v1/groups")).status == 200
    print(f"\nboth pool connections stuck: 503 after {answered_s * 1000:.0f} ms")


async def test_a_browser_socket_logging_in_during_an_outage_is_told_to_come_back(
    settings: Settings,
    database_url: str,
    running: list[Instance],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A browser logs in by its socket's first message, after the upgrade. An outage
    before the upgrade is a 503 (the connect's rate limit reads the database); one that
    begins between the upgrade and the login can't be: the socket says `unavailable`
    and closes with 1013 (try again later)."""
    url, founder = await founded(running, settings, database_url, http, **SMALL_POOL)
    with caplog.at_level(logging.WARNING):
        async with http.ws_connect(url + "/v1/ws") as ws:
            async with stuck_behind_a_lock(database_url, founder):
                await ws.send_json({"type": "auth", "token": founder.token})
                await closed_with(ws, "unavailable", 1013)
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    async with http.ws_connect(url + "/v1/ws"):
                        pass
                assert refused.value.status == 503
    assert "websocket login met an outage: TimeoutError" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    async with http.ws_connect(url + "/v1/ws") as ws:  # the outage over, the same login works
        await ws.send_json({"type": "auth", "token": founder.token})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"


async def test_a_browser_login_that_fails_otherwise_is_closed_1011_with_no_http_in_the_socket(
    settings: Settings,
    database_url: str,
    running: list[Instance],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any other failure after the upgrade (here the sessions table gone: not an outage)
    is an `internal` error frame and close code 1011, never an HTTP 500 in the socket."""
    url, founder = await founded(running, settings, database_url, http)
    admin = await asyncpg.connect(database_url)
    try:
        async with http.ws_connect(url + "/v1/ws") as ws:
            await admin.execute("ALTER TABLE sessions RENAME TO sessions_gone")
            with caplog.at_level(logging.WARNING):
                await ws.send_json({"type": "auth", "token": founder.token})
                await closed_with(ws, "internal", 1011)
    finally:
        await admin.execute("ALTER TABLE IF EXISTS sessions_gone RENAME TO sessions")
        await admin.close()
    assert "websocket login failed: " in caplog.text
    assert founder.token and founder.token not in caplog.text


@asynccontextmanager
async def stuck_behind_a_lock(
    database_url: str, member: Actor, requests: int = 2
) -> AsyncIterator[list[asyncio.Task[Reply]]]:
    """A stuck client holds the member's row: each of ``requests`` GET /v1/me waits
    for the lock inside its transaction, holding a pool connection, until the block ends."""
    blocker = await asyncpg.connect(database_url, server_settings={"application_name": FILLER})
    try:
        async with blocker.transaction():
            await blocker.execute(
                "SELECT 1 FROM members WHERE member_id = $1 FOR UPDATE", member.id
            )
            waiting = [asyncio.create_task(member.call("GET", "/v1/me")) for _ in range(requests)]
            query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            for _ in range(500):  # polled: PostgreSQL has no event for "now waiting"
                if await blocker.fetchval(query) >= requests:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"fewer than {requests} requests ever waited on the lock")
            yield waiting
    finally:
        await blocker.close()


# --- SQLSTATE class 53 --------------------------------------------------------------------


async def test_no_connection_slot_left_answers_503_then_recovers(
    cluster: OwnPostgres,
    own_database: str,
    settings: Settings,
    running: list[Instance],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.to_thread(cluster.restart, "-c max_connections=5")
    fillers: list[asyncpg.Connection] = []
    try:
        url = await start(running, settings, own_database)  # a pool of 2 and its LISTEN: 3 slots
        founder = Actor(http, url)
        assert (await founder.found()).status == 201
        async with stuck_behind_a_lock(own_database, founder) as waiting:  # a 4th slot
            await _fill_slots(own_database, fillers)
            # Both pooled connections wait on the lock: the next request needs a new
            # one, and the cluster refuses it with 53300.
            with caplog.at_level(logging.WARNING, logger="spokes.error"):
                async with http.get(
                    url + "/v1/groups", headers={"Authorization": f"Bearer {founder.token}"}
                ) as response:
                    await assert_unavailable(response)
            assert "database unavailable in GET /v1/groups (TooManyConnectionsError)" in (
                caplog.text
            )
            for conn in fillers:
                await conn.close()
            fillers.clear()
        assert [reply.status for reply in await asyncio.gather(*waiting)] == [200, 200]
        assert (await founder.call("GET", "/v1/groups")).status == 200
    finally:
        for conn in fillers:
            await conn.close()
        for instance in running:
            await instance.stop()
        await asyncio.to_thread(cluster.restart)


async def _fill_slots(url: str, fillers: list[asyncpg.Connection]) -> None:
    """Open connections until the cluster refuses one with 53300 (too_many_connections)."""
    for _ in range(10):
        try:
            conn = await asyncpg.connect(url, server_settings={"application_name": FILLER})
        except asyncpg.TooManyConnectionsError:
            return
        fillers.append(conn)
    raise AssertionError("the cluster never ran out of connection slots")


@pytest.fixture
def full_disk(own_database: str) -> Iterator[Path]:
    """A 4 MiB tmpfs the cluster's user owns, unmounted after (as root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs takes root; the 53300 test covers class 53")
    with _outside_pytest_tmp("spokes-test-tmpfs-") as folder:
        folder.chmod(0o755)  # the cluster runs as pgserver's own user
        mount = folder / "disk"
        mount.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        try:
            yield mount
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_disk_answers_503_writes_nothing_half_and_recovers(
    cluster: OwnPostgres,
    own_database: str,
    full_disk: Path,
    settings: Settings,
    running: list[Instance],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uid = cluster.pgdata.stat().st_uid
    os.chown(full_disk, uid, cluster.pgdata.stat().st_gid)
    admin = await asyncpg.connect(own_database)
    try:
        await _move_message_tables(admin, full_disk)
        url = await start(running, settings.with_changes(**_generous()), own_database)
        steady = running[0]
        members = await form_cell(http, steady)
        view = members[0].view
        sealed = [view.seal(f"m{n}") for n in range(400)]
        for message in sealed[:BEFORE_FULL]:
            assert (await view.send_sealed(message)).status == 201
        await _fill_tablespace(admin)

        with caplog.at_level(logging.WARNING, logger="spokes.error"):
            accepted = BEFORE_FULL  # a page may still have room for a few more
            for message in sealed[BEFORE_FULL:]:
                async with http.post(
                    f"{url}/v1/groups/{b32e(view.group)}/messages",
                    json={part: b64e(getattr(message, part)) for part in _PARTS},
                    headers={"Authorization": f"Bearer {members[0].actor.token}"},
                ) as response:
                    if response.status == 503:
                        await assert_unavailable(response)
                        break
                    assert response.status == 201, await response.text()
                    accepted += 1
            else:
                raise AssertionError("400 messages fit on a full disk")
        assert "database unavailable in POST /v1/groups/{group_id}/messages (DiskFullError)" in (
            caplog.text
        )
        refused, following = sealed[accepted], sealed[accepted + 1]
        # The socket path says so too, and keeps the socket.
        token = members[0].actor.token
        async with http.ws_connect(
            url + "/v1/ws", headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "ready"
            await ws.send_json(send_frame("late", view.group, following))
            answer = await _answer(ws, "late")
            assert answer["code"] == "unavailable", answer

            # Nothing half-written: every accepted message once, seqs gapless, each
            # message row with its event; the refused ones absent.
            stored = await _stored(own_database, view.group)
            assert stored == [m.header for m in sealed[:accepted]]
            assert refused.header not in stored and following.header not in stored
            assert await _message_rows(admin, view.group) == len(stored)

            await admin.execute("DROP TABLE filler")  # space is back
            reply = await view.send_sealed(refused)
            assert reply.status == 201, reply.body
            await ws.send_json(send_frame("again", view.group, following))
            assert (await _answer(ws, "again"))["type"] == "sent"
        stored = await _stored(own_database, view.group)
        assert stored == [m.header for m in sealed[: accepted + 2]]
        assert await _message_rows(admin, view.group) == len(stored)
        print(
            f"\ndisk full after {accepted} messages ({accepted - BEFORE_FULL} after filling): "
            "503 unavailable, then the same two stored once each"
        )
    finally:
        await admin.close()


def _generous() -> dict[str, object]:
    return {
        "rate_redeem_per_source": GENEROUS,
        "rate_login_per_source": GENEROUS,
        "rate_login_per_member": GENEROUS,
    }


async def _move_message_tables(admin: asyncpg.Connection, location: Path) -> None:
    """The tables and indexes a message is written to, onto the small disk."""
    await admin.execute(f"CREATE TABLESPACE small LOCATION '{location}'")
    for table in ("group_events", "messages"):
        await admin.execute(f"ALTER TABLE {table} SET TABLESPACE small")
        for (index,) in await admin.fetch(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = $1::regclass", table
        ):
            await admin.execute(f"ALTER INDEX {index} SET TABLESPACE small")


async def _fill_tablespace(admin: asyncpg.Connection) -> None:
    """Fill the small disk to the last page; PostgreSQL must say 53100 (disk_full)."""
    await admin.execute("CREATE TABLE filler (x text) TABLESPACE small")
    full = 0
    for rows in (20_000, 2_000, 200, 20, 1):
        for _ in range(200):
            try:
                await admin.execute(
                    "INSERT INTO filler SELECT md5(random()::text) FROM generate_series(1, $1)",
                    rows,
                )
            except asyncpg.DiskFullError:
                full += 1
                break
    assert full == 5, "the tablespace never filled"


async def _message_rows(admin: asyncpg.Connection, group: bytes) -> int:
    return int(await admin.fetchval("SELECT count(*) FROM messages WHERE group_id = $1", group))


async def _answer(ws: aiohttp.ClientWebSocketResponse, ref: str) -> dict[str, object]:
    async with asyncio.timeout(10):
        while True:
            frame = await ws.receive_json()
            if frame.get("ref") == ref:
                return dict(frame)
