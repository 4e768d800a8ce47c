"""End to end: revocations are one signed hash chain that clients carry forward.

A steward runs `spokes revoke`; the cell takes the revoked member off its
roster and moves to a new key, and nothing sent after reaches them. A
server that hides the revocation from one cellmate is caught by that
cellmate as soon as a message from someone who saw it arrives (each message
carries, inside its encryption, the revocation head its sender knew), and
by anyone who saw it before, whose client refuses a shorter list.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from crypto.encoding import b32d
from tests.e2e.conftest import StartFrom
from tests.e2e.test_cells import admit, cell_of_three, member_id, texts
from tests.e2e.test_lying_server import Operator, caught
from tests.e2e.test_member_flow import COMMAND, ENV, invite, join, run


def cell_of_four(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path]:
    """The founder (the steward), B, C and D, all on the cell's roster."""
    founder, b, c = cell_of_three(tmp_path, url)
    d, d_joined = join(tmp_path, "d", url, invite(founder))
    admit(founder, d_joined, b, c)
    for home in (founder, b, c, d):
        run(home, "read", "cell")  # every client syncs: D is added, the keys are current
    assert len(roster(founder)) == 4
    return founder, b, c, d


def roster(home: Path) -> list[str]:
    return [m["member_id"] for m in run(home, "members", "cell")["members"]]


def refused(home: Path, *args: str) -> dict[str, Any]:
    process = subprocess.run(
        [*COMMAND, *args, "--home", str(home), "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 1, process.stdout
    error: dict[str, Any] = json.loads(process.stdout.splitlines()[0])["error"]
    return error


def key_periods(database_url: str, group: bytes, member: bytes) -> tuple[int, int]:
    """The group's current key period, and the latest one sealed to `member` (0: none)."""

    async def read(conn: Any) -> tuple[int, int]:
        current = await conn.fetchval("SELECT epoch FROM groups WHERE group_id = $1", group)
        latest = await conn.fetchval(
            "SELECT coalesce(max(epoch), 0) FROM epoch_secrets WHERE group_id = $1 "
            "AND member_id = $2",
            group,
            member,
        )
        return int(current), int(latest)

    result: tuple[int, int] = Operator(database_url).do(read)
    return result


async def hide_revocations(conn: Any) -> None:
    """The operator empties the revocation list the server serves (its one revocation)."""
    statement = await conn.fetchval("SELECT statement_id FROM revocations")
    await conn.execute("DELETE FROM revocations")
    await conn.execute("DELETE FROM statements WHERE statement_id = $1", statement)
    await conn.execute("UPDATE networks SET revocation_seq = 0, revocation_head = NULL")


def test_after_a_revocation_the_cell_goes_on_without_the_revoked(start_from: StartFrom) -> None:
    _, database_url, (founder, b, c, d) = start_from(cell_of_four)
    revoked = member_id(d)
    result = run(founder, "revoke", revoked)
    assert (result["member_id"], result["status"], result["seq"]) == (revoked, "revoked", 0)
    # Only a steward signs one, and a member is revoked once.
    assert refused(b, "revoke", member_id(c))["code"] == "not_steward"
    assert refused(founder, "revoke", revoked)["code"] == "already_revoked"

    run(b, "send", "cell", "after the revocation")
    assert "after the revocation" in texts(run(c, "read", "cell"))
    assert "after the revocation" in texts(run(founder, "read", "cell"))
    run(founder, "send", "cell", "the steward too")
    assert "the steward too" in texts(run(c, "read", "cell"))
    for home in (founder, b, c):
        assert revoked not in roster(home)
        assert len(roster(home)) == 3

    # Nothing sent after reaches D: their sessions are over, and no epoch
    # since the removal has a key sealed to them.
    error = refused(d, "read", "cell")
    assert error["code"] not in ("verification_failed", "equivocation"), error

    async def cell_of_d(conn: Any) -> bytes:
        return bytes(
            await conn.fetchval("SELECT cell_id FROM members WHERE member_id = $1", b32d(revoked))
        )

    current, latest_for_d = key_periods(
        database_url, Operator(database_url).do(cell_of_d), b32d(revoked)
    )
    assert latest_for_d < current


def test_a_revocation_hidden_from_a_cellmate_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b, c, d) = start_from(cell_of_four)
    run(founder, "revoke", member_id(d))
    # B's client learns the revocation (and takes D off the roster) and
    # sends: the message carries, sealed, the revocation head B knows.
    run(b, "send", "cell", "D is out")

    # The operator takes the revocation out of what the server serves: C, who
    # has not seen it yet, is shown an empty revocation list.
    Operator(database_url).do(hide_revocations)
    result = caught(
        c, "read", "cell", because="withholds a revocation that a cellmate has seen", tries=2
    )
    assert "D is out" not in str(result)
    # B, who verified the longer list before, refuses the shorter one outright.
    caught(b, "read", "cell", because="rolled the revocation list back")
