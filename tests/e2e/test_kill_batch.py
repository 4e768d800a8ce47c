"""A server instance killed with SIGKILL in the middle of message batches (issue 12).

Two `spokes-server serve` processes on one PostgreSQL. A member posts many
sealed messages at once to the first; it is killed while they are being
written. Afterwards: every message it accepted (201) is in the group's log
exactly once, every one it refused is absent, the log's seqs are gapless,
and each message row has its event. The member then posts the unanswered
ones again, the same bytes, to the second instance: each is stored once (a
repeat is answered as stored), and a socket on the second instance
delivers the whole log, in order, once.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import asyncpg

from crypto.encoding import b32e
from crypto.messages import SealedMessage
from crypto.network import Policy
from tests.conftest import SpawnServer
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView

MESSAGES = 400
IN_FLIGHT = 40
KILL_AFTER = 60  # answers seen before the kill


async def test_a_server_killed_mid_batch_leaves_nothing_half_written(
    spawn_server: SpawnServer, database_url: str
) -> None:
    env = {"SPOKES_SERVER_SECRET": os.urandom(32).hex()}
    first = spawn_server("--database-url", database_url, env=env)
    second = spawn_server("--database-url", database_url, env=env)
    async with aiohttp.ClientSession() as http:
        founder = Actor(http, first.url)
        assert (await founder.found(Policy(cell_min=2, vouches=1))).status == 201
        member = Actor(http, first.url)
        await bring_in(founder, member)
        view = GroupView(founder, founder.cell or b"")
        assert (await view.add(member, await founder.admission_of(member))).status == 201
        assert (await view.commit_epoch()).status == 201
        await view.open_epoch()
        sealed = [view.seal(f"m{n:03d}") for n in range(MESSAGES)]

        answers: dict[int, int | None] = {}  # index -> status (None: no answer)
        answered = asyncio.Event()
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def post(n: int, message: SealedMessage) -> None:
            async with gate:
                try:
                    reply = await view.send_sealed(message)
                    answers[n] = reply.status
                except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError):
                    answers[n] = None
                if sum(1 for s in answers.values() if s is not None) >= KILL_AFTER:
                    answered.set()

        posting = [asyncio.create_task(post(n, m)) for n, m in enumerate(sealed)]
        await asyncio.wait_for(answered.wait(), 60)
        first.process.kill()  # SIGKILL: batches in flight die with it
        await asyncio.wait_for(asyncio.gather(*posting), 60)

        accepted = {n for n, s in answers.items() if s == 201}
        refused = {n for n, s in answers.items() if s is not None and s != 201}
        unanswered = {n for n, s in answers.items() if s is None}
        assert accepted and unanswered, answers  # the kill came in the middle

        stored = await _stored(database_url, view.group)
        headers = {sealed[n].header: n for n in range(MESSAGES)}
        in_log = [headers[h] for h in stored]
        assert len(in_log) == len(set(in_log))  # none twice
        assert accepted <= set(in_log)  # every accepted message is in the log
        assert not refused & set(in_log)  # every refused one is absent

        # The unanswered ones again, the same bytes, to the other instance.
        founder.url = second.url
        await founder.login()
        again: dict[int, int] = {}
        for n in sorted(unanswered):
            reply = await view.send_sealed(sealed[n])
            assert reply.status in (201, 409), reply.body  # stored (again: as stored) or refused
            again[n] = reply.status
        final = [headers[h] for h in await _stored(database_url, view.group)]
        assert len(final) == len(set(final))  # still none twice
        stored_now = {n for n, status in again.items() if status == 201}
        assert set(final) == accepted | stored_now  # exactly what got a 201, once
        print(
            f"\n{len(accepted)} accepted before the kill, {len(refused)} refused, "
            f"{len(unanswered)} unanswered: {len(stored_now & set(in_log))} of them had been "
            f"committed, {len(stored_now - set(in_log))} stored on the other instance"
        )

        # A socket on the second instance delivers the whole log, in order, once.
        delivered = await _delivered(http, second.url, founder.token, view.group)
        assert [e for e in delivered] == sorted(delivered)
        assert len([e for e in delivered]) == len(set(delivered))


async def _stored(database_url: str, group: bytes) -> list[bytes]:
    """The headers of the group's message events in seq order; the seqs gapless and every
    message row matched by its event."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT seq, kind, body FROM group_events WHERE group_id = $1 ORDER BY seq", group
        )
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        last = await conn.fetchval("SELECT last_seq FROM groups WHERE group_id = $1", group)
        assert last == len(rows)
    finally:
        await conn.close()
    from crypto.encoding import decode  # noqa: PLC0415

    headers = []
    for row in rows:
        if row["kind"] == "message":
            body: Any = decode(bytes(row["body"]))
            headers.append(bytes(body["header"]))
    return headers


async def _delivered(http: Any, url: str, token: str | None, group: bytes) -> list[int]:
    """The seqs a fresh socket delivers of the group from the start, until it is quiet."""
    ws = await http.ws_connect(url + "/v1/ws", headers={"Authorization": f"Bearer {token}"})
    seqs: list[int] = []
    try:
        await ws.send_str(json.dumps({"type": "subscribe", "cursors": {b32e(group): 0}}))
        while True:
            try:
                message = await ws.receive(timeout=2)
            except TimeoutError:
                break
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            events = data["events"] if data.get("type") == "batch" else [data]
            seqs += [int(e["seq"]) for e in events if e.get("type") == "event"]
    finally:
        await ws.close()
    return seqs
