"""Group privacy over the real API: other cells look like nothing, keys cover only their epochs,
and bad messages are refused without a trace.

Members are built with crypto/ (tests/server/actors.py, group_actors.py) so each
test can hold exactly the secrets a client would, and then some: a removed
member here keeps every epoch secret it ever opened, not just the chains its
client would keep.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from crypto import epochs, labels, motions, roster
from crypto.encoding import b32e, b64d, b64e, decode
from crypto.epochs import EpochKeys, MessageKey
from crypto.errors import CryptoError
from crypto.messages import (
    Header,
    SealedMessage,
    open_message,
    open_profile,
    seal_message,
    seal_profile,
)
from crypto.network import DAY, Policy
from crypto.sealing import open_sealed
from crypto.statements import from_wire, sign_statement
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView, all_counts


@pytest.fixture
async def founder(server, http) -> Actor:
    actor = Actor(http, server.url)
    assert (
        await actor.found(Policy(cell_min=2, vouches=2, probation_seconds=30 * DAY))
    ).status == 201
    return actor


async def cell_with(founder: Actor, server: Any, http: Any, count: int) -> list[Actor]:
    """`count` more members, vetted and on the founder's cell roster (no epoch yet)."""
    view = GroupView(founder, founder.cell or b"")
    others: list[Actor] = []
    for _ in range(count):
        newcomer = Actor(http, server.url)
        await bring_in(founder, newcomer, *others)
        await view.refresh()
        reply = await view.add(newcomer, await founder.admission_of(newcomer))
        assert reply.status == 201, reply.body
        others.append(newcomer)
    return others


async def split_off(founder: Actor, moved: list[Actor]) -> bytes:
    """Open a split motion in the founder's cell, have every moved member sign, carry it out."""
    view = GroupView(founder, founder.cell or b"")
    state = await view.refresh()
    network = founder.network
    motion = motions.make_split_motion(
        founder.key, network, state, [m.id for m in moved], founder.now()
    )
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(state.group)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201, opened.body
    signatures = []
    for signer in moved:
        signature = motions.sign_motion(signer.key, network, motion, signer.now())
        reply = await signer.call(
            "POST",
            f"/v1/motions/{opened.body['motion_id']}/signatures",
            {"signature": signature.to_wire()},
        )
        assert reply.status == 201, reply.body
        signatures.append(signature)
    _, new_group = motions.split_terms(motion)
    poster = moved[0]
    split = roster.sign_event(
        poster.key,
        network,
        state,
        "split",
        poster.now(),
        motions.split_event_fields(motion, signatures),
    )
    create = roster.make_group(
        poster.key,
        network,
        poster.now(),
        [m.bundle() for m in moved],
        origin=split.id,
        lines=state.lines,
        group=new_group,
        rules=roster.GroupRules.of(founder.genesis),
    )
    reply = await poster.call(
        "POST",
        f"/v1/groups/{b32e(state.group)}/roster",
        {"event": split.to_wire(), "create": create.statement.to_wire()},
    )
    assert reply.status == 201, reply.body
    for member in moved:
        member.cell = new_group
    return new_group


# --- What a member holds -------------------------------------------------------


@dataclass
class Hoard:
    """Every secret one member's client ever had, kept by a member who means harm."""

    actor: Actor
    secrets: dict[tuple[bytes, int], bytes] = field(default_factory=dict)  # (group, epoch)

    async def open_box(self, view: GroupView) -> EpochKeys:
        """Fetch and open my box of the group's current epoch, keeping the secret itself."""
        assert view.actor is self.actor
        state, secret = await view.fetch_secret()
        self.secrets[(view.group, state.epoch)] = secret
        view.keys[state.epoch] = epochs.derive_epoch_keys(
            secret, state.group, state.epoch, state.members
        )
        return view.keys[state.epoch]

    def candidate_keys(self, header: Header) -> list[MessageKey]:
        """Every key this member can derive for the message named by `header`.

        For each secret held: the header sender's chain in that secret's own
        group and epoch and, in case an old secret were reused, in the header's.
        """
        keys = []
        for (group, epoch), secret in self.secrets.items():
            for as_group in {group, header.group}:
                for as_epoch in {epoch, header.epoch}:
                    chains = epochs.derive_epoch_keys(
                        secret, as_group, as_epoch, [header.sender]
                    ).chains
                    keys.append(chains[header.sender].key_for(header.counter))
        return keys

    def profile_keys(self) -> list[bytes]:
        return [
            epochs.derive_epoch_keys(secret, group, epoch, []).profile_key
            for (group, epoch), secret in self.secrets.items()
        ]

    def opens(self, message: SealedMessage) -> bool:
        header = Header.decode(message.header)
        for key in self.candidate_keys(header):
            try:
                open_message(message, key)
            except CryptoError:
                continue
            return True
        return False


