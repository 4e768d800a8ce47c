"""Argon2id derivations per command, counted: at most one each, none while unlocked.

The commands run in-process through client.cli.main against a real server
(a `spokes-server` process); `unlock` starts the real agent process. What
is replaced is only a counter around crypto.keystore's one derivation
function, `_derive_key`, which every derivation goes through (`derive_key`
for an existing keystore, `new_key` for a new one, calibration's
`seal_keystore`); it calls the real function. While unlocked the
passphrase is unset and any prompt fails the test.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crypto.keystore
from client import agent
from client.cli import main
from tests.e2e.test_member_flow import ENV

PASSPHRASE = ENV["SPOKES_PASSPHRASE"]


@pytest.fixture
def server_url(spawn_server: Any, database_url: str) -> str:
    url: str = spawn_server("--database-url", database_url).url
    return url


class Counted:
    """Runs `spokes` in-process and counts the Argon2id derivations each command makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.capsys = capsys
        self.derivations = 0
        real = crypto.keystore._derive_key

        def counting(*args: Any, **kwargs: Any) -> bytes:
            self.derivations += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(crypto.keystore, "_derive_key", counting)
        monkeypatch.setenv("SPOKES_INSECURE_TEST_KDF", "1")
        self.counts: dict[str, int] = {}

    def __call__(self, home: Path, *args: str) -> dict[str, Any]:
        before = self.derivations
        code = main(["--home", str(home), *args, "--json"])
        out = self.capsys.readouterr().out
        assert code == 0, f"{args}: {out}"
        self.counts[" ".join(a for a in args if not a.startswith(("/", "http")))[:40]] = (
            self.derivations - before
        )
        result: dict[str, Any] = json.loads(out.splitlines()[-1])
        return result


@pytest.fixture
def spokes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Counted]:
    counted = Counted(monkeypatch, capsys)
    yield counted
    for home in tmp_path.iterdir():
        agent.stop(home)


def cell_of_two(spokes: Counted, tmp_path: Path, url: str) -> tuple[Path, Path, dict[str, Any]]:
    founder, sam = tmp_path / "f", tmp_path / "s"
    spokes(founder, "init", "--server", url)
    spokes(founder, "network", "create", "--name", "Riverside", "--cell-min", "2")
    code = spokes(founder, "invite", "create")["code"]
    joined = spokes(sam, "join", code, "--server", url)
    spokes(founder, "pending")
    spokes(founder, "admit", joined["member_id"], "--safety-number", joined["safety_number"])
    return founder, sam, joined


def everyday(spokes: Counted, founder: Path, sam: Path, text: str) -> None:
    spokes(sam, "status")
    spokes(founder, "whoami")
    spokes(founder, "cells")
    spokes(sam, "profile", "set", "--name", "Sam")
    spokes(founder, "members", "cell")
    spokes(founder, "send", "cell", text)
    spokes(sam, "read", "cell")
    spokes(founder, "motions")
    spokes(founder, "invite", "create")


def test_each_command_derives_the_key_at_most_once(
    spokes: Counted, tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOKES_PASSPHRASE", PASSPHRASE)
    founder, sam, _ = cell_of_two(spokes, tmp_path, server_url)
    everyday(spokes, founder, sam, "hello")
    assert spokes.counts and max(spokes.counts.values()) <= 1, spokes.counts
    # Every command opened a keystore with the passphrase: exactly one each.
    assert set(spokes.counts.values()) == {1}, spokes.counts


def test_while_unlocked_commands_derive_nothing_and_ask_for_nothing(
    spokes: Counted, tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOKES_PASSPHRASE", PASSPHRASE)
    founder, sam, _ = cell_of_two(spokes, tmp_path, server_url)
    spokes(founder, "unlock", "--for", "10m")
    spokes(sam, "unlock", "--for", "10m")
    assert spokes.counts["unlock --for 10m"] == 1  # the one derivation, handed to the agent
    monkeypatch.delenv("SPOKES_PASSPHRASE")
    monkeypatch.setattr(getpass, "getpass", _no_prompt)
    spokes.counts.clear()
    everyday(spokes, founder, sam, "while unlocked")
    spokes(founder, "unlock", "--for", "1h")  # again, for longer: the agent's key
    assert set(spokes.counts.values()) == {0}, spokes.counts
    spokes(founder, "lock")
    assert agent.ask_key(founder) is None and agent.ask_key(sam) is not None


def _no_prompt(prompt: str = "", stream: Callable[..., Any] | None = None) -> str:
    raise AssertionError(f"asked for the passphrase while unlocked: {prompt!r}")
