"""End to end: a server operator who rewrites the database is caught by the `spokes` command.

The test plays the operator: it edits PostgreSQL directly, keeping the
server's own tables consistent with the lie (so the server serves it without
complaint), and each member's next `spokes` command must fail with
`verification_failed` (or `equivocation`) rather than show anything. A
dropped roster event, a swapped KEM key and a forged epoch box are in
tests/e2e/test_cells.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from client.state import StateFile
from crypto import roster
from crypto.encoding import encode
from crypto.keys import IdentityKey, member_id_text
from crypto.network import make_key_bundle, verify_genesis
from crypto.roster import RosterState
from crypto.sealing import KemPrivateKey
from crypto.statements import Statement, pack, verify_statement
from tests.conftest import run_sync
from tests.e2e.test_cells import admit, texts
from tests.e2e.test_member_flow import COMMAND, ENV, found, invite, join, run

LIES = ("verification_failed", "equivocation")


@pytest.fixture
def served(spawn_server: Any, database_url: str) -> tuple[str, str]:
    url: str = spawn_server("--database-url", database_url).url
    return url, database_url


def caught(home: Path, *args: str, because: str = "", tries: int = 1) -> dict[str, Any]:
    """`spokes ARGS` fails with a lie detected, saying `because` (each of `tries` times:
    the refused answer left nothing behind that would let a retry through)."""
    for _ in range(tries):
        process = subprocess.run(
            [*COMMAND, *args, "--home", str(home), "--json"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        lines = process.stdout.splitlines()
        assert len(lines) == 1, f"stdout: {process.stdout!r}\nstderr: {process.stderr}"
        result: dict[str, Any] = json.loads(lines[0])
        assert process.returncode == 1, f"{args} was accepted: {result}"
        assert result["error"]["code"] in LIES, result
        assert because in result["error"]["message"], result
    return result


# --- The operator's tools ------------------------------------------------------


class Operator:
    """Direct access to the server's database, as a malicious operator has it."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    def do(self, work: Any) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(self.url)
            try:
                async with conn.transaction():
                    return await work(conn)
            finally:
                await conn.close()

        return run_sync(go())


async def network_of(conn: Any) -> bytes:
    return bytes(await conn.fetchval("SELECT network_id FROM networks"))


async def roster_log(conn: Any, group: bytes) -> list[tuple[int, Statement, str]]:
    """The group's stored roster log: (seq, verified statement, op)."""
    network = await network_of(conn)
    rows = await conn.fetch(
        """SELECT r.seq, r.op, s.body, s.sig FROM roster_events r
           JOIN statements s ON s.statement_id = r.event_id
           WHERE r.group_id = $1 ORDER BY r.seq""",
        group,
    )
    return [
        (r["seq"], verify_statement(bytes(r["body"]), bytes(r["sig"]), "roster", network), r["op"])
        for r in rows
    ]


async def rules_of(conn: Any) -> roster.GroupRules:
    """The roster rules of the network's genesis, as the database holds it."""
    row = await conn.fetchrow("SELECT network_id, genesis_body, genesis_sig FROM networks")
    genesis = verify_genesis(bytes(row["genesis_body"]), bytes(row["genesis_sig"]))
    return roster.GroupRules.of(genesis)


def replay(log: list[tuple[int, Statement, str]], rules: roster.GroupRules) -> RosterState:
    state = None
    for _, event, _ in log:
        state = roster.apply(state, event, rules=rules)
    assert state is not None
    return state