async def sealed_messages(reader: Actor, group: bytes) -> list[SealedMessage]:
    """The group's real message events, as a member still in the group fetches them."""
    reply = await reader.call("GET", f"/v1/groups/{b32e(group)}/events?since=0&limit=500")
    assert reply.status == 200, reply.body
    return messages_of(reply.body["events"])


def messages_of(events: list[dict[str, Any]]) -> list[SealedMessage]:
    found = []
    for event in events:
        if event["kind"] == "message":
            fields = decode(b64d(event["body"]))
            assert isinstance(fields, dict)
            found.append(
                SealedMessage(fields["header"], fields["ciphertext"], fields["signature"])  # type: ignore[arg-type]
            )
    return found


async def read_up_to_removal(gone: Actor, group: bytes, reader: Actor) -> list[dict[str, Any]]:
    """What a member a roster event removed still reads of `group`: exactly what a member
    reads, up to and including the event that removed them, and nothing after it."""
    text = b32e(group)
    theirs = await gone.call("GET", f"/v1/groups/{text}/events?since=0&limit=500")
    everyone = await reader.call("GET", f"/v1/groups/{text}/events?since=0&limit=500")
    assert (theirs.status, everyone.status) == (200, 200), theirs.body
    events: list[dict[str, Any]] = theirs.body["events"]
    assert events == everyone.body["events"][: len(events)]
    assert len(events) < len(everyone.body["events"]), "the group went on after the removal"
    log = await gone.call("GET", f"/v1/groups/{text}/roster")
    full = await reader.call("GET", f"/v1/groups/{text}/roster")
    assert (log.status, full.status) == (200, 200), log.body
    assert log.body["events"] == full.body["events"][: len(log.body["events"])]
    assert len(log.body["events"]) < len(full.body["events"])
    statements = [from_wire(w, "roster", gone.network) for w in log.body["events"]]
    rules = roster.GroupRules.of(gone.genesis) if gone.genesis else None
    assert rules is not None
    before = roster.verify_log(statements[:-1], rules=rules)
    after = roster.apply(before, statements[-1], rules=rules)
    assert gone.id in before.members and gone.id not in after.members
    # The last event they read is the roster event that removed them.
    last = decode(b64d(events[-1]["body"]))
    assert events[-1]["kind"] == "roster" and isinstance(last, dict)
    assert last["body"] == statements[-1].body
    later = await gone.call("GET", f"/v1/groups/{text}/events?since={events[-1]['seq']}")
    assert (later.status, later.body["events"]) == (200, []), later.body
    return events


async def boxes_in_database(pool: Any, group: bytes, epoch: int) -> dict[bytes, bytes]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT member_id, sealed FROM epoch_secrets WHERE group_id = $1 AND epoch = $2",
            group,
            epoch,
        )
    return {bytes(r["member_id"]): bytes(r["sealed"]) for r in rows}


async def epoch_roster_hash(reader: Actor, group: bytes, epoch: int) -> bytes:
    """The roster hash `epoch`'s boxes are bound to, from the log a member fetches."""
    reply = await reader.call("GET", f"/v1/groups/{b32e(group)}/roster")
    assert reply.status == 200, reply.body
    state = None
    for wire in reply.body["events"]:
        event = from_wire(wire, "roster", reader.network)
        state = roster.apply(state, event, rules=roster.GroupRules.of(reader.genesis))
        if state.epoch == epoch and state.epoch_roster is not None:
            return state.epoch_roster
    raise AssertionError(f"no epoch {epoch} in the log")


