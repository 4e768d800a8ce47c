"""End to end: a cell elects and recalls its spokesperson with `spokes`, and a lie about it is caught."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from client.state import StateFile
from crypto import motions, roster
from crypto.elections import make_elect_motion
from tests.e2e.test_cells import cell_of_three, member_id
from tests.e2e.test_lying_server import (
    Operator,
    append_roster,
    caught,
    network_of,
    replay,
    roster_log,
    rules_of,
)
from tests.e2e.test_member_flow import ENV, run


def spokesperson(home: Path) -> str | None:
    (cell,) = run(home, "cells")["groups"]
    found: str | None = cell["spokesperson"]
    return found


def test_a_cell_elects_and_recalls_its_spokesperson(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    founder, b, c = cell_of_three(tmp_path, url)
    ids = {home: member_id(home) for home in (founder, b, c)}
    run(b, "profile", "set", "--name", "Bo")

    opened = run(founder, "elect", "cell", ids[b])
    assert opened["status"] == "open"  # 1 of the 2 a cell of three needs
    (motion,) = run(c, "motions")["motions"]
    assert (motion["kind"], motion["member"], motion["signatures"], motion["needed"]) == (
        "elect",
        ids[b],
        1,
        2,
    )
    assert spokesperson(c) is None
    assert run(b, "sign", opened["motion_id"]) == {
        "motion_id": opened["motion_id"],
        "status": "done",
        "kind": "elect",
    }
    assert {spokesperson(home) for home in (founder, b, c)} == {ids[b]}
    assert run(c, "motions")["motions"] == []

    # One spokesperson at a time; a recall needs no reason, any member moves it.
    run(c, "elect", "cell", ids[c], expect="has_spokesperson")
    recall = run(c, "recall", "cell")
    assert recall["status"] == "open"
    run(c, "sign", recall["motion_id"], expect="already_signed")
    assert run(founder, "sign", recall["motion_id"])["status"] == "done"
    assert {spokesperson(home) for home in (founder, b, c)} == {None}
    run(b, "recall", "cell", expect="no_spokesperson")


def test_an_election_the_server_accepts_without_a_quorum_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    """An informant signs their own election alone; the operator appends it to the log."""
    url, database_url = served
    founder, b, informant = cell_of_three(tmp_path, url)
    run(founder, "send", "cell", "hello")  # every client has verified the log so far
    run(b, "cells")
    key = StateFile(informant).read(ENV["SPOKES_PASSPHRASE"]).identity
    group = StateFile(founder).read(ENV["SPOKES_PASSPHRASE"]).cell_id
    assert group is not None

    async def self_elect(conn: Any) -> None:
        state = replay(await roster_log(conn, group), await rules_of(conn))
        network = await network_of(conn)
        now = int(time.time())
        motion = make_elect_motion(key, network, state, key.member_id, now)
        event = roster.sign_event(
            key, network, state, "elect", now, motions.split_event_fields(motion, [])
        )
        await append_roster(conn, group, state.seq + 1, event, "elect", statement_id=event.id)

    Operator(database_url).do(self_elect)
    for home in (founder, b):
        caught(home, "cells", because="signatures")