async def append_roster(
    conn: Any, group: bytes, seq: int, event: Statement, op: str, *, statement_id: bytes
) -> None:
    """Store `event` as the log's entry `seq` and stream it as the group's next event."""
    await conn.execute(
        """INSERT INTO statements (statement_id, network_id, type, author, body, sig, group_id)
           VALUES ($1, $2, 'roster', $3, $4, $5, $6)""",
        statement_id,
        await network_of(conn),
        event.author,
        event.body,
        event.signature,
        group,
    )
    await conn.execute(
        "INSERT INTO roster_events (group_id, seq, event_id, op) VALUES ($1, $2, $3, $4)",
        group,
        seq,
        statement_id,
        op,
    )
    last = await conn.fetchval(
        """UPDATE groups SET last_seq = last_seq + 1, roster_seq = $2, roster_head = $3
           WHERE group_id = $1 RETURNING last_seq""",
        group,
        seq,
        event.id,
    )
    await conn.execute(
        """INSERT INTO group_events (group_id, seq, kind, sender, body)
           VALUES ($1, $2, 'roster', $3, $4)""",
        group,
        last,
        event.author,
        encode({"body": event.body, "sig": event.signature}),
    )


def cell_id(home: Path) -> bytes:
    state = StateFile(home).read(ENV["SPOKES_PASSPHRASE"])
    assert state.cell_id is not None
    return state.cell_id


def member_of(home: Path) -> bytes:
    return StateFile(home).read(ENV["SPOKES_PASSPHRASE"]).member_id


# --- (a) a key added to a roster -------------------------------------------------


def test_a_key_the_server_adds_to_a_roster_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b = pair(tmp_path, url)
    run(founder, "send", "cell", "hello")
    assert texts(run(b, "read", "cell")) == ["hello"]
    group = cell_id(founder)
    outsider = IdentityKey.generate()
    kem = KemPrivateKey.generate()

    async def add_outsider(conn: Any) -> None:
        log = await roster_log(conn, group)
        state = replay(log, await rules_of(conn))
        network = await network_of(conn)
        now = int(time.time())
        bundle = make_key_bundle(
            outsider, network, kem.suite.value, kem.public_key().public_bytes(), now, now + 86400
        )
        # The operator signs with the only key it has: its own, not a member's.
        event = roster.sign_event(
            outsider,
            network,
            state,
            "add",
            now,
            {"bundle": pack(bundle.statement), "certificate": [], "vouches": []},
        )
        await append_roster(conn, group, state.seq + 1, event, "add", statement_id=event.id)
        await conn.execute("UPDATE groups SET rekey_needed = true WHERE group_id = $1", group)

    Operator(database_url).do(add_outsider)
    outsider_only = "only members of the group can extend its log"
    caught(b, "cells", because=outsider_only)
    caught(b, "read", "cell", because=outsider_only)
    caught(founder, "members", "cell", because=outsider_only)
    caught(founder, "send", "cell", "who is that?", because=outsider_only)


# --- (b) an old epoch replayed -----------------------------------------------------


def pair(tmp_path: Path, url: str) -> tuple[Path, Path]:
    """A founder and B in one cell (an epoch retires after 100 messages)."""
    founder = found(
        tmp_path, url, "--vouches", "1", "--probation-days", "0", "--epoch-messages", "100"
    )
    b, b_joined = join(tmp_path, "b", url, invite(founder))
    admit(founder, b_joined)
    return founder, b


def cell_at_epoch_two(tmp_path: Path, url: str, database_url: str) -> tuple[Path, Path]:
    """A founder and B; epoch 2 committed by the founder (epoch 1 retired by policy)."""
    founder, b = pair(tmp_path, url)
    run(founder, "send", "cell", "in epoch 1")
    assert texts(run(b, "read", "cell")) == ["in epoch 1"]

    async def retire(conn: Any) -> None:
        await conn.execute("UPDATE groups SET epoch_messages = 100")

    Operator(database_url).do(retire)
    run(founder, "send", "cell", "in epoch 2")
    assert run(founder, "cells")["groups"][0]["epoch"] == 2
    return founder, b


