"""End to end: history and names survive a split, and nobody gains what they could not read.

A cell of four (the founder, B, C, D) splits B and C off. B and C keep
reading the old cell up to the split (by its id, and before the new cell's
messages in `read cell --history`); nothing after the split reaches them,
and E, admitted to the new cell after the split, gets nothing of the old
one, even from a server that offers it. Every cellmate's name shows in both
cells. The set-ups are tests/e2e/test_cells.py's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from crypto.encoding import b32e
from crypto.keys import parse_member_id
from tests.e2e.test_cells import admit, cell_of_three, member_id, served, sql, texts
from tests.e2e.test_lying_server import caught, cell_id
from tests.e2e.test_member_flow import COMMAND, ENV, invite, join, run

__all__ = ["served"]  # the fixture, from test_cells


def cell_of_four(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path]:
    founder, b, c = cell_of_three(tmp_path, url)
    d, d_joined = join(tmp_path, "d", url, invite(founder))
    admit(founder, d_joined, b, c)
    return founder, b, c, d


def split_off(founder: Path, *moved: Path) -> dict[str, Any]:
    """The founder opens a split moving `moved`; each signs, the last carries it out."""
    members = [arg for home in moved for arg in ("--member", member_id(home))]
    split = run(founder, "cell", "split", "cell", *members)
    for home in moved:
        run(home, "sign", split["motion_id"])
    return split


def history(home: Path, group: str) -> list[tuple[str, str]]:
    return [(m["group_id"], m["text"]) for m in run(home, "read", group, "--history")["messages"]]


def test_a_moved_member_reads_the_old_cell_up_to_the_split(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    founder, b, c, d = cell_of_four(tmp_path, url)
    old = b32e(cell_id(founder))
    run(b, "profile", "set", "--name", "Bo")
    run(founder, "send", "cell", "before the split, one")
    assert texts(run(b, "read", "cell")) == ["before the split, one"]
    run(d, "send", "cell", "before the split, two")  # neither B nor C fetches this one
    split = split_off(founder, b, c)
    new = split["group_id"]
    run(founder, "send", "cell", "after the split")
    run(b, "send", "cell", "in the new cell")

    # By the old cell's id: what B had not read yet, or everything with --since 0;
    # C, the carrier, never fetched either message and reads both now.
    assert texts(run(b, "read", old)) == ["before the split, two"]
    assert texts(run(b, "read", old, "--since", "0")) == [
        "before the split, one",
        "before the split, two",
    ]
    assert texts(run(c, "read", old)) == ["before the split, one", "before the split, two"]
    # Combined: the old cell up to the split, then the new cell, each marked.
    expected = [
        (old, "before the split, one"),
        (old, "before the split, two"),
        (new, "in the new cell"),
    ]
    assert history(c, "cell") == history(b, "cell") == expected
    assert history(b, old) == expected[:2]
    plain = subprocess.run(
        [*COMMAND, "read", "cell", "--history", "--home", str(c)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert lines[0].startswith(f"({old[:8]}, left) [") and lines[0].endswith(
        "before the split, one"
    )
    assert lines[2] == f"--- split: from here on, {new} ---"
    assert lines[3].startswith(f"({new[:8]}) [") and lines[3].endswith("Bo: in the new cell")
    # The old cell is read-only to them, and listed as such; its members are those
    # who stayed, as its log stood at the split.
    run(b, "send", old, "still here?", expect="read_only")
    stayed = {m["member_id"] for m in run(b, "members", old)["members"]}
    assert stayed == {member_id(founder), member_id(d)}
    listed = run(b, "cells")
    assert [g["group_id"] for g in listed["groups"]] == [new]
    (left,) = listed["left_cells"]
    assert left["group_id"] == old and left["split_at"] > 0
    # Those who stayed see the old cell go on as before.
    assert texts(run(d, "read", "cell"))[-1] == "after the split"

    # E joins the new cell after the split: nothing of the old cell, by id or combined.
    e, e_joined = join(tmp_path, "e", url, invite(b))
    admit(b, e_joined, c)
    run(b, "send", "cell", "welcome, E")
    run(e, "read", old, expect="not_found")
    assert history(e, "cell") == [(new, "welcome, E")]


def test_every_cellmate_is_named_in_both_cells_after_a_split(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    founder, b, c, d = cell_of_four(tmp_path, url)
    homes = {founder: "Ana", b: "Bo", c: "Cy", d: "Di"}
    for home, name in homes.items():
        assert run(home, "profile", "set", "--name", name)["groups"] == 1
    split_off(founder, b, c)

    # Each member's next look at their cell seals their profile there (committing
    # the new cell's first key period if nobody has yet); then everyone sees everyone.
    for home in homes:
        run(home, "members", "cell")
    for home in homes:
        cellmates = (b, c) if home in (b, c) else (founder, d)
        shown = {m["member_id"]: m["name"] for m in run(home, "members", "cell")["members"]}
        assert shown == {member_id(m): homes[m] for m in cellmates}, home


def test_old_cell_events_the_server_offers_after_the_split_are_refused(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b, c, d = cell_of_four(tmp_path, url)
    old = b32e(cell_id(founder))
    run(founder, "send", "cell", "before the split")
    split_off(founder, b, c)
    run(founder, "send", "cell", "after the split: not for B")
    e, e_joined = join(tmp_path, "e", url, invite(b))
    admit(b, e_joined, c)
    run(b, "send", "cell", "welcome, E")

    # The operator serves B the old cell's events past the split (the key period
    # that left B out, and its message), then its roster log too.
    sql(database_url, "UPDATE former_group_members SET last_seq = 1000000")
    caught(b, "read", old, because="roster event its log lacks", tries=2)
    sql(database_url, "UPDATE former_group_members SET roster_seq = 1000")
    caught(b, "read", old, because="past that split", tries=2)
    caught(b, "read", "cell", "--history", because="past that split")

    # And puts E, who joined the new cell later, on the old cell's index: E's
    # client never verified E was in it, so it reads none of it.
    e_id = parse_member_id(member_id(e))
    sql(
        database_url,
        f"INSERT INTO group_members (group_id, member_id) VALUES "
        f"('\\x{cell_id(founder).hex()}'::bytea, '\\x{e_id.hex()}'::bytea)",
    )
    run(e, "read", old, expect="not_found")
    assert history(e, "cell") == [(b32e(cell_id(b)), "welcome, E")]
