"""End to end: expelling an informant by a quorum of their cell.

A member moves `spokes expel D --reason …`; others sign; the signature that
completes the quorum carries it out: the revocation joins the network's
chain with the cell's roster event, D's open socket closes at once, D's
token is refused everywhere, and nothing sent afterwards opens with D's keys.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from client.state import StateFile
from crypto.encoding import Value, b32d, b32e, b64e, encode
from crypto.epochs import MessageKey
from crypto.messages import Header, seal_message
from server.store.events import append_event
from tests.e2e.conftest import StartFrom
from tests.e2e.test_cells import admit, member_id, texts
from tests.e2e.test_councils import elected, two_cells
from tests.e2e.test_lying_server import Operator, caught
from tests.e2e.test_member_flow import ENV, found, invite, join, run
from tests.e2e.test_revocation import (
    cell_of_four,
    hide_revocations,
    key_periods,
    refused,
    roster,
)

OPENAPI = Path(__file__).resolve().parents[2] / "server" / "openapi.json"


class Watcher(threading.Thread):
    """A socket of D's, held open in a thread of its own; notes when the server closes it."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.ready = threading.Event()
        self.closed_at: float | None = None
        self.close_code: int | None = None

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(self.url + "/v1/ws", headers=headers)
            self.ready.set()
            async with asyncio.timeout(60):
                async for _ in ws:
                    pass
            self.closed_at = time.time()
            self.close_code = ws.close_code


def token_of(home: Path) -> str:
    session = StateFile(home).read(ENV["SPOKES_PASSPHRASE"]).session
    assert session is not None
    return session.token


def test_an_expelled_member_is_cut_off_at_once_and_reads_nothing_after(
    start_from: StartFrom,
) -> None:
    url, database_url, (founder, b, c, d) = start_from(cell_of_four)
    expelled = member_id(d)
    run(d, "read", "cell")  # D's session is fresh
    watcher = Watcher(url, token_of(d))
    watcher.start()
    assert watcher.ready.wait(20)

    opened = run(b, "expel", expelled, "--reason", "was seen reporting to the police")
    assert opened["status"] == "open" and opened["needed"] == 2  # a majority of the 3 others
    motion = opened["motion_id"]
    listed = {m["motion_id"]: m for m in run(c, "motions")["motions"]}
    assert listed[motion]["reason"] == "was seen reporting to the police"
    # The subject sees the motion but not the reason, and can't sign it.
    theirs = {m["motion_id"]: m for m in run(d, "motions")["motions"]}
    assert theirs[motion]["reason"] is None
    assert refused(d, "sign", motion)["code"] == "not_allowed"

    done = run(c, "sign", motion)
    assert (done["status"], done["kind"], done["member_id"]) == ("done", "expel", expelled)

    watcher.join(30)
    assert watcher.closed_at is not None and watcher.close_code == 4403

    async def revoked_at(conn: Any) -> float:
        at = await conn.fetchval(
            "SELECT revoked_at FROM members WHERE member_id = $1", b32d(expelled)
        )
        return float(at.timestamp())

    latency = watcher.closed_at - Operator(database_url).do(revoked_at)
    print(f"\nlast quorum signature -> expelled member's socket closed: {latency * 1000:.0f} ms")
    assert latency < 1.0

    # D's token is refused on every endpoint that asks for one.
    statuses = asyncio.run(_statuses(url, d))
    assert statuses, "no endpoint asks for a session"
    assert {k: v for k, v in statuses.items() if v != 401} == {}

    # The cell goes on without D: a new key period, sealed to the three.
    run(b, "send", "cell", "after the expulsion")
    assert "after the expulsion" in texts(run(founder, "read", "cell"))
    assert "after the expulsion" in texts(run(c, "read", "cell"))
    for home in (founder, b, c):
        assert expelled not in roster(home)
    error = refused(d, "read", "cell")
    assert error["code"] not in ("verification_failed", "equivocation"), error

    async def facts(conn: Any) -> tuple[bytes, str, str]:
        group = bytes(
            await conn.fetchval("SELECT cell_id FROM members WHERE member_id = $1", b32d(expelled))
        )
        ops = await conn.fetch(
            "SELECT op FROM roster_events WHERE group_id = $1 ORDER BY seq DESC LIMIT 3", group
        )
        op = "remove" if "remove" in [r["op"] for r in ops] else ops[0]["op"]
        status = await conn.fetchval(
            "SELECT status FROM motions WHERE motion_id = $1", b32d(motion)
        )
        return group, op, status

    group, op, status = Operator(database_url).do(facts)
    current, latest_for_d = key_periods(database_url, group, b32d(expelled))
    assert latest_for_d < current  # no key period since the expulsion is sealed to D
    assert (op, status) == ("remove", "done")
    # Every client sees the expulsion in the network's revocation chain.
    assert run(founder, "cells")["revocations"]["count"] == 1


