"""End to end: a cell talks through the real `spokes` command, and a lying server is caught.

Everyone runs `spokes` in their own home folder against `spokes-server serve`
on this test's PostgreSQL. Roster additions, epochs and profile reseals are
the clients' own automatic duties: no test step asks for them. Tests that
start from `cell_of_three` get their own copy of one build of it
(`start_from`, tests/e2e/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import run_sync
from tests.e2e.conftest import StartFrom
from tests.e2e.conftest import served as served  # test_split_history imports it from here
from tests.e2e.test_member_flow import COMMAND, ENV, found, invite, join, run


def member_id(home: Path) -> str:
    return str(run(home, "whoami")["member_id"])


def admit(inviter: Path, newcomer_joined: dict[str, Any], *vouchers: Path) -> None:
    number = newcomer_joined["safety_number"]
    status = run(inviter, "admit", newcomer_joined["member_id"], "--safety-number", number)
    for voucher in vouchers:  # as many as the vetting rule asks for
        if status["status"] == "pending":
            status = run(voucher, "vouch", newcomer_joined["member_id"])
    assert status["status"] == "active", status


def cell_of_three(tmp_path: Path, url: str) -> tuple[Path, Path, Path]:
    """A founder and two members; vouches 1 (the certificate), but C needs B's as well."""
    founder = found(tmp_path, url, "--vouches", "1", "--probation-days", "0", "--cell-min", "2")
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    admit(founder, b_joined)
    c, c_joined = join(tmp_path, "c", url, invite(founder))
    admit(founder, c_joined, b)
    return founder, b, c


def texts(result: dict[str, Any]) -> list[str]:
    return [m["text"] for m in result["messages"]]


