"""End to end: a server operator who rewrites the database is caught by the `spokes` command.

The test plays the operator: it edits PostgreSQL directly, keeping the
server's own tables consistent with the lie (so the server serves it without
complaint), and each member's next `spokes` command must fail with
`verification_failed` (or `equivocation`) rather than show anything. A
dropped roster event, a swapped KEM key and a forged epoch box are in
tests/e2e/test_cells.py. The honest network a lie starts from (`pair`,
`grown`) is built once and each test lies to its own copy (`start_from`,
tests/e2e/conftest.py).
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
from crypto.encoding import b32e, encode
from crypto.keys import IdentityKey, member_id_text
from crypto.network import make_key_bundle, verify_genesis
from crypto.roster import RosterState
from crypto.sealing import KemPrivateKey
from crypto.statements import Statement, pack, verify_statement
from tests.conftest import run_sync
from tests.e2e.conftest import StartFrom
from tests.e2e.test_cells import admit, texts
from tests.e2e.test_member_flow import COMMAND, ENV, found, invite, join, run

LIES = ("verification_failed", "equivocation")


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


def test_a_key_the_server_adds_to_a_roster_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
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


def to_epoch_two(founder: Path, b: Path, database_url: str) -> None:
    """The founder of a `pair` commits epoch 2 (epoch 1 retired by policy)."""
    run(founder, "send", "cell", "in epoch 1")
    assert texts(run(b, "read", "cell")) == ["in epoch 1"]

    async def retire(conn: Any) -> None:
        await conn.execute("UPDATE groups SET epoch_messages = 100")

    Operator(database_url).do(retire)
    run(founder, "send", "cell", "in epoch 2")
    assert run(founder, "cells")["groups"][0]["epoch"] == 2


def test_a_log_rolled_back_to_an_old_epoch_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
    to_epoch_two(founder, b, database_url)
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


def test_an_old_epoch_event_appended_again_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
    to_epoch_two(founder, b, database_url)
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


def test_an_old_epochs_box_served_for_the_new_epoch_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
    to_epoch_two(founder, b, database_url)
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


def test_reordered_messages_are_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
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


def test_a_message_dropped_and_renumbered_away_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
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


def test_a_dropped_message_is_caught(start_from: StartFrom) -> None:
    _, database_url, (founder, b) = start_from(pair)
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
def test_an_older_profile_restored_is_caught(start_from: StartFrom, new_epoch: bool) -> None:
    _, database_url, (founder, b) = start_from(pair)
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


# --- Membership facts the server used to supply (issue 7) ---------------------------
#
# Each test below plays an operator who runs a patched server (or edits the
# database), with one informant member where the attack needs one, and shows
# that the honest members' clients refuse: nothing they seal after the attack
# reaches the informant.

QUICK = ("--probation-days", "0", "--vetting-hours", "0", "--cell-min", "2")


def state_of(home: Path) -> Any:
    return StateFile(home).read(ENV["SPOKES_PASSPHRASE"])


async def boxes_for(conn: Any, member: bytes) -> int:
    """How many epoch secrets were ever sealed to `member`."""
    return int(
        await conn.fetchval("SELECT count(*) FROM epoch_secrets WHERE member_id = $1", member)
    )


def grown(tmp_path: Path, url: str, vouches: int, *names: str) -> list[Path]:
    """A founder's cell (policy: `vouches`, no probation or window, cells of 2+)
    grown by `names`, each invited and admitted by the founder and vouched for
    by every member before them; the founder's home first. A message makes
    every client add the newcomers to the roster."""
    homes = [found(tmp_path, url, "--vouches", str(vouches), *QUICK)]
    for name in names:
        home, joined = join(tmp_path, name, url, invite(homes[0]))
        admit(homes[0], joined, *homes[1:])
        homes.append(home)
    run(homes[-1], "send", "cell", f"{len(homes)} of us")
    return homes


def fake_group_around(
    database_url: str, informant: Path, victim: Path, *, move_victim: bool
) -> bytes:
    """A group the informant signs into being around the victim (a made-up split
    origin), stored by a patched server that lists the victim in it, and with
    `move_victim` says it is the victim's cell now. Its id."""
    from server.services.roster_ops import add_founding_members, record_creation

    mine, theirs = state_of(informant), state_of(victim)
    assert mine.genesis is not None and mine.key_bundle and theirs.key_bundle
    genesis = mine.genesis
    fake = roster.make_group(
        mine.identity,
        genesis.network_id,
        int(time.time()),
        [mine.key_bundle, theirs.key_bundle],
        origin=os.urandom(32),
        rules=roster.GroupRules.of(genesis),
    )

    async def store(conn: Any) -> None:
        now = await conn.fetchval("SELECT now()")
        await record_creation(conn, genesis.network_id, fake, now)
        await add_founding_members(conn, fake, now)
        if move_victim:
            await conn.execute(
                "UPDATE members SET cell_id = $1 WHERE member_id = $2",
                fake.group_id,
                theirs.member_id,
            )

    Operator(database_url).do(store)
    return fake.group_id


