"""Group commit of messages: a batch is judged message by message, and written as one.

The batches are built directly (server.services.messages.commit_batch on the
test's real database) so that which messages share a batch is certain; the
last tests go through the live server with many sends at once.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from crypto.encoding import b32e, b64e
from crypto.epochs import MessageKey
from crypto.messages import Header, SealedMessage, seal_message
from crypto.network import Policy
from server.errors import ApiError
from server.http.appkeys import WRITER_KEY
from server.realtime.feed import FRAME_BYTES, frames
from server.services.messages import Accepted, commit_batch, submission
from server.store.messages import NOTIFY_PAYLOAD_BYTES, notify_payloads
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView, all_counts

LIMIT = 100  # messages per epoch (the policy's least)


@pytest.fixture
async def cell(server, http) -> tuple[Actor, GroupView]:
    founder = Actor(http, server.url)
    assert (await founder.found(Policy(epoch_messages=LIMIT))).status == 201
    view = GroupView(founder, founder.cell or b"")
    assert (await view.commit_epoch()).status == 201
    return founder, view


def any_key() -> MessageKey:
    return MessageKey(os.urandom(32), os.urandom(12))


def now() -> datetime:
    return datetime.now(UTC)


def codes(results: list[Accepted | ApiError]) -> list[str]:
    return ["ok" if isinstance(r, Accepted) else r.code.value for r in results]


def other_under(founder: Actor, message: SealedMessage, text: str = "other") -> SealedMessage:
    """Another message, properly signed, under the same header (so the same counter)."""
    return seal_message(founder.key, Header.decode(message.header), any_key(), {"text": text})


async def test_a_batch_is_judged_message_by_message_and_writes_only_the_good(cell, pool) -> None:
    founder, view = cell
    group = view.group
    first, second, third = view.seal("one"), view.seal("two"), view.seal("three")
    forged = SealedMessage(second.header, second.ciphertext, bytes(64))
    stranger_group = os.urandom(16)
    stranger_header = Header(stranger_group, 1, founder.id, 99)
    to_nowhere = seal_message(founder.key, stranger_header, any_key(), {"text": "x"})
    before = await all_counts(pool)
    items = [
        submission(founder.token or "", group, first),
        submission("not a token", group, third),
        submission(founder.token or "", group, forged),
        submission(founder.token or "", group, other_under(founder, first)),  # its counter again
        submission(founder.token or "", stranger_group, to_nowhere),
        submission(founder.token or "", group, third),
        submission(founder.token or "", group, first),  # the same bytes again: a resend
    ]
    results = await commit_batch(pool, items, now())
    assert codes(results) == [
        "ok",
        "unauthorized",
        "invalid_signature",
        "replayed_counter",
        "not_found",
        "ok",
        "ok",
    ]
    a, b, resent = results[0], results[5], results[6]
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    assert b.seq == a.seq + 1, "one group's messages take consecutive seqs"
    assert resent == a, "a resend in the same batch is answered as the stored message"
    after = await all_counts(pool)
    assert after["messages"] == before["messages"] + 2
    assert after["group_events"] == before["group_events"] + 2
    # In a later batch, too: the same bytes get what was stored; others are refused.
    assert (await commit_batch(pool, [items[0]], now()))[0] == a
    assert codes(await commit_batch(pool, [items[3]], now())) == ["replayed_counter"]
    assert await all_counts(pool) == after
    # The second message's counter was never used: sent properly, it is accepted.
    assert codes(
        await commit_batch(pool, [submission(founder.token or "", group, second)], now())
    ) == ["ok"]


async def test_the_epochs_message_limit_holds_inside_one_batch(cell, pool) -> None:
    founder, view = cell
    sealed = [view.seal(f"m{n}") for n in range(LIMIT + 2)]
    results = await commit_batch(
        pool, [submission(founder.token or "", view.group, m) for m in sealed], now()
    )
    assert codes(results) == ["ok"] * LIMIT + ["rekey_required"] * 2
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT epoch_messages FROM groups WHERE group_id = $1", view.group
        )
    assert count == LIMIT


async def test_a_member_removed_before_the_batch_is_refused_in_it(cell, pool, server, http) -> None:
    founder, view = cell
    newcomer = Actor(http, server.url)
    await bring_in(founder, newcomer)
    admission = await founder.admission_of(newcomer)
    assert (await view.add(newcomer, admission)).status == 201
    assert (await view.commit_epoch()).status == 201
    theirs = GroupView(newcomer, view.group)
    await theirs.open_epoch()
    message = theirs.seal("still here?")
    await theirs.refresh()
    assert (await theirs.post("remove", {"member": newcomer.id, "reason": "left"})).status == 201
    results = await commit_batch(
        pool, [submission(newcomer.token or "", view.group, message)], now()
    )
    assert codes(results) == ["not_found"]


async def test_concurrent_sends_share_batches_and_each_gets_its_own_answer(cell, server) -> None:
    founder, view = cell
    sealed = [view.seal(f"m{n}") for n in range(8)]
    writer = server.app[WRITER_KEY]
    batches_before = writer.batches
    others = [other_under(founder, m) for m in sealed[2:4]]
    replies = await asyncio.gather(*(view.send_sealed(m) for m in sealed + sealed[:2] + others))
    statuses = sorted((r.status, r.code) for r in replies)
    assert statuses == [(201, None)] * 10 + [(409, "replayed_counter")] * 2
    cursors = sorted({r.body["cursor"] for r in replies if r.status == 201})
    assert cursors == list(range(cursors[0], cursors[0] + 8))
    for first, again in ((replies[0], replies[8]), (replies[1], replies[9])):
        assert again.body == first.body, "a resend is answered with the stored id and cursor"
    assert writer.batches - batches_before < 10, "ten sends at once took ten transactions"


async def test_a_resend_whose_answer_was_lost_gets_what_was_stored(cell, pool) -> None:
    """The client's outbox posts the same bytes again: one message, one answer, any time."""
    founder, view = cell
    message = view.seal("did this arrive?")
    first = await view.send_sealed(message)
    assert first.status == 201
    stored = await all_counts(pool)
    again = await view.send_sealed(message)
    assert (again.status, again.body) == (201, first.body)
    # Even after the group moved to a new epoch, which refuses new messages of the old one.
    assert (await view.commit_epoch()).status == 201
    moved = await all_counts(pool)
    later = await view.send_sealed(message)
    assert (later.status, later.body) == (201, first.body)
    assert await all_counts(pool) == moved
    # Anything else under that counter is still a replay, and writes nothing.
    refused = await view.send_sealed(other_under(founder, message))
    assert (refused.status, refused.code) == (409, "replayed_counter")
    flipped = message.ciphertext[:-1] + bytes([message.ciphertext[-1] ^ 1])
    tampered = SealedMessage(message.header, flipped, message.signature)
    reply = await view.send_sealed(tampered)
    assert (reply.status, reply.code) == (400, "invalid_signature")
    assert await all_counts(pool) == moved
    async with pool.acquire() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM group_events WHERE group_id = $1 AND kind = 'message'",
            view.group,
        )
    assert rows == 1, "the cell reads the message once"
    assert stored["messages"] == moved["messages"]


