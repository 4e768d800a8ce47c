"""End to end: `spokes log` and `spokes exposure`, read from the logs each client verified.

A cell of four expels D (B moves it, C's signature completes the quorum);
the founder's `spokes log cell` shows the founding, each admission with its
certificate's issuer, and the expulsion with the signers its revocation
carries; B's `spokes exposure` of C shows the cell from C's admission on.
When the operator drops or alters a roster event in the database, `spokes
log` raises the alarm and shows no history at all.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from crypto.keys import member_id_text
from tests.e2e.conftest import StartFrom
from tests.e2e.test_lying_server import Operator, caught, member_of
from tests.e2e.test_member_flow import COMMAND, ENV, run
from tests.e2e.test_revocation import cell_of_four


def plain(home: Path, *args: str) -> str:
    """`spokes ARGS` as a person runs it (no --json): what it prints."""
    process = subprocess.run(
        [*COMMAND, *args, "--home", str(home)], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_the_log_shows_admissions_and_an_expulsion_and_exposure_the_cell_since_admission(
    start_from: StartFrom,
) -> None:
    _, _, homes = start_from(cell_of_four)
    founder, b, c, d = homes
    f_id, b_id, c_id, d_id = (member_id_text(member_of(h)) for h in homes)
    run(founder, "send", "cell", "first key period")  # commits key period 1, to all four
    opened = run(b, "expel", d_id, "--reason", "seen with the police")
    assert run(c, "sign", opened["motion_id"])["status"] == "done"

    log = run(founder, "log", "cell")
    events: list[dict[str, Any]] = log["events"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert (events[0]["type"], events[0]["members"], events[0]["author"]) == (
        "founded",
        [f_id],
        f_id,
    )
    admitted = [e for e in events if e["type"] == "admitted"]
    assert [(e["subject"], e["issuer"]) for e in admitted] == [
        (b_id, f_id),
        (c_id, f_id),
        (d_id, f_id),
    ]
    assert set(admitted[2]["vouchers"]) <= {b_id, c_id}
    (expelled,) = [e for e in events if e["type"] == "expelled"]
    assert (expelled["subject"], expelled["grounds"], expelled["author"]) == (
        d_id,
        "expelled",
        c_id,
    )
    assert expelled["signers"] == [b_id, c_id]  # the opener first, then the signature
    assert expelled["motion_id"] == opened["motion_id"]
    assert expelled["reason"] == "seen with the police"  # sealed to the founder
    assert all(e["subject"] is None for e in events if e["type"] == "rekey")
    assert len({tuple(e) for e in events}) == 1  # every entry has the same keys

    text = plain(b, "log", "cell").splitlines()
    assert len(text) == len(events) + 1  # a heading, then one line per event
    assert "expelled: motion signed by" in text[expelled["seq"] + 1]

    exposure = run(b, "exposure", c_id)
    (cell,) = exposure["groups"]
    c_added = admitted[1]["seq"]
    first_rekey = next(e for e in events if e["type"] == "rekey" and e["seq"] > c_added)
    assert (cell["group_id"], cell["since_seq"], cell["since_type"]) == (
        log["group_id"],
        c_added,
        "admitted",
    )
    assert cell["since_at"] == admitted[1]["at"]
    assert cell["first_epoch"]["seq"] == first_rekey["seq"]
    assert cell["first_epoch"]["epoch"] == first_rekey["epoch"]
    assert (cell["members"], cell["spokesperson"]) == (3, False)
    assert (exposure["invited_by"], exposure["invitees"]) == (f_id, [])
    assert exposure["unknown"]
    # D shares no group with B any more: no guess at what they see.
    run(b, "exposure", d_id, expect="not_in_group")
    # The founder invited all three; D is followed to where the log last shows them.
    mine = {i["member_id"]: i for i in run(founder, "exposure", f_id)["invitees"]}
    assert set(mine) == {b_id, c_id, d_id} and all(i["direct"] for i in mine.values())
    assert mine[d_id]["groups"] == [] and mine[d_id]["last_seen"]["type"] == "expelled"


def test_a_roster_event_the_operator_drops_raises_the_alarm_not_a_history(
    start_from: StartFrom,
) -> None:
    _, database_url, (founder, b, c, _) = start_from(cell_of_four)
    run(b, "log", "cell")  # B verified the whole log

    async def drop_an_admission(conn: Any) -> None:
        # C's admission is taken out of the log and out of the event stream.
        row = await conn.fetchrow(
            """SELECT r.group_id, r.seq, s.body FROM roster_events r
               JOIN statements s ON s.statement_id = r.event_id
               WHERE r.op = 'add' ORDER BY r.seq DESC LIMIT 1 OFFSET 1"""
        )
        await conn.execute(
            "DELETE FROM group_events WHERE group_id = $1 AND kind = 'roster' "
            "AND position($2::bytea in body) > 0",
            row["group_id"],
            bytes(row["body"]),
        )
        await conn.execute(
            "DELETE FROM roster_events WHERE group_id = $1 AND seq = $2",
            row["group_id"],
            row["seq"],
        )

    Operator(database_url).do(drop_an_admission)
    caught(b, "log", "cell", because="this client already verified", tries=2)
    caught(c, "log", "cell")


def test_a_roster_event_the_operator_rewrites_is_refused(start_from: StartFrom) -> None:
    _, database_url, (founder, b, _, d) = start_from(cell_of_four)
    d_id = member_of(d)

    async def rewrite(conn: Any) -> None:
        # One byte of D's stored add event is changed; its signature stays as it was.
        row = await conn.fetchrow(
            """SELECT s.statement_id, s.body FROM roster_events r
               JOIN statements s ON s.statement_id = r.event_id
               WHERE r.op = 'add' ORDER BY r.seq DESC LIMIT 1"""
        )
        body = bytearray(row["body"])
        assert d_id in body
        body[-1] ^= 0x01
        await conn.execute(
            "UPDATE statements SET body = $1 WHERE statement_id = $2",
            bytes(body),
            row["statement_id"],
        )

    Operator(database_url).do(rewrite)
    caught(b, "log", "cell", because="does not verify")
    caught(founder, "log", "cell", because="does not verify")