def test_a_log_rolled_back_to_an_old_epoch_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b = cell_at_epoch_two(tmp_path, url, database_url)
    assert texts(run(b, "read", "cell")) == ["in epoch 2"]  # B has seen epoch 2
    group = cell_id(founder)

    async def roll_back(conn: Any) -> None:
        # A tidy lie: the epoch-2 event and everything streamed since are gone, and the
        # group row is put back as it was, so the server itself takes epoch-1 messages again.
        log = await roster_log(conn, group)
        seq, event, op = log[-1]
        assert (op, event.fields["epoch"]) == ("epoch", 2)
        wire = encode({"body": event.body, "sig": event.signature})
        first_gone = await conn.fetchval(
            "SELECT seq FROM group_events WHERE group_id = $1 AND kind = 'roster' AND body = $2",
            group,
            wire,
        )
        await conn.execute(
            "DELETE FROM group_events WHERE group_id = $1 AND seq >= $2", group, first_gone
        )
        await conn.execute("DELETE FROM roster_events WHERE group_id = $1 AND seq = $2", group, seq)
        await conn.execute("DELETE FROM messages WHERE group_id = $1 AND epoch = 2", group)
        await conn.execute("DELETE FROM epoch_secrets WHERE group_id = $1 AND epoch = 2", group)
        before = replay(log[:-1], await rules_of(conn))
        await conn.execute(
            """UPDATE groups SET last_seq = $2, roster_seq = $3, roster_head = $4, epoch = 1,
                      rekey_needed = false, epoch_messages = 0 WHERE group_id = $1""",
            group,
            first_gone - 1,
            before.seq,
            before.head,
        )

    Operator(database_url).do(roll_back)
    shorter = "fewer than the 4 this client already verified"
    caught(b, "read", "cell", because=shorter, tries=2)
    caught(b, "send", "cell", "still epoch 2?", because=shorter)
    caught(founder, "cells", because=shorter)


def test_an_old_epoch_event_appended_again_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b = cell_at_epoch_two(tmp_path, url, database_url)
    assert texts(run(b, "read", "cell")) == ["in epoch 2"]
    group = cell_id(founder)

    async def reappend_epoch_one(conn: Any) -> None:
        log = await roster_log(conn, group)
        (old,) = [e for _, e, op in log if op == "epoch" and e.fields["epoch"] == 1]
        # The same signed body, stored under a fresh row id so the tables take it.
        await append_roster(conn, group, log[-1][0] + 1, old, "epoch", statement_id=os.urandom(32))
        await conn.execute("UPDATE groups SET epoch = 1 WHERE group_id = $1", group)

    Operator(database_url).do(reappend_epoch_one)
    replayed = "does not extend the current head of the log"
    caught(b, "read", "cell", because=replayed)
    caught(founder, "send", "cell", "back to epoch 1?", because=replayed)


def test_an_old_epochs_box_served_for_the_new_epoch_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b = cell_at_epoch_two(tmp_path, url, database_url)
    group, member = cell_id(founder), member_of(b)

    async def replay_box(conn: Any) -> None:
        # B has not opened epoch 2 yet: hand it B's own (genuine) box of epoch 1 instead.
        await conn.execute(
            """UPDATE epoch_secrets SET sealed = (SELECT sealed FROM epoch_secrets
                   WHERE group_id = $1 AND member_id = $2 AND epoch = 1)
               WHERE group_id = $1 AND member_id = $2 AND epoch = 2""",
            group,
            member,
        )

    Operator(database_url).do(replay_box)
    caught(b, "read", "cell", because="does not match the commitment", tries=2)


# --- (c) messages reordered, (d) a message dropped ------------------------------------


async def message_rows(conn: Any, group: bytes, sender: bytes) -> list[tuple[int, bytes]]:
    """(seq, body) of the sender's message events in the group, in log order."""
    rows = await conn.fetch(
        """SELECT seq, body FROM group_events
           WHERE group_id = $1 AND kind = 'message' AND sender = $2 ORDER BY seq""",
        group,
        sender,
    )
    return [(r["seq"], bytes(r["body"])) for r in rows]


def test_reordered_messages_are_caught(tmp_path: Path, served: tuple[str, str]) -> None:
    url, database_url = served
    founder, b = pair(tmp_path, url)
    for text in ("one", "two", "three"):
        run(founder, "send", "cell", text)
    group, sender = cell_id(founder), member_of(founder)

    async def swap(conn: Any) -> None:
        rows = await message_rows(conn, group, sender)
        (first, first_body), (second, second_body) = rows[0], rows[1]
        for seq, body in ((first, second_body), (second, first_body)):
            await conn.execute(
                "UPDATE group_events SET body = $3 WHERE group_id = $1 AND seq = $2",
                group,
                seq,
                body,
            )

    Operator(database_url).do(swap)
    # The "prev" each message names catches it first (the counter check is unit-tested).
    caught(b, "read", "cell", because="was dropped", tries=2)


