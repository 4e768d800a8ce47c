"""The delivery proof: a full cell, 1,000 concurrent messages, a reconnect and a restart.

Ten members of one cell, each with the epoch's keys and a live WebSocket,
send 100 messages apiece at once. While they are in flight some sockets are
closed from the client side and the instance holding the others is stopped
and replaced; every client resumes from its last cursor. Every member must
end up with every message exactly once, in each sender's order, and able to
open it with the epoch's keys. Everything is real: PostgreSQL, two server
instances on one database, loopback sockets, crypto/.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crypto.encoding import b32e, b64d, decode
from crypto.epochs import EpochKeys
from crypto.keys import IdentityPublicKey
from crypto.messages import Header, SealedMessage, open_message, verify_message
from crypto.network import Policy
from server.app import create_app
from server.settings import RateLimit, Settings
from server.store.db import Pool
from tests.conftest import RUNNER_CLEANUP_S, bounded
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView

MEMBERS = 10
PER_MEMBER = 100
TOTAL = MEMBERS * PER_MEMBER
DEADLINE_S = 45.0  # the whole exchange, setup excluded
RECONNECT_PAUSE_S = 0.05

FAST_POLICY = Policy(vouches=1, probation_seconds=0, vetting_seconds=0, invite_quota=20)
GENEROUS = RateLimit(1000, 3600)


class Instance:
    """A server instance on the test's database that the test may stop and replace."""

    def __init__(self, settings: Settings, pool: Pool) -> None:
        self._settings = settings
        self._pool = pool
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.started = 0

    async def start(self) -> None:
        runner = web.AppRunner(create_app(self._settings, self._pool), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.runner, self.url = runner, f"http://{host}:{port}"
        self.started += 1

    async def stop(self) -> None:
        if self.runner is not None:
            runner, self.runner, self.url = self.runner, None, ""
            assert await bounded(runner.cleanup(), RUNNER_CLEANUP_S), "shutdown did not end"


@pytest.fixture
async def instances(
    settings: Settings, pool: Pool, database_url: str
) -> AsyncIterator[tuple[Instance, Instance]]:
    effective = settings.with_changes(database_url=database_url)
    steady, restarted = Instance(effective, pool), Instance(effective, pool)
    await steady.start()
    await restarted.start()
    yield steady, restarted
    await restarted.stop()
    await steady.stop()


@dataclass
class Member:
    """One member's client: keys to send with, keys to read with, and what arrived."""

    actor: Actor
    view: GroupView
    instance: Instance
    reader: EpochKeys | None = None
    cursor: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    subscribed: bool = False
    socket: aiohttp.ClientWebSocketResponse | None = None

    @property
    def messages(self) -> int:
        return sum(1 for e in self.events if e["kind"] == "message")


async def form_cell(http: aiohttp.ClientSession, steady: Instance) -> list[Member]:
    """Found a network and bring nine more members into its first cell, each on the roster."""
    founder = Actor(http, steady.url)
    assert (await founder.found(FAST_POLICY)).status == 201
    cell = founder.cell or b""
    view = GroupView(founder, cell)
    actors = [founder]
    for _ in range(MEMBERS - 1):
        newcomer = Actor(http, steady.url)
        await bring_in(founder, newcomer)
        admission = await founder.admission_of(newcomer)
        reply = await view.add(newcomer, admission)
        assert reply.status == 201, reply.body
        actors.append(newcomer)
    assert (await view.commit_epoch()).status == 201
    members = []
    for actor in actors:
        theirs = GroupView(actor, cell)
        keys = await theirs.open_epoch()
        # Sending moves a chain forward and forgets its keys; reading one's own
        # messages back needs the chains as they were before the first send.
        members.append(Member(actor, theirs, steady, reader=copy.deepcopy(keys)))
    return members


async def current_seq(member: Member) -> int:
    reply = await member.actor.call("GET", "/v1/groups")
    (group,) = reply.body["groups"]
    return int(group["last_seq"])


async def listen(
    member: Member, http: aiohttp.ClientSession, deadline: float, progress: asyncio.Condition
) -> None:
    """Keep a socket open on the member's instance, resuming from the cursor after any close."""
    group = b32e(member.view.group)
    headers = {"Authorization": f"Bearer {member.actor.token}"}
    while member.messages < TOTAL:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {member.messages} of {TOTAL} messages arrived in time")
        url = member.instance.url
        try:
            if not url:
                raise aiohttp.ClientConnectionError("instance is restarting")
            ws = await http.ws_connect(url + "/v1/ws", headers=headers)
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        member.socket = ws
        member.connections += 1
        try:
            await ws.send_json({"type": "subscribe", "cursors": {group: member.cursor}})
            await drain(member, ws, deadline, progress)
        finally:
            member.socket = None
            await ws.close()


async def drain(
    member: Member,
    ws: aiohttp.ClientWebSocketResponse,
    deadline: float,
    progress: asyncio.Condition,
) -> None:
    """Read until every message is in or the socket closes (by either side)."""
    while member.messages < TOTAL:
        message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if message.type != aiohttp.WSMsgType.TEXT:
            return
        frame = json.loads(message.data)
        for value in frame["events"] if frame["type"] == "batch" else [frame]:
            if value["type"] == "event":
                assert value["seq"] > member.cursor, "an event arrived twice or out of order"
                member.cursor = value["seq"]
                member.events.append(value)
            else:
                assert value["type"] in ("ready", "subscribed"), value
                member.subscribed = member.subscribed or value["type"] == "subscribed"
        async with progress:
            progress.notify_all()


async def send_all(member: Member, sealed: list[SealedMessage]) -> None:
    for message in sealed:  # one after another: the sender's order is the counter's
        reply = await member.view.send_sealed(message)
        assert reply.status == 201, reply.body


def opened(member: Member, keys: dict[bytes, IdentityPublicKey]) -> list[tuple[bytes, int, str]]:
    """Every message the member received, verified and decrypted: (sender, counter, text)."""
    assert member.reader is not None
    result = []
    for event in member.events:
        if event["kind"] != "message":
            continue
        fields = decode(b64d(event["body"]))
        assert isinstance(fields, dict)
        message = SealedMessage(fields["header"], fields["ciphertext"], fields["signature"])  # type: ignore[arg-type]
        header = Header.decode(message.header)
        verify_message(message, keys[header.sender])
        key = member.reader.chains[header.sender].key_for(header.counter)
        result.append((header.sender, header.counter, str(open_message(message, key)["text"])))
    return result


@pytest.mark.spokes_settings(
    rate_redeem_per_source=GENEROUS,
    rate_login_per_source=GENEROUS,
    rate_login_per_member=GENEROUS,
)
async def test_every_member_gets_every_message_once_in_order_across_reconnect_and_restart(
    instances: tuple[Instance, Instance], http: aiohttp.ClientSession
) -> None:
    steady, restarted = instances
    members = await form_cell(http, steady)
    # Half the sockets live on the instance that will be restarted; every
    # message is posted to the steady one, as a proxy would keep doing.
    for member in members[MEMBERS // 2 :]:
        member.instance = restarted
    start = await current_seq(members[0])
    for member in members:
        member.cursor = start
    sealed = [[m.view.seal(f"{i}:{n}") for n in range(PER_MEMBER)] for i, m in enumerate(members)]

    deadline = time.monotonic() + DEADLINE_S
    progress = asyncio.Condition()

    async def until_everyone_has(count: int) -> None:
        async with progress:
            await progress.wait_for(lambda: min(m.messages for m in members) >= count)

    listeners = [asyncio.create_task(listen(m, http, deadline, progress)) for m in members]
    async with asyncio.timeout(10), progress:  # "subscribed" came back on every socket
        await progress.wait_for(lambda: all(m.socket and m.subscribed for m in members))
    senders = [asyncio.create_task(send_all(m, s)) for m, s in zip(members, sealed, strict=True)]

    async with asyncio.timeout(DEADLINE_S):
        await until_everyone_has(TOTAL // 4)
        # Client side: three sockets on the steady instance hang up and resume.
        for member in members[:3]:
            if member.socket is not None:
                await member.socket.close()
        await until_everyone_has(TOTAL // 2)
        # Server side: the other instance goes away with five sockets on it, and
        # a new one takes its place; its clients resume there.
        await restarted.stop()
        in_flight_at_restart = TOTAL - min(m.messages for m in members)
        await asyncio.sleep(0.2)
        await restarted.start()
        await asyncio.gather(*senders)
        await asyncio.gather(*listeners)

    assert in_flight_at_restart > 0 and restarted.started == 2
    assert all(m.connections >= 2 for m in members[:3] + members[MEMBERS // 2 :])
    keys = {m.actor.id: m.actor.key.public_key() for m in members}
    for member in members:
        got = opened(member, keys)
        assert len(got) == TOTAL
        assert len({(sender, counter) for sender, counter, _ in got}) == TOTAL  # exactly once
        for i, sender in enumerate(members):
            theirs = [(counter, text) for who, counter, text in got if who == sender.actor.id]
            assert theirs == [(n, f"{i}:{n}") for n in range(PER_MEMBER)]  # in the sender's order
        seqs = [e["seq"] for e in member.events]
        assert seqs == list(range(start + 1, start + len(seqs) + 1))  # no gap, no repeat