def opens_any_box(
    hoard: Hoard, boxes: dict[bytes, bytes], group: bytes, epoch: int, roster_hash: bytes
) -> bool:
    """Could the member open any epoch box at all, were the server to hand them every one?"""
    for recipient, sealed in boxes.items():
        for info in (
            epochs.seal_info(group, epoch, roster_hash, recipient),
            epochs.seal_info(group, epoch, roster_hash, hoard.actor.id),
        ):
            try:
                open_sealed(hoard.actor.kem, sealed, info)
            except CryptoError:
                continue
            return True
    return False


def epoch_of(message: SealedMessage) -> int:
    return Header.decode(message.header).epoch


# --- Another cell looks like no cell --------------------------------------------


def well_formed_requests(actor: Actor, group: bytes) -> list[tuple[str, str, Any]]:
    """One valid-looking request per group endpoint, each aimed at `group`."""
    network = actor.network
    text = b32e(group)
    header = Header(group, 1, actor.id, 0).encode()
    ciphertext = os.urandom(256 + 16)
    message = {
        "header": b64e(header),
        "ciphertext": b64e(ciphertext),
        "signature": b64e(actor.key.sign(labels.MESSAGE_SIGNATURE, header + ciphertext)),
    }
    profile = seal_profile(os.urandom(32), group, 1, actor.key, {"name": "Ana"}, version=1)
    motion = sign_statement(
        actor.key,
        "motion",
        network,
        actor.now(),
        {
            "group": group,
            "kind": "split",
            "terms": {"moved": [actor.id], "new_group": os.urandom(16)},
            "head": bytes(32),
        },
    )
    event = sign_statement(
        actor.key,
        "roster",
        network,
        actor.now(),
        {"group": group, "seq": 1, "prev": bytes(32), "op": "epoch", "epoch": 1},
    )
    return [
        ("GET", f"/v1/groups/{text}/roster", None),
        ("GET", f"/v1/groups/{text}/events?since=0", None),
        ("GET", f"/v1/groups/{text}/profiles", None),
        ("GET", f"/v1/groups/{text}/epochs/1/secret", None),
        ("POST", f"/v1/groups/{text}/messages", message),
        ("PUT", f"/v1/groups/{text}/profile", {"epoch": 1, "sealed": b64e(profile)}),
        ("POST", f"/v1/groups/{text}/motions", {"motion": motion.to_wire()}),
        ("POST", f"/v1/groups/{text}/roster", {"event": event.to_wire(), "secrets": {}}),
    ]


async def subscribe(http: Any, url: str, actor: Actor, group: bytes) -> list[dict[str, Any]]:
    """Subscribe to `group` on a fresh socket; every message up to `subscribed`."""
    said = []
    async with http.ws_connect(
        url + "/v1/ws", headers={"Authorization": f"Bearer {actor.token}"}
    ) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        await ws.send_json({"type": "subscribe", "cursors": {b32e(group): 0}})
        while True:
            message = await ws.receive_json(timeout=5)
            said.append(message)
            if message["type"] == "subscribed":
                return said


def without_group(messages: list[dict[str, Any]], group: bytes) -> str:
    """The socket's answers with the group's own id (echoed back) blanked out."""
    return json.dumps(messages, sort_keys=True).replace(b32e(group), "<group>")