def sql(database_url: str, *statements: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    run_sync(go())


def test_a_cell_talks_grows_watches_and_splits(tmp_path: Path, start_from: StartFrom) -> None:
    url, _, (founder, b, c) = start_from(cell_of_three)
    ids = {home: member_id(home) for home in (founder, b, c)}

    # The founder's client added both newcomers when their admission completed.
    (cell,) = run(founder, "cells")["groups"]
    assert cell["members"] == 3 and cell["current_cell"] is True
    cell_id = cell["group_id"]

    for home, name in ((founder, "Ana"), (b, "Bo"), (c, "Cy")):
        assert run(home, "profile", "set", "--name", name, "--contact", f"{name}@x")["groups"] == 1
    names = {m["member_id"]: m["name"] for m in run(c, "members", "cell")["members"]}
    assert names == {ids[founder]: "Ana", ids[b]: "Bo", ids[c]: "Cy"}

    sent = run(founder, "send", "cell", "meet at six")
    assert set(sent) == {"message_id", "cursor"}
    run(b, "send", cell_id, "I'll bring the banner")
    for home in (b, c):
        got = run(home, "read", "cell")["messages"]
        assert [m["text"] for m in got] == ["meet at six", "I'll bring the banner"]
        assert got[0]["sender"] == ids[founder] and got[0]["message_id"] == sent["message_id"]
        # Names the reader verified from the senders' sealed profiles.
        assert [m["sender_name"] for m in got] == ["Ana", "Bo"]
    assert run(c, "read", "cell")["messages"] == []  # nothing new
    assert texts(run(c, "read", "cell", "--since", "0")) == ["meet at six", "I'll bring the banner"]
    plain = subprocess.run(
        [*COMMAND, "read", "cell", "--since", "0", "--home", str(c)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert " Ana: meet at six" in plain and " Bo: I'll bring the banner" in plain, plain

    # A member added later reads only what came after.
    d, d_joined = join(tmp_path, "d", url, invite(founder))
    (waiting,) = run(b, "pending")["pending"]
    assert (waiting["member_id"], waiting["invited_by_name"]) == (d_joined["member_id"], "Ana")
    admit(founder, d_joined, b, c)
    assert run(d, "read", "cell", "--since", "0")["messages"] == []
    run(c, "send", "cell", "welcome, D")
    assert texts(run(d, "read", "cell")) == ["welcome, D"]
    assert texts(run(founder, "read", "cell"))[-1] == "welcome, D"

    # Live: a watcher gets messages sent while it listens.
    assert texts(run(b, "read", "cell")) == ["welcome, D"]
    watcher = subprocess.Popen(
        [*COMMAND, "watch", "--count", "2", "--timeout", "20", "--home", str(b), "--json"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run(founder, "send", "cell", "live one")
    run(d, "send", "cell", "live two")
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    *lines, end = [json.loads(line) for line in out.splitlines()]
    assert [m["text"] for m in lines] == ["live one", "live two"]
    assert [m["sender_name"] for m in lines] == ["Ana", None]  # D set no profile
    assert end == {"received": 2, "reason": "count", "reconnects": 0}
    assert all(m["group_id"] == cell_id for m in lines)

    # Split: B and C move to a new cell once both have signed. B's watch, started
    # before, follows B there.
    follower = subprocess.Popen(
        [*COMMAND, "watch", "--count", "1", "--timeout", "60", "--home", str(b), "--json"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    split = run(founder, "cell", "split", "cell", "--member", ids[b], "--member", ids[c])
    (motion,) = run(b, "motions")["motions"]
    assert (motion["motion_id"], motion["group_id"]) == (split["motion_id"], cell_id)
    assert (motion["signatures"], motion["needed"]) == (0, 2)
    assert sorted(motion["moved_names"]) == ["Bo", "Cy"]
    signed = {"motion_id": split["motion_id"], "kind": "split"}
    assert run(b, "sign", split["motion_id"]) == {**signed, "status": "open"}
    assert run(c, "sign", split["motion_id"]) == {**signed, "status": "done"}

    run(b, "send", "cell", "new cell, new epoch")
    assert texts(run(c, "read", "cell")) == ["new cell, new epoch"]
    out, err = follower.communicate(timeout=90)
    assert follower.returncode == 0, err
    followed, _ = [json.loads(line) for line in out.splitlines()]
    assert (followed["text"], followed["group_id"]) == ("new cell, new epoch", split["group_id"])
    run(founder, "send", "cell", "still here")
    assert texts(run(d, "read", "cell"))[-1] == "still here"
    (old,) = run(founder, "cells")["groups"]
    (new,) = run(c, "cells")["groups"]
    assert old["group_id"] == cell_id and new["group_id"] == split["group_id"]
    assert (old["members"], new["members"]) == (2, 2)
    assert old["epoch"] >= 2 and new["epoch"] == 1
    assert run(b, "status")["status"] == "active"


def test_a_dropped_roster_event_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b, c) = start_from(cell_of_three)
    run(founder, "send", "cell", "hello")
    assert texts(run(b, "read", "cell")) == ["hello"]
    # The operator deletes C's add event from the log and from the event stream.
    last_add = "(SELECT max(seq) FROM roster_events WHERE op = 'add')"
    sql(
        database_url,
        f"""DELETE FROM group_events g USING roster_events r, statements s
            WHERE r.op = 'add' AND r.seq = {last_add} AND s.statement_id = r.event_id
              AND g.kind = 'roster' AND position(s.body in g.body) > 0""",
        f"DELETE FROM roster_events WHERE op = 'add' AND seq = {last_add}",
    )
    run(b, "read", "cell", expect="verification_failed")
    run(c, "members", "cell", expect="verification_failed")


def test_a_swapped_kem_key_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b, c) = start_from(cell_of_three)
    run(founder, "send", "cell", "hello")
    from client.state import StateFile
    from crypto.sealing import KemPrivateKey

    # The operator swaps C's KEM key inside the stored add event for one of its own.
    theirs = StateFile(c).read(ENV["SPOKES_PASSPHRASE"]).kem.public_key().public_bytes()
    mine = KemPrivateKey.generate(KemPrivateKey.generate().suite).public_key().public_bytes()

    async def swap() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(
                """SELECT s.statement_id, s.body FROM statements s JOIN roster_events r
                   ON r.event_id = s.statement_id WHERE r.op = 'add' ORDER BY r.seq DESC LIMIT 1"""
            )
            body = bytes(row["body"])
            assert theirs in body
            await conn.execute(
                "UPDATE statements SET body = $1 WHERE statement_id = $2",
                body.replace(theirs, mine),
                row["statement_id"],
            )
        finally:
            await conn.close()

    run_sync(swap())
    run(b, "cells", expect="verification_failed")
    run(founder, "send", "cell", "anyone there?", expect="verification_failed")


def test_a_box_sealed_by_the_server_is_caught(start_from: StartFrom) -> None:
    from client.state import StateFile
    from crypto import epochs
    from crypto.encoding import b32d
    from crypto.roster import GroupRules, verify_log
    from tests.e2e.test_member_flow import ENV as env

    _, database_url, (founder, b, _) = start_from(cell_of_three)
    run(founder, "send", "cell", "the real secret")
    # The operator seals a secret of its own to B under the right info and swaps B's box.
    state = StateFile(b).read(env["SPOKES_PASSPHRASE"])
    cell_id = state.cell_id
    assert cell_id is not None
    founder_state = StateFile(founder).read(env["SPOKES_PASSPHRASE"])
    assert founder_state.genesis is not None
    rules = GroupRules.of(founder_state.genesis)
    log = verify_log(founder_state.groups[cell_id].events, rules=rules)
    me = log.members[state.member_id]
    forged = epochs.seal_secret(
        bytes(32),
        me.kem_suite,
        me.kem_public,
        log.group,
        log.epoch,
        log.roster_hash,
        state.member_id,
    )
    sql(
        database_url,
        f"UPDATE epoch_secrets SET sealed = '\\x{forged.hex()}'::bytea "
        f"WHERE member_id = '\\x{state.member_id.hex()}'::bytea AND epoch = {log.epoch}",
    )
    assert b32d(run(b, "whoami")["cell_id"]) == cell_id
    run(b, "read", "cell", expect="verification_failed")


def test_a_retired_epoch_is_replaced_by_the_sender(tmp_path: Path, served: tuple[str, str]) -> None:
    url, database_url = served
    founder = found(
        tmp_path, url, "--vouches", "1", "--probation-days", "0", "--epoch-messages", "100"
    )
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    admit(founder, b_joined)
    run(founder, "send", "cell", "first")
    epoch = run(founder, "cells")["groups"][0]["epoch"]
    # As if the epoch had carried the policy's 100 messages already.
    sql(database_url, "UPDATE groups SET epoch_messages = 100")
    run(founder, "send", "cell", "second")
    assert run(founder, "cells")["groups"][0]["epoch"] == epoch + 1
    assert texts(run(b, "read", "cell")) == ["first", "second"]


def test_statuses_still_verify_after_a_split_moves_the_vouchers(
    tmp_path: Path, start_from: StartFrom
) -> None:
    url, _, (founder, b, c) = start_from(cell_of_three)
    d, d_joined = join(tmp_path, "d", url, invite(founder))
    admit(founder, d_joined, b, c)  # D's vetting needs B's and C's vouches
    ids = {home: member_id(home) for home in (founder, b, c, d)}
    run(founder, "send", "cell", "everyone on the roster")
    before = {home: run(home, "status") for home in (d, c)}
    assert before[d]["vouches"] == 3

    split = run(founder, "cell", "split", "cell", "--member", ids[b], "--member", ids[c])
    run(b, "sign", split["motion_id"])
    assert run(c, "sign", split["motion_id"])["status"] == "done"

    # D stayed; B and C, who vouched for D, left. D's status reads as before.
    for viewer in (d, founder):
        after = run(viewer, "status", ids[d])
        assert after["verified"] is True
        assert after == {**before[d], "verified": True}
    # C moved: their certificate names the old cell, reached through the split.
    for viewer in (c, b):
        moved = run(viewer, "status", ids[c])
        assert moved["verified"] is True and moved["status"] == before[c]["status"]
        assert moved["cell_id"] == split["group_id"]
        assert moved["admitted_at"] == before[c]["admitted_at"]

    # A member of the new cell who was never in the old one sees C verified too
    # (from the old cell's log up to the split only).
    e, e_joined = join(tmp_path, "e", url, invite(b))
    admit(b, e_joined, c)
    run(b, "send", "cell", "E is on the roster")
    seen = run(e, "status", ids[c])
    assert seen["verified"] is True and seen["admitted_at"] == before[c]["admitted_at"]


def fingerprint_of(home: Path) -> tuple[int, str]:
    (group,) = run(home, "cells")["groups"]
    return group["roster_seq"], group["fingerprint"]


def test_cellmates_compare_the_same_roster_fingerprint(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, _ = served
    founder = found(tmp_path, url, "--vouches", "1", "--probation-days", "0")
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    admit(founder, b_joined)
    fingerprint_of(founder)  # the founder's client adds B to the roster
    seq, number = fingerprint_of(b)
    assert fingerprint_of(founder) == (seq, number)
    assert len(number.split()) == 4 and all(len(g) == 5 for g in number.split())

    plain = subprocess.run(
        [*COMMAND, "cells", "--home", str(b)], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert plain.returncode == 0, plain.stderr
    assert f"roster {seq}, fingerprint {number}" in plain.stdout

    c, c_joined = join(tmp_path, "c", url, invite(founder))
    admit(founder, c_joined, b)
    fingerprint_of(founder)  # adds C: the roster changes
    after = fingerprint_of(b)
    assert after == fingerprint_of(founder) == fingerprint_of(c)
    assert after[0] > seq and after[1] != number
    # Someone whose log has grown since compares at the other's seq.
    (back,) = run(c, "cells", "--at", str(seq))["groups"]
    assert (back["roster_seq"], back["fingerprint"]) == (seq, number)
    assert run(c, "cells", "--at", "999", expect="invalid_seq")["error"]["message"]
    assert run(c, "cells")["revocations"] == {"count": 0, "fingerprint": None}
