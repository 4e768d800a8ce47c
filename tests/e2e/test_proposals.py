"""End to end: a cell decides by proposals through `spokes`, every member counting for itself.

Each member's `spokes proposals` computes the outcome from the signed,
encrypted answers its own client verified (client/proposals.py); the
server only stores ciphertext. The operator who drops or replays an answer
is caught by the message layer's checks, or by the answerer's own client.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from client.messages import Messages
from client.sdk import Client
from client.state import StateFile
from crypto.encoding import b32e
from tests.conftest import run_sync
from tests.e2e.test_cells import cell_of_three, member_id
from tests.e2e.test_lying_server import Operator, caught, cell_id, member_of, message_rows
from tests.e2e.test_member_flow import COMMAND, ENV, run

# What every member must compute alike (not: whether they answered themselves).
SHARED = (
    "proposal_id", "text", "by", "deadline", "outcome", "asked", "agree", "stand_aside",
    "block", "reasons", "ignored", "closed_by",
)  # fmt: skip


def named_cell(tmp_path: Path, url: str) -> tuple[Path, Path, Path]:
    homes = cell_of_three(tmp_path, url)
    for home, name in zip(homes, ("Ana", "Bo", "Cy"), strict=True):
        run(home, "profile", "set", "--name", name)
    return homes


def seen_by_all(proposal_id: str, *homes: Path) -> dict[str, Any]:
    """The proposal as each member's `spokes proposals` computes it: the same for all."""
    views = []
    for home in homes:
        listed = run(home, "proposals", "cell")["proposals"]
        (found,) = [p for p in listed if p["proposal_id"] == proposal_id]
        views.append(found)
    shared = [{k: v[k] for k in SHARED} for v in views]
    assert all(s == shared[0] for s in shared), shared
    return views[0]


