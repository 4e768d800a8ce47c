"""End to end: people drive the real `spokes` command against a real server.

Each person has their own home folder; the server is `spokes-server serve`
as a subprocess on this test's PostgreSQL database. Every status asserted
here is the one the client computed from signed statements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crypto.invites import InviteCode

SPOKES = Path(sys.executable).parent / "spokes"
COMMAND = [str(SPOKES)] if SPOKES.exists() else [sys.executable, "-m", "client.cli"]
ENV = {
    **os.environ,
    "SPOKES_PASSPHRASE": "correct horse battery staple",
    "SPOKES_INSECURE_TEST_KDF": "1",
}

Spokes = Callable[..., dict[str, Any]]


def run(home: Path, *args: str, expect: str | None = None) -> dict[str, Any]:
    """Run `spokes ARGS --home HOME --json`; check exit status and the one JSON line."""
    process = subprocess.run(
        [*COMMAND, *args, "--home", str(home), "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = process.stdout.splitlines()
    assert len(lines) == 1, f"stdout: {process.stdout!r}\nstderr: {process.stderr}"
    result: dict[str, Any] = json.loads(lines[0])
    if expect is None:
        assert process.returncode == 0, f"{args}: {result}\n{process.stderr}"
    else:
        assert process.returncode == 1, f"{args}: {result}"
        assert result["error"]["code"] == expect, result
        assert result["error"]["message"]
    return result


@pytest.fixture
def server_url(spawn_server: Any, database_url: str) -> str:
    url: str = spawn_server("--database-url", database_url).url
    return url


def found(tmp_path: Path, url: str, *policy: str) -> Path:
    home = tmp_path / "founder"
    me = run(home, "init", "--server", url)
    assert len(me["fingerprint"].replace(" ", "")) == 30
    network = run(home, "network", "create", "--name", "Riverside", *policy)
    assert set(network) == {"network_id", "cell_id"}
    return home


def invite(home: Path) -> str:
    created = run(home, "invite", "create", "--note", "met at the march")
    assert created["expires_at"] > 0
    code: str = created["code"]
    return code


def join(tmp_path: Path, name: str, url: str, code: str) -> tuple[Path, dict[str, Any]]:
    home = tmp_path / name
    joined = run(home, "join", code, "--server", url)
    assert joined["status"] == "pending"
    return home, joined


def pending_entry(home: Path, member_id: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        p for p in run(home, "pending")["pending"] if p["member_id"] == member_id
    ]
    assert len(entries) == 1
    return entries[0]


def test_newcomer_is_admitted_after_safety_numbers_match_and_the_cell_vouches(
    tmp_path: Path, server_url: str
) -> None:
    founder = found(
        tmp_path,
        server_url,
        "--vouches",
        "2",
        "--probation-days",
        "30",
        "--invite-quota",
        "3",
        "--invite-expiry-hours",
        "72",
    )
    founder_id = run(founder, "whoami")["member_id"]
    assert run(founder, "status")["status"] == "active"

    b, b_joined = join(tmp_path, "b", server_url, invite(founder))
    pending = run(b, "status")
    # A newcomer's own view: the server shows them nothing of the cell yet.
    assert (pending["status"], pending["limited"], pending["certified"]) == ("pending", True, False)
    assert pending["vouches"] is None and pending["server_status"] == "pending"
    plain = subprocess.run(
        [*COMMAND, "status", "--home", str(b)], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 0 and "certificate: not signed yet" in plain.stdout
    seen = pending_entry(founder, b_joined["member_id"])
    assert seen["safety_number"] == b_joined["safety_number"]
    assert seen["invited_by"] == founder_id
    admitted = run(
        founder, "admit", b_joined["member_id"], "--safety-number", seen["safety_number"]
    )
    # A founding cell of one needs only the founder's certificate.
    assert admitted == {"member_id": b_joined["member_id"], "status": "probation"}
    b_status = run(b, "status")
    assert b_status["status"] == "probation" and b_status["verified"] is True
    assert b_status["probation_ends_at"] == b_status["admitted_at"] + 30 * 86400
    run(b, "invite", "create", expect="in_probation")

    c, c_joined = join(tmp_path, "c", server_url, invite(founder))
    c_id = c_joined["member_id"]
    digits = c_joined["safety_number"]
    wrong = ("1" if digits[0] != "1" else "2") + digits[1:]
    run(founder, "admit", c_id, "--safety-number", wrong, expect="safety_number_mismatch")
    assert pending_entry(founder, c_id)["stage"] == "awaiting-admission"
    assert run(c, "status")["status"] == "pending"

    dashed = c_joined["safety_number"].replace(" ", "-")
    assert run(founder, "admit", c_id, "--safety-number", dashed)["status"] == "pending"
    c_status = run(c, "status")  # C's certificate is signed, checked by C; vouches are not shown
    assert (c_status["status"], c_status["certified"], c_status["vouches"]) == (
        "pending",
        True,
        None,
    )
    assert pending_entry(founder, c_id)["vouches"] == 1  # the cell counts them
    assert run(b, "vouch", c_id) == {"member_id": c_id, "status": "probation"}
    assert run(c, "status")["status"] == "probation"
    assert run(b, "status", c_id)["status"] == "probation"


def test_branch_diversity_needs_a_vouch_from_outside_the_inviters_subtree(
    tmp_path: Path, server_url: str
) -> None:
    founder = found(tmp_path, server_url, "--vouches", "2", "--probation-days", "0")
    b, b_joined = join(tmp_path, "b", server_url, invite(founder))
    run(founder, "admit", b_joined["member_id"], "--safety-number", b_joined["safety_number"])
    assert run(b, "status")["status"] == "active"

    d, d_joined = join(tmp_path, "d", server_url, invite(b))
    d_id = d_joined["member_id"]
    assert (
        run(b, "admit", d_id, "--safety-number", d_joined["safety_number"])["status"] == "pending"
    )
    assert run(founder, "vouch", d_id)["status"] == "active"

    e, e_joined = join(tmp_path, "e", server_url, invite(b))
    e_id = e_joined["member_id"]
    founders_number = pending_entry(founder, e_id)["safety_number"]
    run(founder, "admit", e_id, "--safety-number", founders_number, expect="not_inviter")
    run(b, "admit", e_id, "--safety-number", e_joined["safety_number"])
    # B and the person B brought in can't admit a third on their own.
    assert run(d, "vouch", e_id)["status"] == "pending"
    e_status = run(b, "status", e_id)  # the cell counts E's vouches; E can't yet
    assert (e_status["status"], e_status["vouches"], e_status["needed"]) == ("pending", 2, 2)
    assert run(e, "status")["limited"] is True
    assert run(founder, "vouch", e_id)["status"] == "active"
    assert run(e, "status")["status"] == "active"


def test_bad_invite_codes_are_refused_and_write_nothing(tmp_path: Path, server_url: str) -> None:
    founder = found(tmp_path, server_url)
    code = invite(founder)
    letters = code.replace("-", "")
    typo = ("b" if letters[5] != "b" else "c").join((letters[:5], letters[6:]))

    stranger = tmp_path / "stranger"
    run(stranger, "join", typo, "--server", server_url, expect="invalid_code")
    run(
        stranger,
        "join",
        InviteCode.generate().text,
        "--server",
        server_url,
        expect="invite_not_found",
    )
    assert not stranger.exists() or not any(stranger.iterdir())

    join(tmp_path, "b", server_url, code)
    run(stranger, "join", code, "--server", server_url, expect="invite_used")
    assert not (stranger / "keystore").exists()
    run(stranger, "status", expect="not_initialized")


def test_usage_errors_exit_2_with_one_json_object(tmp_path: Path) -> None:
    process = subprocess.run(
        [*COMMAND, "admit", "--json", "--home", str(tmp_path)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert json.loads(process.stdout)["error"]["code"] == "usage"


def test_every_command_has_help() -> None:
    # The list is the CLI test's: every command the areas register.
    from tests.client.test_cli import COMMANDS

    for args in COMMANDS:
        process = subprocess.run(
            [*COMMAND, *args, "--help"], capture_output=True, text=True, timeout=60
        )
        assert process.returncode == 0 and "--json" in process.stdout, args