def test_a_cell_an_informant_founds_around_a_member_is_refused(start_from: StartFrom) -> None:
    # B is the victim and C the informant (the split test's network, built once).
    _, database_url, (founder, victim, informant) = start_from(grown, 1, "b", "c")
    theirs = state_of(victim)
    # The informant signs a create holding themself and the victim, with a
    # made-up split origin; the patched server says it is the victim's cell now.
    fake = fake_group_around(database_url, informant, victim, move_victim=True)
    caught(victim, "send", "cell", "the plan", because="no split of your cell made", tries=2)
    assert state_of(victim).cell_id == theirs.cell_id  # still in the real cell

    caught(victim, "read", "cell", because="no split of your cell made")
    messages = Operator(database_url).do(
        lambda conn: conn.fetchval(
            "SELECT count(*) FROM group_events WHERE group_id = $1 AND kind = 'message'",
            fake,
        )
    )
    assert messages == 0


def test_an_add_short_of_the_policys_vouches_is_refused(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    # A founding cell of one admits on its founder's certificate.
    founder, informant = grown(tmp_path, url, 2, "informant")
    assert run(founder, "cells")["groups"][0]["members"] == 2
    confederate, joined = join(tmp_path, "confederate", url, invite(informant))
    status = run(
        informant, "admit", joined["member_id"], "--safety-number", joined["safety_number"]
    )
    assert status["status"] == "pending"  # the founder's vouch is still needed
    mine, theirs = state_of(informant), state_of(confederate)
    assert mine.genesis is not None and mine.cell_id is not None and theirs.key_bundle

    # The informant signs an add carrying only their own certificate; the
    # patched server appends it and marks the confederate admitted.
    async def add_confederate(conn: Any) -> None:
        row = await conn.fetchrow(
            "SELECT body, sig FROM statements WHERE type = 'admission' AND author = $1",
            mine.member_id,
        )
        from crypto.chains import parse_admission

        certificate = parse_admission(
            verify_statement(bytes(row["body"]), bytes(row["sig"]), "admission", mine.network_id)
        )
        log = await roster_log(conn, mine.cell_id)
        state = replay(log, await rules_of(conn))
        fields = roster.add_fields(theirs.key_bundle, certificate, [])
        event = roster.sign_event(
            mine.identity, mine.network_id, state, "add", int(time.time()), fields
        )
        await append_roster(conn, mine.cell_id, state.seq + 1, event, "add", statement_id=event.id)
        await conn.execute(
            "UPDATE members SET admitted_at = now() WHERE member_id = $1", theirs.member_id
        )
        await conn.execute(
            "INSERT INTO group_members (group_id, member_id) VALUES ($1, $2)",
            mine.cell_id,
            theirs.member_id,
        )
        await conn.execute(
            "UPDATE groups SET rekey_needed = true WHERE group_id = $1", mine.cell_id
        )

    Operator(database_url).do(add_confederate)
    caught(founder, "send", "cell", "the plan", because="1 of the 2 vouches", tries=2)
    caught(founder, "read", "cell", because="1 of the 2 vouches")
    assert Operator(database_url).do(lambda conn: boxes_for(conn, theirs.member_id)) == 0
    # Asked about the confederate, the founder's client refuses the log too.
    caught(founder, "status", joined["member_id"], because="1 of the 2 vouches")


def test_cellmates_hidden_from_a_newcomers_evidence_are_caught(
    tmp_path: Path, start_from: StartFrom
) -> None:
    # B is the informant (the block test's network, built once).
    url, database_url, (founder, informant, c) = start_from(grown, 2, "b", "c")
    assert run(informant, "cells")["groups"][0]["members"] == 3
    confederate, joined = join(tmp_path, "confederate", url, invite(informant))
    hidden = [member_of(founder), member_of(c)]

    # The operator leaves the founder and C out of the cell the evidence shows,
    # so the confederate would need only the informant's certificate.
    def hide(conn: Any) -> Any:
        return conn.execute("UPDATE members SET cell_id = NULL WHERE member_id = ANY($1)", hidden)

    Operator(database_url).do(hide)
    number = joined["safety_number"]
    caught(informant, "admit", joined["member_id"], "--safety-number", number, because="leaves out")
    certificates = Operator(database_url).do(
        lambda conn: conn.fetchval(
            "SELECT count(*) FROM statements WHERE type = 'admission' AND author = $1",
            member_of(informant),
        )
    )
    assert certificates == 0  # nothing was signed


def test_a_member_of_another_cell_listed_in_this_one_is_refused(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    url, database_url = served
    founder, b, c, d = grown(tmp_path, url, 1, "b", "c", "d")
    split = run(
        founder,
        "cell",
        "split",
        "cell",
        "--member",
        member_id_text(member_of(c)),
        "--member",
        member_id_text(member_of(d)),
    )
    run(c, "sign", split["motion_id"])
    assert run(d, "sign", split["motion_id"])["status"] == "done"
    # In the other cell, C brings in someone who turns informant.
    informant, joined = join(tmp_path, "informant", url, invite(c))
    admit(c, joined, d)  # D stands outside C's invite subtree: their vouch is needed
    run(d, "send", "cell", "welcome")
    spy = member_of(informant)
    cell_a = state_of(founder).cell_id

    # The operator lists the informant among cell A's members.
    def relist(conn: Any) -> Any:
        return conn.execute("UPDATE members SET cell_id = $1 WHERE member_id = $2", cell_a, spy)

    Operator(database_url).do(relist)
    caught(founder, "send", "cell", "the plan", tries=2)
    caught(b, "send", "cell", "the plan")

    async def sealed_in_a(conn: Any) -> int:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM epoch_secrets WHERE group_id = $1 AND member_id = $2",
                cell_a,
                spy,
            )
        )

    assert Operator(database_url).do(sealed_in_a) == 0