def test_too_few_signatures_leave_the_motion_open_and_nobody_expelled(
    start_from: StartFrom,
) -> None:
    _, _, (founder, b, c, d) = start_from(cell_of_four)
    target = member_id(c)
    opened = run(d, "expel", target, "--reason", "a grudge")
    assert opened["status"] == "open"
    # The subject's own signature never counts: still one of two.
    assert refused(c, "sign", opened["motion_id"])["code"] == "not_allowed"
    listed = {m["motion_id"]: m for m in run(b, "motions")["motions"]}
    assert listed[opened["motion_id"]]["signatures"] == 1
    assert target in roster(founder)
    # Nobody can move their own expulsion either.
    assert refused(c, "expel", target, "--reason", "me")["code"] == "not_allowed"


async def _statuses(url: str, home: Path) -> dict[str, int]:
    """Each endpoint that answers 401 without a token, and what it answers with `home`'s."""
    state = StateFile(home).read(ENV["SPOKES_PASSPHRASE"])
    assert state.session is not None and state.cell_id is not None
    token = state.session.token
    paths: dict[str, Any] = json.loads(OPENAPI.read_text())["paths"]
    dummy = b32e(state.cell_id)
    # A message the member signed, to their old cell: it passes every check up to the session.
    header = Header(state.cell_id, 1, state.member_id, 10_000)
    sealed = seal_message(state.identity, header, MessageKey(bytes(32), bytes(12)), {"text": "x"})
    body = {
        "header": b64e(sealed.header),
        "ciphertext": b64e(sealed.ciphertext),
        "signature": b64e(sealed.signature),
    }
    found: dict[str, int] = {}
    async with aiohttp.ClientSession() as http:
        for path, methods in paths.items():
            concrete = path
            while "{" in concrete:
                start, end = concrete.index("{"), concrete.index("}")
                concrete = concrete[:start] + dummy + concrete[end + 1 :]
            for method in methods:
                if method not in ("get", "post", "put", "delete"):
                    continue
                async with http.request(method, url + concrete, json=body) as bare:
                    if bare.status != 401:
                        continue
                headers = {"Authorization": f"Bearer {token}"}
                async with http.request(method, url + concrete, json=body, headers=headers) as sent:
                    found[f"{method.upper()} {path}"] = sent.status
    return found


# --- A lying server -------------------------------------------------------------------


def expelled_cell(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path]:
    """cell_of_four, then B and C expel D: the network the lying-server tests start from."""
    founder, b, c, d = cell_of_four(tmp_path, url)
    run(d, "send", "cell", "hello")  # D's keystore holds the cell's current key period
    motion = run(b, "expel", member_id(d), "--reason", "informant")["motion_id"]
    run(c, "sign", motion)
    return founder, b, c, d


