"""End to end: `spokes watch` stays live across server restarts and keeps its own cursor.

A member watches while the server is stopped (gracefully: the socket closes
with 1001, then connections are refused) and killed (the socket just
drops), each time started again on the same port and database: the watch
connects again by itself and shows every message once, in order. `read`
and `watch` each have their own cursor, and a watch ends by saying how many
messages it showed.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_cells import admit, texts
from tests.e2e.test_member_flow import COMMAND, ENV, found, invite, join, run

WAIT_S = 30.0  # the most any step below waits for a line


class Watcher:
    """`spokes watch` as a subprocess, its stdout and stderr read line by line as they come."""

    def __init__(self, home: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*COMMAND, "watch", *args, "--home", str(home)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: queue.Queue[tuple[float, str]] = queue.Queue()
        self.err: queue.Queue[tuple[float, str]] = queue.Queue()
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def next_line(self, lines: queue.Queue[tuple[float, str]]) -> tuple[float, str]:
        try:
            return lines.get(timeout=WAIT_S)
        except queue.Empty:
            self.process.kill()
            raise AssertionError(f"no line from the watch in {WAIT_S} s") from None

    def messages(self, n: int) -> list[dict[str, Any]]:
        return [json.loads(self.next_line(self.out)[1]) for _ in range(n)]

    def said(self, start: str) -> float:
        """Wait for a stderr line that starts with `start`; when it came."""
        while True:
            at, line = self.next_line(self.err)
            if line.startswith(start):
                return at

    def end(self) -> list[str]:
        """Wait for the watch to end by itself; the rest of its stdout."""
        self.process.wait(timeout=WAIT_S)
        rest = []
        while True:
            at, line = self.next_line(self.out)
            if line == "":
                return rest
            rest.append(line)


def _pump(stream: IO[str], lines: queue.Queue[tuple[float, str]]) -> None:
    for line in stream:
        lines.put((time.monotonic(), line.rstrip("\n")))
    lines.put((time.monotonic(), ""))  # EOF


@pytest.fixture
def two_members(
    tmp_path: Path, spawn_server: Any, database_url: str
) -> tuple[Path, Path, Any, str]:
    server = spawn_server("--database-url", database_url)
    founder = found(tmp_path, server.url, "--vouches", "1", "--probation-days", "0")
    b, b_joined = join(tmp_path, "b", server.url, invite(founder))
    admit(founder, b_joined)
    return founder, b, server, database_url


def test_watch_resumes_across_server_restarts_with_no_gap_or_duplicate(
    two_members: tuple[Path, Path, Any, str], spawn_server: Any
) -> None:
    founder, b, server, database_url = two_members
    port = str(urlsplit(server.url).port)
    sent = ["one", "two", "three", "four", "five", "six"]
    watcher = Watcher(b, "--json", "--count", str(len(sent)), "--timeout", "120")
    run(founder, "send", "cell", sent[0])
    run(founder, "send", "cell", sent[1])
    shown = watcher.messages(2)

    # A graceful restart: the socket closes (1001), then connections are refused a while.
    server.stop()
    watcher.said("Lost the server")
    time.sleep(1.0)  # the watch tries (and fails) to connect meanwhile
    server = spawn_server("--database-url", database_url, "--port", port)
    up = time.monotonic()
    back = watcher.said("Back after")
    run(founder, "send", "cell", sent[2])
    run(founder, "send", "cell", sent[3])
    shown += watcher.messages(2)

    # A crash: the socket just drops.
    server.process.kill()
    server.process.wait()
    watcher.said("Lost the server")
    server = spawn_server("--database-url", database_url, "--port", port)
    up_again = time.monotonic()
    back_again = watcher.said("Back after")
    run(founder, "send", "cell", sent[4])
    run(founder, "send", "cell", sent[5])
    shown += watcher.messages(2)

    (end,) = watcher.end()
    assert watcher.process.returncode == 0
    assert json.loads(end) == {"received": len(sent), "reason": "count", "reconnects": 2}
    assert [m["text"] for m in shown] == sent
    cursors = [m["cursor"] for m in shown]
    assert cursors == sorted(set(cursors)), "a message shown twice or out of order"
    print(
        f"watch back {back - up:.2f} s after a graceful restart, "
        f"{back_again - up_again:.2f} s after a crash (from the server listening again)"
    )

    # What the watch showed is still new to `read`, and read's cursor is its own.
    assert texts(run(b, "read", "cell")) == sent
    assert run(b, "read", "cell")["messages"] == []
    run(founder, "send", "cell", "seven")
    assert texts(run(b, "read", "cell")) == ["seven"]
    again = Watcher(b, "--json", "--count", "1", "--timeout", "30")
    assert [m["text"] for m in again.messages(1)] == ["seven"]  # read it, not watched it yet
    assert json.loads(again.end()[0])["reason"] == "count"


def test_watch_says_how_many_messages_it_showed_when_its_time_is_up(
    two_members: tuple[Path, Path, Any, str],
) -> None:
    founder, b, _, _ = two_members
    plain = Watcher(b, "--timeout", "3")
    run(founder, "send", "cell", "hello")
    _, line = plain.next_line(plain.out)
    assert line.endswith(": hello")
    assert plain.said("Watched for ") > 0
    assert plain.end() == []  # stdout holds only the messages
    assert plain.process.returncode == 0

    quiet = Watcher(b, "--json", "--timeout", "0.5")
    assert [json.loads(line) for line in quiet.end()] == [
        {"received": 0, "reason": "timeout", "reconnects": 0}
    ]