def test_a_split_below_the_minimum_is_refused_and_writes_nothing(start_from: StartFrom) -> None:
    _, database_url, (founder, b, c) = start_from(grown, 1, "b", "c")
    me = member_id_text(member_of(b))
    refused = run(b, "cell", "split", "cell", "--member", me, expect="below_minimum")
    assert "at least 2" in refused["error"]["message"]
    motions = Operator(database_url).do(lambda conn: conn.fetchval("SELECT count(*) FROM motions"))
    assert motions == 0
    assert run(b, "cells")["groups"][0]["members"] == 3


def test_a_block_withheld_from_the_cell_is_caught_by_the_blocker(
    tmp_path: Path, start_from: StartFrom
) -> None:
    url, database_url, (founder, b, c) = start_from(grown, 2, "b", "c")
    stranger, joined = join(tmp_path, "stranger", url, invite(founder))
    newcomer = joined["member_id"]
    run(founder, "admit", newcomer, "--safety-number", joined["safety_number"])
    assert run(c, "block", newcomer)["status"] == "blocked"
    subject = member_of(stranger)

    # The operator drops C's block, so the cell sees a completed vetting, and
    # B vouches; the founder's honest client then adds the newcomer.
    async def withhold(conn: Any) -> None:
        await conn.execute("DELETE FROM blocks WHERE subject_id = $1", subject)
        await conn.execute("UPDATE members SET blocked_at = NULL WHERE member_id = $1", subject)

    Operator(database_url).do(withhold)
    run(b, "vouch", newcomer)
    run(founder, "send", "cell", "welcome?")
    assert run(founder, "cells")["groups"][0]["members"] == 4
    caught(c, "read", "cell", because="your block was kept from the cell", tries=2)


def test_a_group_the_server_lists_around_a_member_gets_nothing_of_theirs(
    start_from: StartFrom,
) -> None:
    # B is the victim and C the informant (the split test's network, built once).
    _, database_url, (founder, victim, informant) = start_from(grown, 1, "b", "c")
    # The patched server lists a made-up group holding the informant and the
    # victim among the victim's groups; the victim's cell stays as it was.
    fake = fake_group_around(database_url, informant, victim, move_victim=False)
    sealed = run(victim, "profile", "set", "--name", "Victim Realname", "--contact", "flat 3")
    assert sealed["groups"] == 1  # their own cell only
    run(victim, "send", "cell", "still here")

    async def given_to_fake(conn: Any) -> int:
        return int(
            await conn.fetchval(
                "SELECT (SELECT count(*) FROM epoch_secrets WHERE group_id = $1)"
                " + (SELECT count(*) FROM profiles WHERE group_id = $1)",
                fake,
            )
        )

    assert Operator(database_url).do(given_to_fake) == 0
    caught(victim, "cells", because="no verified event puts you in")
    run(victim, "send", b32e(fake), "hello?", expect="not_found")