def test_a_server_that_delivers_an_expelled_members_new_message_is_caught(
    start_from: StartFrom,
) -> None:
    _, database_url, (founder, b, c, d) = start_from(expelled_cell)
    run(b, "send", "cell", "after the expulsion")
    # D's device (seized by, or belonging to, the informant) still holds the
    # key period it had; the operator slips a message sealed with it into the
    # cell's events, after the expulsion.
    state = StateFile(d).read(ENV["SPOKES_PASSPHRASE"])
    assert state.cell_id is not None
    record = state.groups[state.cell_id]
    epoch = max(n for n, e in record.epochs.items() if e.sending is not None)
    counter, key = record.epochs[epoch].next_for_sending()
    content: dict[str, Value] = {
        "text": "meet me alone at the bridge",
        "head": record.events[-1].id,
        "sent_at": int(time.time()),
        "prev": record.sent.get(str(epoch), -1),
        "revocations": None,
    }
    header = Header(state.cell_id, epoch, state.member_id, counter)
    sealed = seal_message(state.identity, header, key, content)
    body = encode(
        {"header": sealed.header, "ciphertext": sealed.ciphertext, "signature": sealed.signature}
    )

    async def slip_in(conn: Any) -> None:
        await append_event(conn, state.cell_id, "message", state.member_id, body, datetime.now(UTC))

    Operator(database_url).do(slip_in)
    result = caught(founder, "read", "cell", because="after their removal on a revocation")
    assert "meet me alone" not in str(result)
    caught(c, "read", "cell", because="after their removal on a revocation")


def test_a_server_that_hides_the_expulsion_from_a_cellmate_is_caught(
    start_from: StartFrom,
) -> None:
    _, database_url, (founder, b, c, d) = start_from(expelled_cell)
    run(b, "send", "cell", "D is out")  # sealed with the revocation head B knows

    Operator(database_url).do(hide_revocations)
    # The founder last looked before the expulsion: shown no revocation, it
    # is caught by the head B's message carries; B refuses the shorter list.
    result = caught(
        founder, "read", "cell", because="withholds a revocation that a cellmate has seen"
    )
    assert "D is out" not in str(result)
    caught(b, "read", "cell", because="rolled the revocation list back")


# --- A seized device --------------------------------------------------------------------


def test_a_self_revocation_held_by_a_cellmate_cuts_a_seized_device_off(
    start_from: StartFrom,
) -> None:
    _, _, (founder, b, c, d) = start_from(cell_of_four)
    arrested = member_id(d)
    made = run(d, "duress", "make", "--holder", member_id(b))
    assert (made["holder"], made["status"]) == (member_id(b), "sealed")
    # Only B's client opens it; C sees a sealed note and holds nothing.
    run(c, "read", "cell")
    assert run(c, "duress", "list")["held"] == []
    assert refused(c, "duress", "publish", arrested)["code"] == "not_holder"
    run(b, "read", "cell")
    assert [h["member_id"] for h in run(b, "duress", "list")["held"]] == [arrested]

    published = run(b, "duress", "publish", arrested)
    assert (published["member_id"], published["status"]) == (arrested, "revoked_by_self")
    error = refused(d, "read", "cell")
    assert error["code"] not in ("verification_failed", "equivocation"), error
    run(c, "send", "cell", "D's phone was taken")
    assert "D's phone was taken" in texts(run(founder, "read", "cell"))
    for home in (founder, b, c):
        assert arrested not in roster(home)


# --- An emergency freeze ------------------------------------------------------------------