def test_notify_payloads_fit_the_limit_and_keep_every_entry() -> None:
    entries = [f"{b32e(os.urandom(16))}:{n}" for n in range(600)]
    payloads = notify_payloads(entries)
    assert len(payloads) > 1
    assert all(len(p) <= NOTIFY_PAYLOAD_BYTES for p in payloads)
    assert " ".join(payloads).split() == entries
    assert notify_payloads(entries[:1]) == entries[:1]
    assert notify_payloads([]) == []


def test_frames_batch_events_within_the_frame_limit() -> None:
    assert list(frames([(5, '{"a":1}')])) == [(5, '{"a":1}')]
    two = list(frames([(5, '{"a":1}'), (6, '{"b":2}')]))
    assert two == [(6, '{"type":"batch","events":[{"a":1},{"b":2}]}')]
    big = "x" * (FRAME_BYTES - 5)
    rows = [(1, "{}"), (2, big), (3, "{}"), (4, "y" * (FRAME_BYTES + 1))]
    out = list(frames(rows))
    assert [seq for seq, _ in out] == [2, 3, 4]
    assert out[2][1] == rows[3][1], "an event larger than a frame goes alone"
    assert all(len(text) <= FRAME_BYTES + 64 for _, text in out[:2])


# --- Sending over the WebSocket ---------------------------------------------------------


def send_frame(ref: str, group: bytes, message: SealedMessage) -> dict[str, str]:
    return {
        "type": "send",
        "ref": ref,
        "group": b32e(group),
        "header": b64e(message.header),
        "ciphertext": b64e(message.ciphertext),
        "signature": b64e(message.signature),
    }