async def test_another_cell_answers_exactly_like_no_cell(server, http, pool) -> None:
    founder = Actor(http, server.url)  # no probation: B invites E into the new cell
    assert (await founder.found(Policy(cell_min=2, vouches=2, probation_seconds=0))).status == 201
    b, c, _ = await cell_with(founder, server, http, 3)
    cell_a = founder.cell or b""
    cell_b = await split_off(founder, [b, c])
    # E joins cell B after the split: cell A, which E was never in, is as foreign
    # to them as to anyone (B, moved out of A, still reads it up to the split:
    # test_a_member_moved_by_a_split_reads_the_old_cell_up_to_the_split).
    e = Actor(http, server.url)
    await bring_in(b, e, c)
    theirs = GroupView(b, cell_b)
    await theirs.refresh()
    assert (await theirs.add(e, await b.admission_of(e))).status == 201
    # Cell B is alive: an epoch, a message and a profile to hide.
    assert (await theirs.commit_epoch()).status == 201
    assert (await theirs.send("only for B")).status == 201
    profile = seal_profile(theirs.keys[1].profile_key, cell_b, 1, b.key, {"name": "Bo"}, version=1)
    put = await b.call(
        "PUT", f"/v1/groups/{b32e(cell_b)}/profile", {"epoch": 1, "sealed": b64e(profile)}
    )
    assert put.status == 200, put.body

    for asker, hidden in ((founder, cell_b), (e, cell_a)):
        before = await all_counts(pool)
        nowhere = os.urandom(16)
        for (method, path, body), (_, path_nowhere, body_nowhere) in zip(
            well_formed_requests(asker, hidden),
            well_formed_requests(asker, nowhere),
            strict=True,
        ):
            real = await asker.call(method, path, body)
            fake = await asker.call(method, path_nowhere, body_nowhere)
            assert (real.status, real.body) == (fake.status, fake.body), (method, path)
            assert (real.status, real.code) == (404, "not_found"), (method, path, real.body)
        real_feed = await subscribe(http, server.url, asker, hidden)
        fake_feed = await subscribe(http, server.url, asker, nowhere)
        assert without_group(real_feed, hidden) == without_group(fake_feed, nowhere)
        assert real_feed[0]["code"] == "not_found"
        assert real_feed[-1] == {"type": "subscribed", "cursors": {}}
        listed = await asker.call("GET", "/v1/groups")
        assert b32e(hidden) not in {g["group_id"] for g in listed.body["groups"]}
        assert await all_counts(pool) == before


# --- Keys cover exactly the epochs a member was in --------------------------------


async def test_a_member_who_left_reads_nothing_sent_after(
    founder: Actor, server, http, pool
) -> None:
    b, c = await cell_with(founder, server, http, 2)
    cell = founder.cell or b""
    views = {a.id: GroupView(a, cell) for a in (founder, b, c)}
    hoards = {a.id: Hoard(a) for a in (founder, b, c)}
    assert (await views[founder.id].commit_epoch()).status == 201
    for actor in (founder, b, c):
        await hoards[actor.id].open_box(views[actor.id])
        assert (await views[actor.id].send(f"epoch 1 from {actor.id_text}")).status == 201
    leaver = hoards[c.id]

    await views[c.id].refresh()
    left = await views[c.id].post("remove", {"member": c.id, "reason": "left"})
    assert left.status == 201, left.body
    refused = await views[founder.id].send("right after the leave")
    assert (refused.status, refused.code) == (409, "rekey_required")
    await views[founder.id].refresh()
    assert (await views[founder.id].commit_epoch()).status == 201
    await hoards[b.id].open_box(views[b.id])
    for actor in (founder, b):
        for n in range(3):
            assert (await views[actor.id].send(f"epoch 2, {n}")).status == 201

    await assert_locked_out(leaver, cell, 2, reader=b, pool=pool)


async def test_members_moved_away_by_a_split_read_nothing_sent_after(
    founder: Actor, server, http, pool
) -> None:
    b, c, d = await cell_with(founder, server, http, 3)
    cell = founder.cell or b""
    views = {a.id: GroupView(a, cell) for a in (founder, b, c, d)}
    hoards = {a.id: Hoard(a) for a in (founder, b, c, d)}
    assert (await views[founder.id].commit_epoch()).status == 201
    for actor in (founder, b, c, d):
        await hoards[actor.id].open_box(views[actor.id])
        assert (await views[actor.id].send("epoch 1")).status == 201
    new_cell = await split_off(founder, [c, d])
    # C and D, now in their own cell, hold its keys too: none of them opens A's next epoch.
    theirs = GroupView(c, new_cell)
    assert (await theirs.commit_epoch()).status == 201
    await hoards[c.id].open_box(theirs)
    await hoards[d.id].open_box(GroupView(d, new_cell))

    await views[founder.id].refresh()
    assert (await views[founder.id].commit_epoch()).status == 201
    await hoards[b.id].open_box(views[b.id])
    for actor in (founder, b):
        assert (await views[actor.id].send("after the split")).status == 201

    for moved in (c, d):
        await assert_locked_out(hoards[moved.id], cell, 2, reader=b, pool=pool)


