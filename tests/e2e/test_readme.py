"""The README's walk-throughs, run as written, in order, against a live server.

Every indented block that follows a `<!-- walk-through -->` line in README.md
is read here and its `spokes` commands are run as a person would type them
(with `--json` added, so that what they print can be read back). A word in
capitals stands for what an earlier command printed: CODE is the code of the
last invite, NAME_ID and NAME_NUMBER the member id and safety number that
`spokes --home ~/name join` printed (NAME_ID also what `whoami` printed),
MOTION_ID the motion a split or an election last opened, COUNCIL_ID the
council `council create` founded.
The README's server address and `~/` are mapped to this test's server and
folder. So the README can't drift from the code again.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_member_flow import COMMAND, ENV

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = "<!-- walk-through -->"
README_SERVER = "http://127.0.0.1:8080"


def walk_through() -> list[str]:
    """The commands of every marked block, in order, continuation lines joined."""
    lines = README.read_text("utf-8").splitlines()
    commands: list[str] = []
    marked = False
    in_block = False
    for line in lines:
        if line.strip() == MARK:
            marked, in_block = True, False
            continue
        if marked and line.startswith("    "):
            in_block = True
            text = line.strip()
            if text.startswith("#") or not text:
                continue
            if commands and commands[-1].endswith("\\"):
                commands[-1] = commands[-1][:-1] + " " + text
            else:
                commands.append(text)
        elif marked and in_block and line.strip():
            marked = in_block = False
    return commands


def test_the_readme_has_a_walk_through_to_run() -> None:
    commands = walk_through()
    assert len(commands) >= 20
    assert all(c.startswith("spokes ") for c in commands), commands


class Reader:
    """Plays the person reading the README: types each command, notes what it printed."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.words: dict[str, str] = {}

    def argv(self, command: str) -> list[str]:
        text = bare(command).replace(README_SERVER, self.url)
        for word, value in sorted(self.words.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"\b{word}\b", value, text)
        left = re.findall(r"\b[A-Z][A-Z_]*_(?:ID|NUMBER)\b|\bCODE\b|\bMOTION_ID\b", text)
        assert not left, f"{command!r}: nothing printed {left} before this command"
        words = shlex.split(text)
        assert words[0] == "spokes"
        return [str(self.tmp_path / w[2:]) if w.startswith("~/") else w for w in words[1:]]

    def run(self, command: str) -> dict[str, Any]:
        argv = self.argv(command)
        process = subprocess.run(
            [*COMMAND, *argv, "--json"], env=ENV, capture_output=True, text=True, timeout=120
        )
        assert process.returncode == 0, f"{command}\n{process.stdout}\n{process.stderr}"
        result: dict[str, Any] = json.loads(process.stdout.splitlines()[-1])
        self.note(argv, result)
        return result

    def note(self, argv: list[str], result: dict[str, Any]) -> None:
        if argv[2:4] == ["invite", "create"]:
            self.words["CODE"] = result["code"]
        elif argv[2] == "join":
            name = Path(argv[1]).name.upper()
            self.words[f"{name}_ID"] = result["member_id"]
            self.words[f"{name}_NUMBER"] = result["safety_number"]
        elif argv[2] == "whoami":
            self.words[f"{Path(argv[1]).name.upper()}_ID"] = result["member_id"]
        elif argv[2:4] == ["cell", "split"] or argv[2] in ("elect", "recall", "expel", "freeze"):
            self.words["MOTION_ID"] = result["motion_id"]
        elif argv[2:4] == ["council", "create"]:
            self.words["COUNCIL_ID"] = result["group_id"]
        elif argv[2] == "send":
            self.words["SEQ"] = str(result["cursor"])
        elif argv[2] == "alert" and argv[3] not in ("confirm", "retract"):
            self.words["ALERT_ID"] = result["alert_id"]


def bare(command: str) -> str:
    """The command without its trailing comment."""
    return command.split("  #", 1)[0].strip()


@pytest.fixture
def server_url(spawn_server: Any, database_url: str) -> str:
    url: str = spawn_server("--database-url", database_url).url
    return url


def test_the_readme_walk_through_runs_as_written(tmp_path: Path, server_url: str) -> None:
    reader = Reader(tmp_path, server_url)
    results = [(bare(command), reader.run(command)) for command in walk_through()]
    said = {command: result for command, result in results}
    # What the prose around the commands claims, checked.
    statuses = [r.get("status") for c, r in results if " admit " in c or " vouch " in c]
    assert statuses[:3] == ["probation", "pending", "probation"], statuses
    sam = next(r for c, r in results if c.startswith("spokes --home ~/sam status"))
    assert sam["status"] == "probation"
    read = said["spokes --home ~/alex read cell"]
    assert [m["text"] for m in read["messages"]] == ["meeting moved to Thursday"]
    assert [m["text"] for m in said["spokes --home ~/sam read cell"]["messages"]] == [
        "new cell, new key"
    ]
    kept = said["spokes --home ~/sam read cell --history"]["messages"]
    assert [m["text"] for m in kept] == ["meeting moved to Thursday", "new cell, new key"]
    assert kept[0]["group_id"] != kept[1]["group_id"]  # the old cell, then the new one
    signed = [r["status"] for c, r in results if " sign " in c]
    # The split, the founder's election, Max's expulsion, Lee's freeze.
    assert signed == ["open", "done", "done", "done", "done"]
    tree = said["spokes --home ~/founder tree"]
    founder_id = said["spokes --home ~/founder whoami"]["member_id"]
    assert tree["spokesperson"] == founder_id
    (council,) = tree["councils"]
    assert (council["level"], council["seats"], council["name"]) == (1, 1, "Riverside spokes")
    relayed = said["spokes --home ~/founder relay cell SEQ --to COUNCIL_ID"]
    assert relayed["group"] == council["group"]
    (alert,) = said["spokes --home ~/alex alerts"]["alerts"]
    assert (alert["text"], alert["scope"], alert["confirmed"]) == (
        "police at the north entrance",
        "network",
        True,
    )
    assert (alert["reached"], alert["acknowledged"]) == (2, 1)  # the founder acknowledged
    # When you find an informant; when a member is arrested.
    (motion,) = said["spokes --home ~/lee motions"]["motions"]
    assert (motion["kind"], motion["reason"]) == ("expel", "seen handing our plans to the police")
    assert said["spokes --home ~/founder status MAX_ID"]["status"] == "expelled"
    types = [e["type"] for e in said["spokes --home ~/founder log cell"]["events"]]
    assert "expelled" in types and "review" in types  # the founder sponsored Max: on hold
    held = said["spokes --home ~/alex duress list"]["held"]
    assert [h["member_id"] for h in held] == [
        said["spokes --home ~/lee join CODE --server http://127.0.0.1:8080"]["member_id"]
    ]
    assert said["spokes --home ~/founder status LEE_ID"]["status"] == "revoked_by_self"
