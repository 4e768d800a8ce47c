"""End to end: one home folder, many `spokes` processes at once, and answers that get lost.

DESIGN §7 (one writer per keystore): sends and a watch running together from
one home never use a message counter twice, whatever order they save in; a
send whose answer is lost is posted again byte for byte, so the cell reads
it once and the sender's next message is accepted with no false alarm.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from client.state import StateFile
from crypto.encoding import decode
from crypto.messages import Header
from tests.conftest import run_sync
from tests.e2e.test_cells import admit, cell_of_three, texts
from tests.e2e.test_member_flow import COMMAND, ENV, invite, join, run

SENDS = 6


def spokes(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args, "--home", str(home), "--json"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stored_headers(database_url: str, group: bytes) -> list[tuple[Header, bytes]]:
    """Every message the server keeps for the group: its header and ciphertext."""

    async def go() -> list[tuple[Header, bytes]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT body FROM group_events WHERE group_id = $1 AND kind = 'message'", group
            )
        finally:
            await conn.close()
        found = []
        for row in rows:
            body = decode(bytes(row["body"]))
            assert isinstance(body, dict)
            header, ciphertext = body["header"], body["ciphertext"]
            assert isinstance(header, bytes) and isinstance(ciphertext, bytes)
            found.append((Header.decode(header), ciphertext))
        return found

    return run_sync(go())


def test_sends_and_a_watch_from_one_home_never_reuse_a_counter(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b, c = cell_of_three(tmp_path, url)
    run(founder, "send", "cell", "before")
    assert texts(run(b, "read", "cell")) == ["before"]
    assert texts(run(c, "read", "cell")) == ["before"]

    # A watch and several sends, all from the founder's home at once.
    watcher = spokes(founder, "watch", "--count", str(SENDS), "--timeout", "90")
    senders = [spokes(founder, "send", "cell", f"at once {n}") for n in range(SENDS)]
    sent = []
    for n, process in enumerate(senders):
        out, err = process.communicate(timeout=120)
        lines = out.splitlines()
        assert len(lines) == 1, (out, err)
        result = json.loads(lines[0])
        if process.returncode == 0:
            sent.append(f"at once {n}")
        else:  # failing is allowed only cleanly, and never as a used counter
            assert process.returncode == 1 and "error" in result, (out, err)
            assert result["error"]["code"] not in ("replayed_counter", "verification_failed")
    assert len(sent) >= SENDS - 1, "the lock makes sends wait, not fail"
    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, err
    *watched, end = [json.loads(line) for line in out.splitlines()]
    assert end["received"] == len(watched)
    assert len({m["message_id"] for m in watched}) == len(watched), "the watch printed twice"

    # The watch stopped last: its state written back must not hand out a used counter.
    run(founder, "send", "cell", "after the watch")
    sent = ["before", *sent, "after the watch"]

    state = StateFile(founder).read(ENV["SPOKES_PASSPHRASE"])
    assert state.cell_id is not None and state.outbox == ()
    headers = stored_headers(database_url, state.cell_id)
    mine = [(h, ct) for h, ct in headers if h.sender == state.member_id]
    pairs = [(h.epoch, h.sender, h.counter) for h, _ in mine]
    assert len(pairs) == len(set(pairs)) == len(sent), "a (key, nonce) pair was used twice"
    assert len({ct for _, ct in mine}) == len(mine)
    record = state.groups[state.cell_id]
    for epoch in {h.epoch for h, _ in mine}:
        chain = record.epochs[epoch].sending
        assert chain is not None
        assert chain.counter > max(h.counter for h, _ in mine if h.epoch == epoch)

    # The other members read every message once, with no alarm.
    for home in (b, c):
        read = texts(run(home, "read", "cell", "--since", "0"))
        assert sorted(read) == sorted(sent)
        assert run(home, "read", "cell")["messages"] == []


class LosingProxy:
    """A TCP relay in front of the server that can lose the answers to message posts.

    The server has accepted the message by the time its answer is lost: this is
    the connection dropping on the way back, not a refusal.
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.to_lose = 0  # answers to message posts still to lose
        self.lost = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        start = asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        posted = False  # a message post on this connection waits for its answer

        async def upstream() -> None:
            nonlocal posted
            while data := await reader.read(65536):
                if b"POST /v1/groups/" in data and b"/messages HTTP/" in data:
                    posted = True
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            nonlocal posted
            while data := await up_reader.read(65536):
                if posted and self.to_lose > 0:
                    self.to_lose -= 1
                    self.lost += 1
                    break
                posted = False
                writer.write(data)
                await writer.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)

    def close(self) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def proxy(served: tuple[str, str]) -> Iterator[LosingProxy]:
    relay = LosingProxy(served[0])
    yield relay
    relay.close()


def test_a_send_whose_answer_is_lost_is_read_once_and_the_next_is_accepted(
    tmp_path: Path, served: tuple[str, str], proxy: LosingProxy
) -> None:
    url, database_url = served
    # The founder talks to the server through the relay; the newcomer directly.
    founder = tmp_path / "founder"
    run(founder, "init", "--server", proxy.url)
    run(
        founder,
        "network",
        "create",
        "--name",
        "Riverside",
        "--vouches",
        "1",
        "--probation-days",
        "0",
    )
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    admit(founder, b_joined)
    run(founder, "send", "cell", "one")

    # One answer lost: the client posts the same bytes again and is told it was stored.
    proxy.to_lose = 1
    run(founder, "send", "cell", "two")
    assert proxy.lost == 1

    # Every answer lost: the send fails cleanly and keeps the sealed message.
    proxy.to_lose = 100
    failed = run(founder, "send", "cell", "three", expect="send_unconfirmed")
    assert "next `spokes send`" in failed["error"]["message"]
    proxy.to_lose = 0
    state = StateFile(founder).read(ENV["SPOKES_PASSPHRASE"])
    assert len(state.outbox) == 1
    assert texts(run(b, "read", "cell")) == ["one", "two", "three"]  # it had arrived

    # The next send posts it again first (answered as stored), then its own.
    run(founder, "send", "cell", "four")
    state = StateFile(founder).read(ENV["SPOKES_PASSPHRASE"])
    assert state.outbox == ()
    assert texts(run(b, "read", "cell")) == ["four"], "no false 'dropped message' alarm"
    assert texts(run(b, "read", "cell", "--since", "0")) == ["one", "two", "three", "four"]
    assert state.cell_id is not None
    assert len(stored_headers(database_url, state.cell_id)) == 4, "the cell holds each text once"
