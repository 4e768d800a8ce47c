"""End to end: two cells found a council through `spokes`, a recall moves a seat, lies are caught.

Cell one (A, B) and cell two (C, D, split from it) each elect a
spokesperson; A founds a council, moves to link cell two, C takes the seat.
A recall and an election in cell two carry the seat to D: the carrying
clients post the seat changes, and the council's next key period leaves C
out; the council then elects A, who founds a level-2 council on it. The
operator forges a seat on an informant's lone signature, and lists a council
to a member who holds no seat in it.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from client.state import StateFile
from crypto import councils, motions, roster
from crypto.elections import make_elect_motion, make_recall_motion
from crypto.encoding import b32d
from tests.e2e.test_cells import admit, cell_of_three, member_id, texts
from tests.e2e.test_lying_server import (
    Operator,
    append_roster,
    caught,
    network_of,
    replay,
    roster_log,
    rules_of,
)
from tests.e2e.test_member_flow import COMMAND, ENV, found, invite, join, run


def two_cells(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path, str]:
    """Cell one: A (the founder) and B; cell two, split from it: C and D. Its id."""
    a, b, c = cell_of_three(tmp_path, url)
    d, d_joined = join(tmp_path, "d", url, invite(a))
    admit(a, d_joined, b, c)
    split = run(a, "cell", "split", "cell", "--member", member_id(c), "--member", member_id(d))
    run(c, "sign", split["motion_id"])
    assert run(d, "sign", split["motion_id"])["status"] == "done"
    return a, b, c, d, split["group_id"]


def elected(opener: Path, signer: Path, who: Path) -> dict[str, Any]:
    """`opener` moves to elect `who` in their cell; `signer` completes it (a cell of two)."""
    opened = run(opener, "elect", "cell", member_id(who))
    signed = run(signer, "sign", opened["motion_id"])
    assert signed["status"] == "done", signed
    return signed


def test_two_cells_sit_in_a_council_and_a_recall_moves_the_seat(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    a, b, c, d, two = two_cells(tmp_path, url)
    one = run(a, "whoami")["cell_id"]

    assert "seats" not in elected(b, a, a)  # cell one sits in no council yet
    run(b, "council", "create", expect="not_spokesperson")
    council = run(a, "council", "create", "--name", "Riverside spokes")["group_id"]
    elected(d, c, c)

    # A's seat alone is the council's quorum; C, cell two's spokesperson, accepts.
    link = run(a, "council", "link", council, two)
    assert (link["status"], link["waiting_for"]) == ("open", "acceptance")
    (motion,) = run(a, "motions")["motions"]
    assert (motion["kind"], motion["links"], motion["signatures"]) == ("link", two, 1)
    run(d, "council", "accept", council, expect="no_invitation")  # not cell two's spokesperson
    accepted = run(c, "council", "accept", council)
    assert accepted == {"group_id": council, "linked": two, "status": "done"}
    assert run(a, "motions")["motions"] == []

    for home, cell in ((a, one), (c, two)):
        listed = {g["group_id"]: g for g in run(home, "cells")["groups"]}
        assert set(listed) == {cell, council}
        mine = listed[council]
        assert (mine["kind"], mine["level"], mine["members"], mine["seats"]) == ("council", 1, 2, 2)
        tree = run(home, "tree")
        assert (tree["cell"], tree["spokesperson"]) == (cell, member_id(home))
        # The name was sealed before C's seat; A's client sealed it again for C.
        assert tree["councils"] == [
            {
                "group": council,
                "level": 1,
                "seats": 2,
                "spokesperson": None,
                "name": "Riverside spokes",
            }
        ]
    assert run(b, "tree")["councils"] == []
    run(b, "read", council, expect="not_found")

    # A council is a group like a cell: profiles, a live feed, messages.
    run(a, "profile", "set", "--name", "Ana")
    assert {m["member_id"]: m["name"] for m in run(c, "members", council)["members"]} == {
        member_id(a): "Ana",
        member_id(c): None,
    }
    watcher = subprocess.Popen(
        [*COMMAND, "watch", "--count", "1", "--timeout", "30", "--home", str(c), "--json"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run(a, "send", council, "first council meeting")
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    seen = json.loads(out.splitlines()[0])
    assert (seen["group_id"], seen["text"], seen["sender_name"]) == (
        council,
        "first council meeting",
        "Ana",
    )
    assert texts(run(c, "read", council)) == [
        "The council's name: Riverside spokes",  # sealed again for C by A's client
        "first council meeting",
    ]

    # Cell two recalls C: D moves it, C's signature carries it out, and C's
    # client (still in the council) empties the seat.
    recall = run(d, "recall", "cell")
    signed = run(c, "sign", recall["motion_id"])
    assert signed["seats"] == [{"council": council, "status": "posted"}]
    run(c, "read", council, expect="not_seated")
    # D's own signature elects D: their client takes the seat.
    signed = elected(c, d, d)
    assert signed["seats"] == [{"council": council, "status": "posted"}]

    run(a, "send", council, "welcome, D")
    assert texts(run(d, "read", council)) == ["welcome, D"]
    assert run(d, "tree")["councils"][0]["group"] == council
    run(c, "read", council, expect="not_seated")
    assert [g["group_id"] for g in run(c, "cells")["groups"]] == [two]
    assert run(c, "tree")["councils"] == []
    members = {m["member_id"] for m in run(a, "members", council)["members"]}
    assert members == {member_id(a), member_id(d)}

    # The council elects A, who founds a council a level up on that election:
    # A's client believes it through the council's seat, down to A's cell.
    opened = run(d, "elect", council, member_id(a))
    assert run(a, "sign", opened["motion_id"])["status"] == "done"
    upper = run(a, "council", "create", "--group", council)["group_id"]
    tree = run(a, "tree")
    assert tree["councils"] == [
        {
            "group": council,
            "level": 1,
            "seats": 2,
            "spokesperson": member_id(a),
            "name": "Riverside spokes",
        },
        {"group": upper, "level": 2, "seats": 1, "spokesperson": None, "name": None},
    ]
    run(a, "send", upper, "a level up")
    assert texts(run(a, "read", upper, "--since", "0")) == ["a level up"]


def council_of_one(tmp_path: Path, url: str) -> tuple[Path, Path, str]:
    """A founder and B in one cell; the founder, elected, founds a council."""
    founder = found(tmp_path, url, "--vouches", "1", "--probation-days", "0", "--cell-min", "2")
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    admit(founder, b_joined)
    elected(b, founder, founder)
    council = run(founder, "council", "create")["group_id"]
    run(founder, "send", council, "only me here")
    return founder, b, council


def test_a_seat_the_operator_forges_on_an_informants_signature_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    """B, alone, signs the founder's recall and their own election; the operator appends
    the seat change that would put B in the founder's place."""
    url, database_url = served
    founder, b, council = council_of_one(tmp_path, url)
    informant = StateFile(b).read(ENV["SPOKES_PASSPHRASE"])
    cell = b32d(run(founder, "whoami")["cell_id"])
    key, bundle = informant.identity, informant.key_bundle
    assert bundle is not None

    async def forge(conn: Any) -> None:
        rules, network = await rules_of(conn), await network_of(conn)
        now = int(time.time())
        before = replay(await roster_log(conn, cell), rules)
        members = list(before.members.values())
        recall = make_recall_motion(key, network, before, now)
        recalled = roster.sign_event(
            key, network, before, "recall", now, motions.split_event_fields(recall, [])
        )
        # The cell's rule book refuses this recall; the informant goes on as if it stood.
        after = replace(
            before, seq=before.seq + 1, head=recalled.id, spokesperson=None, last_link=recalled.id
        )
        elect = make_elect_motion(key, network, after, key.member_id, now)
        electing = roster.sign_event(
            key, network, after, "elect", now, motions.split_event_fields(elect, [])
        )
        mine = councils.link_proofs(members, {key.member_id})
        links = [
            councils.seat_link_value(recalled, mine, mine, []),
            councils.seat_link_value(electing, mine, mine, []),
        ]
        state = replay(await roster_log(conn, b32d(council)), rules)
        seat = roster.sign_event(
            key, network, state, "seat", now, councils.seat_fields(cell, links, bundle)
        )
        await append_roster(conn, b32d(council), state.seq + 1, seat, "seat", statement_id=seat.id)

    Operator(database_url).do(forge)
    caught(founder, "read", council, because="does not verify")
    caught(founder, "cells", because="does not verify")


def test_a_council_listed_to_a_member_without_a_seat_raises_the_alarm(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b, council = council_of_one(tmp_path, url)
    member = StateFile(b).read(ENV["SPOKES_PASSPHRASE"]).member_id
    Operator(database_url).do(
        lambda conn: conn.execute(
            "INSERT INTO group_members (group_id, member_id, added_at) VALUES ($1, $2, now())",
            b32d(council),
            member,
        )
    )
    caught(b, "cells", because="no verified event puts you in")
    caught(b, "tree", because="no verified event puts you in")
    run(b, "send", council, "let me in", expect="not_seated")
    assert [g["group_id"] for g in run(founder, "cells")["groups"]][-1] == council
