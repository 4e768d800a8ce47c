"""End to end: alerts travel between cells through a council by the spokespeople's daemons.

Cell one (A, B) and cell two (C, D) each elect a spokesperson (A, C), who
sit in one council. With `spokes daemon` running for A and C, an alert B
raises for the whole network leaves cell one once A confirms it, reaches
the council and cell two; D's acknowledgement comes back up as a count, and
B's retraction follows the same path. An alert nobody confirmed stays home.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.messages import Messages
from client.sdk import Client
from client.state import StateFile
from crypto.encoding import Value, b32d
from tests.e2e.test_councils import elected, two_cells
from tests.e2e.test_member_flow import COMMAND, ENV, run

WAIT_S = 30.0


@contextmanager
def daemons(*homes: Path, said: list[str]) -> Iterator[list[subprocess.Popen[str]]]:
    """`spokes daemon` for each home while the block runs; their stdout lines into `said`."""
    running = [
        subprocess.Popen(
            [*COMMAND, "daemon", "--timeout", "120", "--home", str(home), "--json"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for home in homes
    ]
    try:
        yield running
    finally:
        for process in running:
            process.terminate()
        for process in running:
            out, err = process.communicate(timeout=30)
            said += out.splitlines()
            print("daemon said:", out, err)  # shown when a test fails


def eventually(check: Callable[[], Any], what: str) -> Any:
    """`check()` once it is truthy, within WAIT_S (a bounded loop)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.3)


def send_as(home: Path, group: str, text: str, extra: dict[str, Value]) -> None:
    """Post a message with any sealed record, as a member's own client could (an informant's)."""

    async def send() -> None:
        store = StateFile(home)
        with store.lock():
            client = Client.open(store, ENV["SPOKES_PASSPHRASE"])
            try:
                await Messages(client).send(group, text, extra)
                client.save()
            finally:
                await client.close()

    asyncio.run(send())


def count_of(alert_id: str, number: int) -> dict[str, Value]:
    return {"id": b32d(alert_id), "reached": number, "acked": number, "dir": "down"}


def alert_in(home: Path, alert_id: str) -> dict[str, Any] | None:
    return next((a for a in run(home, "alerts")["alerts"] if a["alert_id"] == alert_id), None)


def test_a_network_alert_reaches_the_other_cell_and_its_acknowledgement_comes_back(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    a, b, c, d, two = two_cells(tmp_path, served[0])
    elected(b, a, a)
    council = run(a, "council", "create")["group_id"]
    elected(d, c, c)
    run(a, "council", "link", council, two)
    run(c, "council", "accept", council)

    said: list[str] = []
    with daemons(a, c, said=said) as running:
        time.sleep(2)  # the daemons subscribe
        started = time.monotonic()
        raised = run(b, "alert", "cell", "eviction crew at number 12", "--scope", "network")
        alert_id = raised["alert_id"]
        quiet = run(b, "alert", "cell", "nobody confirms this one", "--scope", "network")
        run(a, "alert", "confirm", alert_id)
        seen = eventually(lambda: alert_in(d, alert_id), "the alert in cell two")
        took = time.monotonic() - started
        assert (seen["text"], seen["confirmed"], seen["raised_by"]) == (
            "eviction crew at number 12",
            True,
            None,  # cell two never learns who raised it
        )
        assert seen["relayed_from"]
        assert alert_in(c, alert_id) is not None
        run(d, "ack", alert_id)
        # Counts come back along the alert's path: cell two's up into the
        # council, the council's down into cell one, where B raised it.
        counted = eventually(
            lambda: (x := alert_in(b, alert_id)) and x["acknowledged"] == 1 and x,
            "cell two's acknowledgement counted where B, who raised it, sees it",
        )
        assert counted["reached"] == 4  # A, B, C, D: each once
        # D, holding no seat, claims 500 acknowledgements for the council's side:
        # a count from anyone but the link's holder counts for nothing.
        send_as(d, two, "500 of 500 acknowledged", {"alert_count": count_of(alert_id, 500)})
        run(b, "ack", alert_id)
        counted = eventually(
            lambda: (x := alert_in(b, alert_id)) and x["acknowledged"] == 2 and x,
            "B's own acknowledgement counted",
        )
        assert counted["reached"] == 4
        # D's own view is of its side only: cell two's two members, D's acknowledgement.
        assert (alert_in(d, alert_id) or {}).get("reached") == 2
        run(b, "alert", "retract", alert_id)
        eventually(
            lambda: (x := alert_in(d, alert_id)) and x["retracted"], "the retraction in cell two"
        )
        # Unconfirmed, the other wide alert stayed in cell one.
        assert alert_in(d, quiet["alert_id"]) is None
        for process in running:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
    print(f"alert raised in cell one, read in cell two after {took:.1f} s")

    # A mandate: cell one agrees a proposal, its spokesperson carries it to the council.
    proposal = run(b, "propose", "cell", "join the rent strike on the 1st")["proposal_id"]
    run(c, "mandate", proposal, "--to", council, expect="proposal_not_found")  # not cell two's
    run(a, "answer", proposal, "agree")
    run(a, "mandate", proposal, "--to", council, expect="not_agreed")  # B has not answered
    run(b, "answer", proposal, "agree")
    run(a, "mandate", proposal, "--to", council)
    carried = run(c, "read", council)["messages"][-1]
    assert carried["text"] == "join the rent strike on the 1st"
    assert carried["provenance"]["direction"] == "up"
    assert carried["mandate"] == {
        "proposal": proposal,
        "outcome": "agreed",
        "asked": 2,
        "agree": 2,
        "stand_aside": 0,
        "block": 0,
    }
    # By hand: A relays a cell one message up; it goes no further, and no way back.
    sent = run(b, "send", "cell", "meeting moved to 7pm")
    relayed = run(a, "relay", "cell", str(sent["cursor"]), "--to", council)
    assert relayed["group"] == council
    shown = run(c, "read", council)["messages"][-1]
    assert (shown["text"], shown["provenance"]["direction"]) == ("meeting moved to 7pm", "up")
    assert shown["provenance"]["alias"] == "a cell"  # B is named nowhere in the council
    run(c, "relay", council, str(relayed["seq"]), "--to", two, expect="relay_loop")
    in_council = next(
        m
        for m in run(a, "read", council, "--since", "0")["messages"]
        if (m.get("alert") or {}).get("id") == alert_id
    )
    run(a, "relay", council, str(in_council["cursor"]), "--to", "cell", expect="relay_loop")
    # B holds no seat: the council is as foreign to B as no group at all.
    run(b, "relay", "cell", str(sent["cursor"]), "--to", council, expect="not_found")

    # D, no spokesperson, forges a relay "down from the council" into cell two:
    # C's client checks the provenance against the roster and raises the alarm.
    forged = {
        "alias": "a level-1 council",
        "direction": "down",
        "original": bytes(32),
        "sent_at": 1,
    }
    send_as(d, two, "everyone leave the building now", {"relay": forged})
    refused = run(c, "read", "cell", expect="verification_failed")
    assert "relay" in refused["error"]["message"]

    relays = [json.loads(line) for line in said if line.startswith("{")]
    assert {(r["kind"], r["direction"]) for r in relays} >= {
        ("alert", "up"),
        ("alert", "down"),
        ("alert_count", "up"),
        ("alert_retract", "up"),
        ("alert_retract", "down"),
    }