def test_two_cellmates_freeze_a_member_at_once_and_two_lift_it(start_from: StartFrom) -> None:
    url, _, (founder, b, c, d) = start_from(cell_of_four)
    frozen = member_id(d)
    run(d, "read", "cell")  # D's session is fresh
    watcher = Watcher(url, token_of(d))
    watcher.start()
    assert watcher.ready.wait(20)
    opened = run(b, "freeze", frozen)
    assert (opened["status"], opened["needed"]) == ("open", 2)
    assert refused(d, "sign", opened["motion_id"])["code"] == "not_allowed"
    done = run(c, "sign", opened["motion_id"])
    assert (done["status"], done["kind"]) == ("done", "freeze")
    watcher.join(30)
    assert watcher.close_code == 4403  # D's open socket closed with the freeze
    assert refused(d, "read", "cell")["code"] == "frozen"
    run(b, "send", "cell", "while D is frozen")
    assert "while D is frozen" in texts(run(founder, "read", "cell"))
    assert frozen in roster(founder)  # still on the roster: nothing else is decided

    lift = run(founder, "unfreeze", frozen)
    assert lift["status"] == "open"
    assert run(c, "sign", lift["motion_id"])["status"] == "done"
    run(b, "send", "cell", "D is back")
    seen = texts(run(d, "read", "cell"))
    assert "D is back" in seen and "while D is frozen" not in seen


# --- Subtree review and the sponsor -----------------------------------------------------------


def cell_with_an_invitee_of_d(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path, Path]:
    """cell_of_four, then D invites E, whom the cell admits (D's invitee)."""
    founder, b, c, d = cell_of_four(tmp_path, url)
    e, e_joined = join(tmp_path, "e", url, invite(d))
    admit(d, e_joined, b, c, founder)
    for home in (founder, b, c, d, e):
        run(home, "read", "cell")
    return founder, b, c, d, e


def test_an_expelled_members_invitee_is_reviewed_and_cleared_by_a_fresh_vouch(
    start_from: StartFrom,
) -> None:
    _, _, (founder, b, c, d, e) = start_from(cell_with_an_invitee_of_d)
    invitee = member_id(e)
    opened = run(b, "expel", member_id(d), "--reason", "informant")
    for signer in (c, founder):
        if run(signer, "sign", opened["motion_id"])["status"] == "done":
            break
    # The next client to look at the cell posts the review: E under review, the
    # founder (D's sponsor) on hold.
    shown = run(b, "status", invitee)
    assert shown["standing"] == "under_review", shown
    assert refused(e, "invite", "create", "--note", "x")["code"] == "in_review"
    assert refused(founder, "invite", "create", "--note", "x")["code"] == "on_hold"
    log = run(b, "log", "cell")["events"]
    review = next(x for x in log if x["type"] == "review")
    assert review["subject"] == member_id(d) and review["members"] == [invitee]
    # E can't vouch for themself; C, outside D's subtree, vouches afresh: cleared.
    assert refused(e, "revouch", invitee)["code"] == "not_allowed"
    cleared = run(c, "revouch", invitee)
    assert cleared["status"] == "done", cleared
    assert run(b, "status", invitee).get("standing") is None
    # The cell restores the founder by motion (a majority of the others).
    restore = run(b, "restore", member_id(founder))
    assert restore["status"] == "open"
    assert run(c, "sign", restore["motion_id"])["status"] == "done"
    assert [x["type"] for x in run(b, "log", "cell")["events"]][-2:] == [
        "review_cleared",
        "sponsor_restored",
    ]


# --- Councils -------------------------------------------------------------------------------


def council_of_two_cells(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path]:
    """Cells one (A, B) and two (C, D), A and C their spokespeople, seated in one council."""
    a, b, c, d, two = two_cells(tmp_path, url)
    elected(b, a, a)
    council = run(a, "council", "create")["group_id"]
    elected(d, c, c)
    run(a, "council", "link", council, two)
    run(c, "council", "accept", council)
    run(a, "send", council, "first council meeting")
    return a, b, c, d


def council_id(home: Path) -> str:
    (council,) = run(home, "tree")["councils"]
    return str(council["group"])