async def answers(ws, count: int) -> dict[str, dict]:
    """Read until ``count`` answers (sent or error, by ref) have come; events are skipped."""
    found: dict[str, dict] = {}
    async with asyncio.timeout(10):
        while len(found) < count:
            frame = await ws.receive_json()
            if frame["type"] in ("sent", "error"):
                found[frame["ref"]] = frame
    return found


async def test_messages_sent_over_the_socket_are_checked_answered_and_kept_in_order(
    cell, server, http, pool
) -> None:
    founder, view = cell
    sealed = [view.seal(f"m{n}") for n in range(20)]
    async with http.ws_connect(
        server.url + "/v1/ws", headers={"Authorization": f"Bearer {founder.token}"}
    ) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        for n, message in enumerate(sealed[:8]):
            await ws.send_json(send_frame(str(n), view.group, message))
        found = await answers(ws, 8)
    assert [found[str(n)]["type"] for n in range(8)] == ["sent"] * 8
    cursors = [found[str(n)]["cursor"] for n in range(8)]
    assert cursors == sorted(cursors) and len(set(cursors)) == 8, "kept in the order sent"
    assert all(found[str(n)]["group"] == b32e(view.group) for n in range(8))
    async with pool.acquire() as conn:
        count = await conn.fetchval("SELECT count(*) FROM messages WHERE group_id = $1", view.group)
    assert count == 8


async def test_bad_sends_over_the_socket_get_a_code_and_write_nothing(
    cell, server, http, pool
) -> None:
    founder, view = cell
    good = view.seal("fine")
    stale_epoch = view.seal("old")
    forged = SealedMessage(good.header, good.ciphertext, bytes(64))
    elsewhere = os.urandom(16)
    frames_and_codes = [
        ({**send_frame("a", view.group, good), "ref": 7}, None, "bad_request"),
        ({**send_frame("b", view.group, good), "group": "not a group"}, "b", "bad_request"),
        ({**send_frame("c", view.group, good), "header": "!!"}, "c", "bad_request"),
        ({**send_frame("d", view.group, good), "signature": b64e(bytes(10))}, "d", "bad_request"),
        (send_frame("e", view.group, forged), "e", "invalid_signature"),
        (send_frame("f", elsewhere, good), "f", "invalid_statement"),
    ]
    before = await all_counts(pool)
    async with http.ws_connect(
        server.url + "/v1/ws", headers={"Authorization": f"Bearer {founder.token}"}
    ) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        for frame, ref, code in frames_and_codes:
            await ws.send_json(frame)
            said = await ws.receive_json(timeout=5)
            assert (said["type"], said.get("ref"), said["code"]) == ("error", ref, code), frame
        assert await all_counts(pool) == before
        await ws.send_json(send_frame("g", view.group, good))
        await ws.send_json(send_frame("h", view.group, good))
        await ws.send_json(send_frame("j", view.group, other_under(founder, good)))
        found = await answers(ws, 3)
        assert found["g"]["type"] == "sent"
        assert found["h"]["type"] == "sent", "the same bytes again: answered as stored"
        assert (found["h"]["message_id"], found["h"]["cursor"]) == (
            found["g"]["message_id"],
            found["g"]["cursor"],
        )
        assert (found["j"]["type"], found["j"]["code"]) == ("error", "replayed_counter")
        assert (await view.commit_epoch()).status == 201
        await ws.send_json(send_frame("i", view.group, stale_epoch))
        found = await answers(ws, 1)
        assert found["i"]["code"] == "stale_epoch"


async def test_a_send_to_a_group_not_ones_own_over_the_socket_looks_like_no_group(
    cell, server, http
) -> None:
    founder, _ = cell
    nowhere = os.urandom(16)
    header = Header(nowhere, 1, founder.id, 0)
    to_nowhere = seal_message(founder.key, header, any_key(), {"text": "x"})
    async with http.ws_connect(
        server.url + "/v1/ws", headers={"Authorization": f"Bearer {founder.token}"}
    ) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        await ws.send_json(send_frame("n", nowhere, to_nowhere))
        found = await answers(ws, 1)
    over_http = await founder.call(
        "POST",
        f"/v1/groups/{b32e(nowhere)}/messages",
        {
            k: v
            for k, v in send_frame("", nowhere, to_nowhere).items()
            if k in ("header", "ciphertext", "signature")
        },
    )
    assert (found["n"]["code"], found["n"]["message"]) == (
        over_http.code,
        over_http.body["error"]["message"],
    )
    assert over_http.status == 404 and over_http.code == "not_found"
