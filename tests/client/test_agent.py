"""Tests of client.agent and `spokes unlock` / `spokes lock`, with the real agent process.

No server is needed: `init` makes a keystore and `whoami` opens it. Each
command runs as the `spokes` a person types (tests/e2e/test_member_flow.py's
COMMAND), in a session of its own with no terminal and standard input on
/dev/null, so a command that needs the passphrase and has none fails with
no_passphrase instead of waiting at a prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import agent, passphrases
from client.cli.setup import duration
from client.state import StateFile
from crypto.keystore import DEFAULT_PARAMS, read_params
from tests.e2e.test_member_flow import COMMAND, ENV

PASSPHRASE = ENV["SPOKES_PASSPHRASE"]
LOCKED_ENV = {k: v for k, v in ENV.items() if k != "SPOKES_PASSPHRASE"}
NOBODY = 65534


def spokes(home: Path, *args: str, env: dict[str, str] = ENV) -> tuple[int, dict[str, Any]]:
    process = subprocess.run(
        [*COMMAND, *args, "--home", str(home), "--json"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # no controlling terminal: getpass can't ask anyone
    )
    lines = process.stdout.splitlines()
    assert len(lines) == 1, f"stdout: {process.stdout!r}\nstderr: {process.stderr}"
    result: dict[str, Any] = json.loads(lines[0])
    return process.returncode, result


def ok(home: Path, *args: str, env: dict[str, str] = ENV) -> dict[str, Any]:
    code, result = spokes(home, *args, env=env)
    assert code == 0, result
    return result


def refused(home: Path, *args: str, env: dict[str, str] = ENV) -> str:
    code, result = spokes(home, *args, env=env)
    assert code == 1, result
    assert result["error"]["message"]
    error_code: str = result["error"]["code"]
    return error_code


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    made = tmp_path / "h"
    ok(made, "init", "--server", "http://127.0.0.1:9")
    yield made
    agent.stop(made)  # never leave an agent behind a test


def test_while_unlocked_no_command_needs_the_passphrase(home: Path) -> None:
    assert refused(home, "whoami", env=LOCKED_ENV) == "no_passphrase"
    unlocked = ok(home, "unlock", "--for", "5m")
    assert unlocked["seconds"] == 300 and unlocked["replaced"] is False
    assert abs(unlocked["unlocked_until"] - (time.time() + 300)) < 30
    me = ok(home, "whoami", env=LOCKED_ENV)
    assert me["member_id"]
    # Unlocking again (here for longer) needs no passphrase either, and replaces the agent.
    again = ok(home, "unlock", "--for", "1h", env=LOCKED_ENV)
    assert again["replaced"] is True and again["agent_pid"] != unlocked["agent_pid"]
    assert ok(home, "whoami", env=LOCKED_ENV) == me


def test_lock_wipes_the_key_and_the_passphrase_is_needed_again(home: Path) -> None:
    ok(home, "unlock")
    assert agent.ask_key(home) is not None
    assert ok(home, "lock") == {"was_running": True, "stale_socket_removed": False}
    assert not agent.socket_path(home).exists()
    assert agent.ask_key(home) is None
    assert refused(home, "whoami", env=LOCKED_ENV) == "no_passphrase"
    assert ok(home, "lock") == {"was_running": False, "stale_socket_removed": False}
    assert ok(home, "whoami")["member_id"]  # with the passphrase, as before


def test_the_agent_forgets_the_key_when_its_time_is_up(home: Path) -> None:
    ok(home, "unlock", "--for", "2s")
    assert ok(home, "whoami", env=LOCKED_ENV)["member_id"]
    deadline = time.monotonic() + 10
    while agent.socket_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not agent.socket_path(home).exists()
    assert agent.ask_key(home) is None
    assert refused(home, "whoami", env=LOCKED_ENV) == "no_passphrase"


def test_the_socket_is_mode_0600_in_a_0700_home(home: Path) -> None:
    ok(home, "unlock")
    path = agent.socket_path(home)
    assert stat.S_ISSOCK(path.lstat().st_mode)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert path.lstat().st_uid == os.getuid()


def test_the_agent_serves_the_key_that_opens_the_keystore(home: Path) -> None:
    ok(home, "unlock")
    held = agent.ask_key(home)
    assert held is not None
    store = StateFile(home)
    assert store.read(held.key).member_id == store.read(PASSPHRASE).member_id


def test_sigterm_wipes_and_removes_the_socket(home: Path) -> None:
    pid = ok(home, "unlock")["agent_pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while agent.socket_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not agent.socket_path(home).exists()
    assert refused(home, "whoami", env=LOCKED_ENV) == "no_passphrase"


def test_a_stale_socket_falls_back_to_the_passphrase_and_is_cleaned_up(home: Path) -> None:
    pid = ok(home, "unlock")["agent_pid"]
    os.kill(pid, signal.SIGKILL)  # no chance to remove its socket
    time.sleep(0.2)
    assert agent.socket_path(home).exists()
    assert refused(home, "whoami", env=LOCKED_ENV) == "no_passphrase"
    assert ok(home, "whoami")["member_id"]  # the passphrase still works
    assert ok(home, "lock") == {"was_running": False, "stale_socket_removed": True}
    pid = ok(home, "unlock")["agent_pid"]
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert ok(home, "unlock")["replaced"] is False  # a new agent over the stale socket
    assert ok(home, "whoami", env=LOCKED_ENV)["member_id"]


def test_a_socket_that_never_answers_falls_back_and_lock_says_so(home: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(agent.socket_path(home)))
        silent.listen(4)  # connections wait in the backlog; nothing is ever answered
        assert agent.ask_key(home) is None
        assert ok(home, "whoami")["member_id"]  # with the passphrase
        assert refused(home, "lock") == "agent_unreachable"
    agent.socket_path(home).unlink()


def test_removing_the_socket_stops_the_agent(home: Path) -> None:
    pid = ok(home, "unlock")["agent_pid"]
    agent.socket_path(home).unlink()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_the_peer_check_refuses_a_socket_of_another_uid() -> None:
    """The check itself, on a socket pair: the kernel reports this process's uid at
    the other end, so it passes for our uid and fails for any other (a stubbed
    expected uid). The next test shows it against a real process of another user."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert agent.peer_allowed(left, os.getuid())
        assert not agent.peer_allowed(left, os.getuid() + 1)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a process as another user")