async def test_a_member_moved_by_a_split_reads_the_old_cell_up_to_the_split(
    founder: Actor, server, http, pool
) -> None:
    b, c, _ = await cell_with(founder, server, http, 3)
    cell_a = founder.cell or b""
    views = {a.id: GroupView(a, cell_a) for a in (founder, b)}
    assert (await views[founder.id].commit_epoch()).status == 201
    await views[b.id].open_epoch()
    assert (await views[b.id].send("before the split")).status == 201
    await split_off(founder, [b, c])
    await views[founder.id].refresh()
    assert (await views[founder.id].commit_epoch()).status == 201
    assert (await views[founder.id].send("after the split")).status == 201

    events = await read_up_to_removal(b, cell_a, founder)
    assert [epoch_of(m) for m in messages_of(events)] == [1]
    log = await b.call("GET", f"/v1/groups/{b32e(cell_a)}/roster")
    assert from_wire(log.body["events"][-1], "roster", b.network).fields["op"] == "split"
    mine = await b.call("GET", f"/v1/groups/{b32e(cell_a)}/epochs/1/secret")
    assert mine.status == 200, mine.body

    # Reading is all: whatever B sends the old cell is refused with a code and writes
    # nothing, its profiles stay hidden, and the live feed does not stream it.
    before = await all_counts(pool)
    for method, path, body in well_formed_requests(b, cell_a):
        if method == "GET" and not path.endswith("/profiles"):
            continue
        reply = await b.call(method, path, body)
        assert 400 <= reply.status < 500 and reply.code, (method, path, reply.body)
    feed = await subscribe(http, server.url, b, cell_a)
    assert feed[0]["code"] == "not_found" and feed[-1] == {"type": "subscribed", "cursors": {}}
    assert await all_counts(pool) == before


async def assert_locked_out(
    gone: Hoard, group: bytes, epoch: int, *, reader: Actor, pool: Any
) -> None:
    """`gone` left `group` before `epoch`: nothing from `epoch` opens with what they kept."""
    text = b32e(group)
    assert gone.secrets, "the member held keys before leaving"
    for path in (f"/v1/groups/{text}/epochs/{epoch}/secret", f"/v1/groups/{text}/profiles"):
        reply = await gone.actor.call("GET", path)
        assert (reply.status, reply.code) == (404, "not_found"), path
    # What they could read while in the group they still can, up to their removal.
    kept = await gone.actor.call("GET", f"/v1/groups/{text}/epochs/{epoch - 1}/secret")
    assert kept.status == 200, kept.body
    events = await read_up_to_removal(gone.actor, group, reader)
    assert all(epoch_of(m) < epoch for m in messages_of(events))

    messages = await sealed_messages(reader, group)
    before = [m for m in messages if epoch_of(m) < epoch]
    after = [m for m in messages if epoch_of(m) >= epoch]
    assert before and after
    # The hoard is real: it opens every message from the epochs it was in...
    assert all(gone.opens(m) for m in before)
    # ...and none sent after the removal.
    assert not any(gone.opens(m) for m in after)

    boxes = await boxes_in_database(pool, group, epoch)
    assert gone.actor.id not in boxes and boxes  # no box was ever sealed to them
    roster_hash = await epoch_roster_hash(reader, group, epoch)
    # Nor would anyone else's box open for them, were the server to hand it over.
    assert not opens_any_box(gone, boxes, group, epoch, roster_hash)

    async with pool.acquire() as conn:
        sealed_profiles = await conn.fetch(
            "SELECT epoch, sealed, member_id FROM profiles WHERE group_id = $1 AND epoch >= $2",
            group,
            epoch,
        )
    for row in sealed_profiles:
        for key in gone.profile_keys():
            with pytest.raises(CryptoError):
                open_profile(key, group, row["epoch"], gone.actor.key.public_key(), row["sealed"])