def plain(home: Path, *args: str) -> str:
    process = subprocess.run(
        [*COMMAND, *args, "--home", str(home)], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def send_with_clock_ahead(home: Path, text: str, seconds: int) -> None:
    """A member whose clock runs `seconds` ahead sends a plain message (through the SDK)."""
    store = StateFile(home)

    async def go() -> None:
        with store.lock():
            client = Client.open(
                store, ENV["SPOKES_PASSPHRASE"], clock=lambda: int(time.time()) + seconds
            )
            try:
                await Messages(client).send("cell", text)
            finally:
                await client.close()

    run_sync(go())


def test_a_cell_decides_by_proposal_and_every_member_counts_alike(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    ana, bo, cy = named_cell(tmp_path, url)
    everyone = (ana, bo, cy)
    ids = {home: member_id(home) for home in everyone}

    # Bo watches while Ana proposes and Cy answers.
    watcher = subprocess.Popen(
        [*COMMAND, "watch", "--count", "2", "--timeout", "30", "--home", str(bo), "--json"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)  # let the watch subscribe
    started = int(time.time())
    proposed = run(ana, "propose", "cell", "Move the meeting to Thursdays")
    assert set(proposed) == {"proposal_id", "group", "seq", "deadline"}
    assert proposed["group"] == run(ana, "cells")["groups"][0]["group_id"]
    assert started + 48 * 3600 <= proposed["deadline"] <= int(time.time()) + 48 * 3600
    pid = proposed["proposal_id"]
    opened = seen_by_all(pid, *everyone)
    assert (opened["outcome"], opened["asked"], opened["agree"]) == ("open", 3, 0)
    assert (opened["by"], opened["by_name"], opened["answered_by_me"]) == (ids[ana], "Ana", False)

    aside = run(cy, "answer", pid, "stand-aside", "--reason", "Thursdays are hard for me")
    assert (aside["proposal_id"], aside["answer"]) == (pid, "stand-aside")
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    shown, answered, _ = [json.loads(line) for line in out.splitlines()]
    assert shown["proposal"] == {"proposal_id": pid, "deadline": proposed["deadline"]}
    assert shown["answer"] is None and shown["text"] == "Move the meeting to Thursdays"
    assert answered["answer"] == {
        "proposal_id": pid,
        "choice": "stand-aside",
        "reason": "Thursdays are hard for me",
    }
    assert answered["proposal"] is None

    # `read` shows them too, readably and in --json.
    got = run(bo, "read", "cell", "--since", "0")["messages"]
    assert [m["proposal"] is not None for m in got] == [True, False]
    text = plain(bo, "read", "cell", "--since", "0")
    assert f"Ana: [proposal {pid}, open until " in text
    assert f"Cy: [answer: stand-aside to proposal {pid[:10]}] Thursdays are hard for me" in text

    run(bo, "answer", pid, "agree")
    assert seen_by_all(pid, *everyone)["outcome"] == "open"  # Ana has not answered
    run(ana, "answer", pid, "agree")
    agreed = seen_by_all(pid, *everyone)
    # Everyone asked has answered with no block: decided before the deadline.
    assert (agreed["outcome"], agreed["agree"], agreed["stand_aside"], agreed["block"]) == (
        "agreed",
        2,
        1,
        0,
    )
    assert agreed["reasons"] == [
        {
            "by": ids[cy],
            "by_name": "Cy",
            "choice": "stand-aside",
            "reason": "Thursdays are hard for me",
        }
    ]
    mine = run(cy, "proposals", "cell")["proposals"][0]
    assert (mine["answered_by_me"], mine["my_answer"]) == (True, "stand-aside")
    assert "agreed" in plain(cy, "proposals", "cell")

    # Answering twice is refused before anything is sent.
    run(cy, "read", "cell")
    run(bo, "answer", pid, "block", "--reason", "second thoughts", expect="already_answered")
    assert run(cy, "read", "cell")["messages"] == []  # nothing was sent

    # A block says why, and blocks at once.
    second = run(bo, "propose", "cell", "Print 500 flyers", "--deadline", "10m")["proposal_id"]
    run(cy, "answer", second, "block", expect="reason_required")
    run(ana, "answer", second, "agree")
    run(cy, "answer", second, "block", "--reason", "We can't pay for them")
    blocked = seen_by_all(second, *everyone)
    assert (blocked["outcome"], blocked["agree"], blocked["block"]) == ("blocked", 1, 1)
    assert blocked["reasons"][0]["reason"] == "We can't pay for them"
    assert "[answer: block to proposal" in plain(ana, "read", "cell")

    # Ids that name no proposal.
    run(ana, "answer", "not-an-id", "agree", expect="invalid_proposal_id")
    run(ana, "answer", b32e(os.urandom(16)), "agree", expect="proposal_not_found")
    run(bo, "send", "cell", "see you Thursday")
    plain_id = run(cy, "read", "cell")["messages"][-1]["message_id"]
    run(ana, "answer", plain_id, "agree", expect="not_a_proposal")
    refused = subprocess.run(
        [*COMMAND, "propose", "cell", "x", "--deadline", "5m", "--home", str(ana), "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        refused.returncode == 2 and "10m to 30d" in json.loads(refused.stdout)["error"]["message"]
    )

    # A message sealed past the deadline closes a proposal in the group's order,
    # for every member, whatever their own clocks say.
    third = run(cy, "propose", "cell", "Meet at the library", "--deadline", "10m")["proposal_id"]
    run(bo, "answer", third, "agree")
    send_with_clock_ahead(ana, "my clock runs fast", 11 * 60)
    run(cy, "answer", third, "agree", expect="proposal_closed")
    closed = seen_by_all(third, *everyone)
    last = run(bo, "read", "cell")["messages"][-1]
    assert (last["text"], closed["closed_by"]) == ("my clock runs fast", last["cursor"])
    assert (closed["outcome"], closed["agree"]) == ("no_quorum", 1)  # 1 of 3 answered


def test_an_answer_the_operator_replays_or_drops_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    ana, bo, cy = named_cell(tmp_path, url)
    pid = run(ana, "propose", "cell", "Occupy the lobby on Friday")["proposal_id"]
    run(bo, "answer", pid, "block", "--reason", "Too risky this week")
    group, sender = cell_id(bo), member_of(bo)
    operator = Operator(database_url)

    # Replayed: Bo's block appended again, as if Bo had blocked twice.
    async def replay_answer(conn: Any) -> int:
        (*_, (_, body)) = await message_rows(conn, group, sender)
        seq: int = await conn.fetchval(
            "UPDATE groups SET last_seq = last_seq + 1 WHERE group_id = $1 RETURNING last_seq",
            group,
        )
        await conn.execute(
            """INSERT INTO group_events (group_id, seq, kind, sender, body)
               VALUES ($1, $2, 'message', $3, $4)""",
            group,
            seq,
            sender,
            body,
        )
        return seq

    replayed = operator.do(replay_answer)
    caught(cy, "proposals", "cell", because="twice", tries=2)

    async def undo(conn: Any) -> None:
        await conn.execute(
            "DELETE FROM group_events WHERE group_id = $1 AND seq = $2", group, replayed
        )
        await conn.execute("UPDATE groups SET last_seq = last_seq - 1 WHERE group_id = $1", group)

    operator.do(undo)
    assert seen_by_all(pid, ana, bo, cy)["outcome"] == "blocked"  # the lie withdrawn, all agree

    # Dropped: a second proposal, whose only block the operator deletes as Bo's
    # latest message (nothing after it to renumber). The others can't tell yet.
    second = run(ana, "propose", "cell", "March on Saturday")["proposal_id"]
    run(bo, "answer", second, "block", "--reason", "I'll be away")

    async def drop_answer(conn: Any) -> None:
        (*_, (seq, _)) = await message_rows(conn, group, sender)
        await conn.execute("DELETE FROM group_events WHERE group_id = $1 AND seq = $2", group, seq)
        await conn.execute("UPDATE groups SET last_seq = last_seq - 1 WHERE group_id = $1", group)

    operator.do(drop_answer)
    (_, shown) = run(cy, "proposals", "cell")["proposals"]
    assert (shown["proposal_id"], shown["outcome"], shown["block"]) == (second, "open", 0)
    # Bo's own client knows what the server accepted from it: it raises the
    # alarm rather than offer Bo a second answer, or show the count without it.
    caught(bo, "proposals", "cell", because="missing from the group's events")
    caught(bo, "answer", second, "agree", because="missing from the group's events")
    # And the next message Bo sends names the dropped one: every reader catches it.
    run(bo, "send", "cell", "did you see my block?")
    caught(cy, "proposals", "cell", because="was dropped", tries=2)
    caught(ana, "read", "cell", because="was dropped")