def test_a_message_dropped_and_renumbered_away_is_caught(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b = pair(tmp_path, url)
    for text in ("one", "two", "three"):
        run(founder, "send", "cell", text)
    group, sender = cell_id(founder), member_of(founder)

    async def drop_and_renumber(conn: Any) -> None:
        rows = await message_rows(conn, group, sender)
        gone = rows[1][0]
        await conn.execute("DELETE FROM group_events WHERE group_id = $1 AND seq = $2", group, gone)
        # Close the gap, so that event seqs alone show nothing.
        for seq in sorted(seq for seq, _ in rows if seq > gone):
            await conn.execute(
                "UPDATE group_events SET seq = seq - 1 WHERE group_id = $1 AND seq = $2", group, seq
            )
        await conn.execute("UPDATE groups SET last_seq = last_seq - 1 WHERE group_id = $1", group)

    Operator(database_url).do(drop_and_renumber)
    caught(b, "read", "cell", because="was dropped", tries=2)


def test_a_dropped_message_is_caught(tmp_path: Path, served: tuple[str, str]) -> None:
    url, database_url = served
    founder, b = pair(tmp_path, url)
    run(founder, "send", "cell", "one")
    assert texts(run(b, "read", "cell")) == ["one"]  # B's cursor is past the first
    for text in ("two", "three", "four"):
        run(founder, "send", "cell", text)
    group, sender = cell_id(founder), member_of(founder)

    async def drop(conn: Any) -> None:
        rows = await message_rows(conn, group, sender)
        middle, _ = rows[2]  # "three": B has "one"; "two" and "four" stay
        await conn.execute(
            "DELETE FROM group_events WHERE group_id = $1 AND seq = $2", group, middle
        )

    Operator(database_url).do(drop)
    caught(b, "read", "cell", because="events were dropped", tries=2)


# --- (e) an old profile served as current -----------------------------------------------


def names(home: Path) -> dict[str, str | None]:
    return {m["member_id"]: m["name"] for m in run(home, "members", "cell")["members"]}


@pytest.mark.parametrize("new_epoch", [False, True], ids=["same epoch", "across epochs"])
def test_an_older_profile_restored_is_caught(
    tmp_path: Path, served: tuple[str, str], new_epoch: bool
) -> None:
    url, database_url = served
    founder, b = pair(tmp_path, url)
    group, author = cell_id(founder), member_of(founder)
    run(founder, "profile", "set", "--name", "Old Name", "--contact", "old@x")
    assert names(b)[member_id_text(author)] == "Old Name"  # B has seen version 1

    async def keep(conn: Any) -> Any:
        return await conn.fetchrow(
            "SELECT epoch, sealed FROM profiles WHERE group_id = $1 AND member_id = $2",
            group,
            author,
        )

    old = Operator(database_url).do(keep)
    if new_epoch:  # the founder's next message commits epoch 2, and re-seals version 1 there
        Operator(database_url).do(
            lambda conn: conn.execute("UPDATE groups SET epoch_messages = 100")
        )
        run(founder, "send", "cell", "in epoch 2")
    run(founder, "profile", "set", "--name", "New Name", "--contact", "new@x")
    assert names(b)[member_id_text(author)] == "New Name"  # version 2

    async def restore(conn: Any) -> None:
        # The genuine, correctly signed row of version 1, back in place.
        await conn.execute(
            """UPDATE profiles SET epoch = $3, sealed = $4
               WHERE group_id = $1 AND member_id = $2""",
            group,
            author,
            old["epoch"],
            old["sealed"],
        )

    Operator(database_url).do(restore)
    caught(b, "members", "cell", because="older than version 2", tries=2)