async def test_a_member_added_later_reads_nothing_sent_before(
    founder: Actor, server, http, pool
) -> None:
    (b,) = await cell_with(founder, server, http, 1)
    cell = founder.cell or b""
    view, theirs = GroupView(founder, cell), GroupView(b, cell)
    assert (await view.commit_epoch()).status == 201
    await theirs.open_epoch()
    for n in range(3):
        assert (await view.send(f"before, {n}")).status == 201
        assert (await theirs.send(f"before, {n}")).status == 201

    late = Actor(http, server.url)
    await bring_in(founder, late, b)
    await view.refresh()
    assert (await view.add(late, await founder.admission_of(late))).status == 201
    assert (await view.commit_epoch()).status == 201
    hoard = Hoard(late)
    await hoard.open_box(GroupView(late, cell))
    assert (await view.send("after")).status == 201

    early = await late.call("GET", f"/v1/groups/{b32e(cell)}/epochs/1/secret")
    assert (early.status, early.code) == (404, "not_found")
    assert late.id not in await boxes_in_database(pool, cell, 1)
    messages = await sealed_messages(late, cell)  # the log itself is readable...
    before = [m for m in messages if epoch_of(m) == 1]
    after = [m for m in messages if epoch_of(m) == 2]
    assert len(before) == 6 and len(after) == 1
    assert all(hoard.opens(m) for m in after)
    assert not any(hoard.opens(m) for m in before)  # ...but not what came before
    boxes = await boxes_in_database(pool, cell, 1)
    assert not opens_any_box(hoard, boxes, cell, 1, await epoch_roster_hash(late, cell, 1))


# --- Bad messages --------------------------------------------------------------


async def post_raw(actor: Actor, group: bytes, data: bytes) -> tuple[int, str | None]:
    async with actor.http.post(
        f"{actor.url}/v1/groups/{b32e(group)}/messages",
        data=data,
        headers={"Authorization": f"Bearer {actor.token}", "Content-Type": "application/json"},
    ) as resp:
        body = await resp.json()
    return resp.status, body["error"]["code"]


def signed(actor: Actor, header: bytes, ciphertext: bytes) -> dict[str, str]:
    """A message body whose signature is right for whatever header and ciphertext it carries."""
    return {
        "header": b64e(header),
        "ciphertext": b64e(ciphertext),
        "signature": b64e(actor.key.sign(labels.MESSAGE_SIGNATURE, header + ciphertext)),
    }