def test_an_expelled_spokesperson_leaves_their_council_seat_empty(start_from: StartFrom) -> None:
    _, database_url, (a, b, c, d) = start_from(council_of_two_cells)
    council, expelled = council_id(a), member_id(c)
    done = run(d, "expel", expelled, "--reason", "informant")  # cell two: D alone is a majority
    assert done["status"] == "done"
    # A's client takes C off the council before it seals anything there.
    run(a, "send", council, "without C")
    assert [m["member_id"] for m in run(a, "members", council)["members"]] == [member_id(a)]
    assert refused(c, "read", council)["code"] not in ("verification_failed", "equivocation")

    current, latest_for_c = key_periods(database_url, b32d(council), b32d(expelled))
    assert latest_for_c < current  # "without C" went out under a key period not sealed to C


def test_a_council_expels_a_seat_holder_and_their_cell_follows(start_from: StartFrom) -> None:
    _, _, (a, b, c, d) = start_from(council_of_two_cells)
    council, expelled = council_id(a), member_id(c)
    done = run(a, "expel", expelled, "--reason", "informant", "--group", council)
    assert (done["status"], done["group_id"]) == ("done", council)
    # Cell two learns it from the revocation list: D's client removes C there too.
    run(d, "send", "cell", "C is out")
    assert expelled not in roster(d)
    assert run(d, "status", expelled)["status"] == "expelled"


def test_a_cells_freeze_of_its_spokesperson_reaches_their_council(start_from: StartFrom) -> None:
    _, database_url, (a, b, c, d) = start_from(council_of_two_cells)
    council, frozen = council_id(a), member_id(c)
    done = run(d, "freeze", frozen)  # cell two: D is all the signers there are
    assert done["status"] == "done"
    # D's client carried the freeze to the council (D is not on it): the council's rule
    # book took it on D's signature, proven on the roster of C's election.
    run(a, "send", council, "while C is frozen")
    assert "while C is frozen" in texts(run(a, "read", council))
    assert refused(c, "read", council)["code"] == "frozen"

    current, latest_for_c = key_periods(database_url, b32d(council), b32d(frozen))
    assert latest_for_c < current
    types = [e["type"] for e in run(a, "log", council)["events"]]
    assert types[-2:] == ["frozen", "rekey"], types


def council_over_b_invitee(tmp_path: Path, url: str) -> tuple[Path, Path, Path, Path]:
    """Cell one: A (the founder) and B; cell two: C (whom B invited) and D. A and C speak
    for their cells in one council."""
    a = found(tmp_path, url, "--vouches", "1", "--probation-days", "0", "--cell-min", "2")
    b, b_joined = join(tmp_path, "b", url, invite(a))
    admit(a, b_joined)
    c, c_joined = join(tmp_path, "c", url, invite(b))
    admit(b, c_joined, a)
    d, d_joined = join(tmp_path, "d", url, invite(a))
    admit(a, d_joined, b, c)
    split = run(a, "cell", "split", "cell", "--member", member_id(c), "--member", member_id(d))
    run(c, "sign", split["motion_id"])
    assert run(d, "sign", split["motion_id"])["status"] == "done"
    two = split["group_id"]
    elected(b, a, a)
    council = run(a, "council", "create")["group_id"]
    elected(d, c, c)
    run(a, "council", "link", council, two)
    run(c, "council", "accept", council)
    return a, b, c, d


def test_a_spokesperson_under_review_loses_their_council_seat(start_from: StartFrom) -> None:
    _, _, (a, b, c, d) = start_from(council_over_b_invitee)
    council = council_id(a)
    done = run(a, "expel", member_id(b), "--reason", "informant")  # cell one: A alone suffices
    assert done["status"] == "done"
    # D's client sees B's expulsion: C (B's invitee) comes under review in cell two, and
    # D's client carries it to the council, where C's seat falls empty.
    assert run(d, "status", member_id(c))["standing"] == "under_review"
    run(a, "send", council, "without C")
    assert [m["member_id"] for m in run(a, "members", council)["members"]] == [member_id(a)]
    events = run(a, "log", council)["events"]
    lost = [e for e in events if e["type"] == "seat_lost_to_review"]
    assert [(e["subject"], e["members"]) for e in lost] == [(member_id(c), [member_id(b)])]
