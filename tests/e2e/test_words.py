"""End to end: what `spokes` tells a person when it refuses, in words they can act on.

Each refusal named in issue 9 ("words people understand"), met the way a
person meets it: a newcomer who sends before their cell has admitted them,
a member who signs a split that does not move them. Plain output says "key
period", never the protocol's "epoch".
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from crypto.keys import parse_member_id
from tests.e2e.test_cells import admit, cell_of_three, member_id, sql
from tests.e2e.test_member_flow import COMMAND, ENV, found, invite, join, run


@pytest.fixture
def served(spawn_server: Any, database_url: str) -> tuple[str, str]:
    url: str = spawn_server("--database-url", database_url).url
    return url, database_url


def plain(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`spokes ARGS --home HOME` as a person runs it: no --json."""
    return subprocess.run(
        [*COMMAND, *args, "--home", str(home)], env=ENV, capture_output=True, text=True, timeout=60
    )


def test_a_newcomer_who_sends_before_admission_is_told_to_wait(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder = found(tmp_path, url, "--vouches", "2", "--probation-days", "0", "--cell-min", "2")
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    # Nothing signed yet: not "No group … that you belong to", but what to wait for.
    message = run(b, "send", "cell", "hi", expect="not_admitted")["error"]["message"]
    assert message.startswith("You are not admitted yet")
    assert "your cell's vouches" in message and "`spokes status`" in message
    assert "No group" not in message

    run(founder, "admit", b_joined["member_id"], "--safety-number", b_joined["safety_number"])
    c, c_joined = join(tmp_path, "c", url, invite(founder))
    run(founder, "admit", c_joined["member_id"], "--safety-number", c_joined["safety_number"])
    refused = plain(c, "send", "cell", "hi")  # certified, B's vouch still to come
    assert refused.returncode == 1
    assert "error (not_admitted): You are not admitted yet" in refused.stderr

    # The server says C's vetting completed, but no cellmate's client has added
    # C to the signed roster yet (as after a vetting window, until one runs).
    sql(
        database_url,
        "UPDATE members SET admitted_at = now() "
        f"WHERE member_id = decode('{parse_member_id(c_joined['member_id']).hex()}', 'hex')",
    )
    message = run(c, "send", "cell", "hi", expect="not_admitted")["error"]["message"]
    assert message.startswith("You are not on your cell's signed roster yet")
    assert "a cellmate's client adds you" in message and "No group" not in message

    run(b, "vouch", c_joined["member_id"])  # B's client adds C
    assert set(run(c, "send", "cell", "now I'm in")) == {"message_id", "cursor"}


def test_a_member_who_stays_is_told_a_split_needs_no_signature_of_theirs(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    founder, b, c = cell_of_three(tmp_path, url)
    d, d_joined = join(tmp_path, "d", url, invite(founder))
    admit(founder, d_joined, b, c)
    cells = plain(founder, "cells")
    assert cells.returncode == 0 and "key period" in cells.stdout
    assert "epoch" not in cells.stdout.lower()

    split = run(
        founder, "cell", "split", "cell", "--member", member_id(c), "--member", member_id(d)
    )
    motion = split["motion_id"]
    for stays in (b, founder):  # a member who stays, and the one who opened it
        refused = run(stays, "sign", motion, expect="not_a_signer")["error"]["message"]
        assert refused.startswith("You stay in this cell, and only the members who move sign")
        assert "nothing was signed" in refused and "(0 of 2 so far;" in refused
    assert run(c, "motions")["motions"][0]["signatures"] == 0  # nothing counted

    signed = plain(c, "sign", motion)
    assert signed.returncode == 0, signed.stderr
    assert "takes effect when the last member who moves signs" in signed.stdout
    assert "(1 of 2 so far;" in run(b, "sign", motion, expect="not_a_signer")["error"]["message"]
    done = plain(d, "sign", motion)
    assert done.returncode == 0, done.stderr
    assert "yours was the last signature it needed, and the split took effect" in done.stdout
    assert run(d, "cells")["groups"][0]["group_id"] == split["group_id"]