async def test_bad_messages_get_a_4xx_with_a_code_and_write_nothing(
    founder: Actor, server, http, pool
) -> None:
    (b,) = await cell_with(founder, server, http, 1)
    cell = founder.cell or b""
    view = GroupView(founder, cell)
    assert (await view.commit_epoch()).status == 201
    old = view.seal("sealed in epoch 1, sent in epoch 2")
    assert (await view.send("fine")).status == 201
    assert (await view.commit_epoch()).status == 201  # epoch 2: `old` is now stale
    good = view.seal("fine")
    header = Header.decode(good.header)
    elsewhere = os.urandom(16)
    elsewhere_header = Header(elsewhere, header.epoch, founder.id, 0).encode()
    future = Header(cell, header.epoch + 1, founder.id, 0).encode()
    wire = {
        "header": b64e(good.header),
        "ciphertext": b64e(good.ciphertext),
        "signature": b64e(good.signature),
    }
    cases: list[tuple[str, Any, bytes, int, str]] = [
        # what, body, group in the path, status, code
        (
            "ciphertext not a bucket",
            signed(founder, good.header, os.urandom(300)),
            cell,
            400,
            "invalid_statement",
        ),
        (
            "ciphertext a bucket short",
            {**wire, "ciphertext": b64e(good.ciphertext[:-1])},
            cell,
            400,
            "invalid_statement",
        ),
        (
            "ciphertext too short",
            signed(founder, good.header, os.urandom(15)),
            cell,
            400,
            "bad_request",
        ),
        ("ciphertext not base64", {**wire, "ciphertext": "*" * 40}, cell, 400, "bad_request"),
        (
            "header too long",
            signed(founder, good.header + bytes(512), good.ciphertext),
            cell,
            400,
            "bad_request",
        ),
        (
            "header not a header",
            signed(founder, b"\x07\x00", good.ciphertext),
            cell,
            400,
            "invalid_statement",
        ),
        (
            "header names another sender",
            signed(founder, Header(cell, header.epoch, b.id, 0).encode(), good.ciphertext),
            cell,
            400,
            "invalid_statement",
        ),
        (
            "signature 63 bytes",
            {**wire, "signature": b64e(good.signature[:63])},
            cell,
            400,
            "bad_request",
        ),
        (
            "signature 65 bytes",
            {**wire, "signature": b64e(good.signature + b"\0")},
            cell,
            400,
            "bad_request",
        ),
        ("signature wrong", {**wire, "signature": b64e(bytes(64))}, cell, 400, "invalid_signature"),
        (
            "signature by another member",
            {
                **wire,
                "signature": b64e(
                    b.key.sign(labels.MESSAGE_SIGNATURE, good.header + good.ciphertext)
                ),
            },
            cell,
            400,
            "invalid_signature",
        ),
        (
            "field missing",
            {"header": wire["header"], "ciphertext": wire["ciphertext"]},
            cell,
            400,
            "bad_request",
        ),
        (
            "unknown group",
            signed(founder, elsewhere_header, good.ciphertext),
            elsewhere,
            404,
            "not_found",
        ),
        (
            "stale epoch",
            {
                "header": b64e(old.header),
                "ciphertext": b64e(old.ciphertext),
                "signature": b64e(old.signature),
            },
            cell,
            409,
            "stale_epoch",
        ),
        ("future epoch", signed(founder, future, good.ciphertext), cell, 409, "stale_epoch"),
        (
            "oversized body",
            {**wire, "padding": "x" * (server.settings.max_body_bytes + 1)},
            cell,
            413,
            "body_too_large",
        ),
    ]
    before = await all_counts(pool)
    for what, body, group, status, code in cases:
        reply = await founder.call("POST", f"/v1/groups/{b32e(group)}/messages", body)
        assert (reply.status, reply.code) == (status, code), (what, reply.body)
        assert await all_counts(pool) == before, what
    for what, data, code in (
        ("not JSON", b"header=abc", "invalid_json"),
        ("truncated JSON", json.dumps(wire).encode()[:-2], "invalid_json"),
        ("a JSON list", json.dumps([wire]).encode(), "bad_request"),
        ("duplicate keys", b'{"header": "", ' + json.dumps(wire).encode()[1:], "invalid_json"),
    ):
        assert await post_raw(founder, cell, data) == (400, code), what
        assert await all_counts(pool) == before, what

    first = await view.send_sealed(good)
    assert first.status == 201
    after_one = await all_counts(pool)
    again = await view.send_sealed(good)  # the same bytes: answered as stored, not kept twice
    assert (again.status, again.body) == (201, first.body)
    key = MessageKey(os.urandom(32), os.urandom(12))
    other = seal_message(founder.key, Header.decode(good.header), key, {"text": "other"})
    replay = await view.send_sealed(other)
    assert (replay.status, replay.code) == (409, "replayed_counter")
    assert await all_counts(pool) == after_one


async def test_a_message_of_the_largest_bucket_is_accepted(founder: Actor) -> None:
    view = GroupView(founder, founder.cell or b"")
    assert (await view.commit_epoch()).status == 201
    biggest = view.seal("x" * 40_000)  # pads to the 64 KiB bucket
    assert len(biggest.ciphertext) == 65536 + 16
    reply = await view.send_sealed(biggest)
    assert reply.status == 201, reply.body


async def test_a_profile_of_the_largest_bucket_is_accepted(founder: Actor) -> None:
    view = GroupView(founder, founder.cell or b"")
    assert (await view.commit_epoch()).status == 201
    cell = founder.cell or b""
    notes = "n" * 40_000  # pads to the 64 KiB bucket
    sealed = seal_profile(
        view.keys[1].profile_key, cell, 1, founder.key, {"notes": notes}, version=1
    )
    reply = await founder.call(
        "PUT", f"/v1/groups/{b32e(cell)}/profile", {"epoch": 1, "sealed": b64e(sealed)}
    )
    assert reply.status == 200, reply.body