def test_another_users_process_is_refused(tmp_path: Path) -> None:
    """Run as root (the test machines are): a forked child that became `nobody`
    (uid 65534, os.setuid) asks the agent for the key. First through the file
    modes as `unlock` leaves them: the 0700 home and 0600 socket stop it
    before the agent sees it. Then with both opened up on purpose (0711 home,
    0666 socket) the agent itself answers "refused" from SO_PEERCRED, and
    still serves its own user afterwards."""
    base = Path(tempfile.mkdtemp(prefix="spokes-agent-"))  # not under tmp_path: others may pass
    home = base / "h"
    try:
        os.chmod(base, 0o711)  # noqa: S103 - opened on purpose, see the docstring
        ok(home, "init", "--server", "http://127.0.0.1:9")
        ok(home, "unlock")
        path = agent.socket_path(home)
        assert _as_nobody(path) == "PermissionError"
        os.chmod(home, 0o711)  # noqa: S103
        os.chmod(path, 0o666)  # noqa: S103
        assert _as_nobody(path) == "R"
        assert ok(home, "whoami", env=LOCKED_ENV)["member_id"]
    finally:
        agent.stop(home)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _as_nobody(path: Path) -> str:
    """What a process running as `nobody` gets when it asks the agent at `path` for the key."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, ask, report, and never return into pytest
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(5)
                conn.connect(str(path))
                try:
                    conn.sendall(agent.ASK_KEY)
                except BrokenPipeError:
                    pass  # a refused peer may be answered and hung up on before it asks
                answer = conn.recv(100)
            said = answer[:1].decode("ascii", "replace") if len(answer) <= 1 else "THE KEY"
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which asserts
            said = type(exc).__name__
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as told:
        said = told.read().decode()
    os.waitpid(pid, 0)
    return said


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().split(")")[-1].split()[0] != "Z"  # a zombie is gone
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("2H", 7200), ("24h", 86400)],
)
def test_unlock_durations_are_read_with_their_unit(text: str, seconds: int) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "0s", "25h", "ten minutes", "5m and", ""])
def test_unlock_durations_without_a_unit_or_out_of_bounds_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


# New passphrases.


def test_a_weak_passphrase_is_refused_with_the_reason_and_nothing_is_made(tmp_path: Path) -> None:
    home = tmp_path / "weak"
    weak = {**ENV, "SPOKES_PASSPHRASE": "abc"}
    code, result = spokes(home, "init", "--server", "http://127.0.0.1:9", env=weak)
    assert code == 1 and result["error"]["code"] == "weak_passphrase"
    message = result["error"]["message"]
    assert "too easy to guess" in message and 'Sequences like "abc"' in message
    assert "--generate-passphrase" in message
    assert not home.exists()
    code, result = spokes(home, "join", "abcd-efgh", "--server", "http://127.0.0.1:9", env=weak)
    assert code == 1 and result["error"]["code"] == "weak_passphrase"
    assert not home.exists()


def test_a_generated_passphrase_is_shown_once_and_opens_the_keystore(tmp_path: Path) -> None:
    home = tmp_path / "gen"
    made = ok(home, "init", "--server", "http://127.0.0.1:9", "--generate-passphrase")
    words = made["passphrase"].split(" ")
    assert len(words) == 6 and set(words) <= set(passphrases.wordlist())
    assert StateFile(home).read(made["passphrase"]).member_id
    assert made["kdf"]["test_only"] is True  # SPOKES_INSECURE_TEST_KDF=1 in these tests
    passphrases.check_strength(made["passphrase"])


def test_join_into_a_home_with_a_keystore_keeps_its_passphrase(home: Path) -> None:
    args = ("join", "abcd-efgh", "--server", "http://127.0.0.1:9", "--generate-passphrase")
    assert refused(home, *args) == "already_initialized"
    assert StateFile(home).read(PASSPHRASE).member_id


def test_generated_passphrases_differ_and_are_strong() -> None:
    made = {passphrases.generate() for _ in range(20)}
    assert len(made) == 20
    for phrase in list(made)[:3]:
        passphrases.check_strength(phrase)
    assert len(set(passphrases.wordlist())) == 7776


def test_init_says_what_its_slow_steps_do_in_plain_mode(tmp_path: Path) -> None:
    process = subprocess.run(
        [*COMMAND, "init", "--server", "http://127.0.0.1:9", "--home", str(tmp_path / "p")],
        env={k: v for k, v in ENV.items() if k != "SPOKES_INSECURE_TEST_KDF"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    assert "Measuring this machine to set the passphrase cost… t=" in process.stderr
    assert "Generating your keys" in process.stderr
    blob = (tmp_path / "p" / "keystore").read_bytes()
    chosen = read_params(blob)
    assert chosen.memory_kib >= DEFAULT_PARAMS.memory_kib
    assert f"t={chosen.time_cost}, m={chosen.memory_kib // 1024} MiB" in process.stderr
