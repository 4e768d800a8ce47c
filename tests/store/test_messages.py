"""server/store/messages.py: a batch's checks and its one append statement."""

from __future__ import annotations

import os
from datetime import timedelta

import asyncpg
import pytest

from server.store import events, groups, messages, sessions
from server.store.db import Pool, transaction
from tests.store.conftest import NOW, Rows


async def test_a_batch_appends_its_messages_and_marks_their_counters(
    rows: Rows, pool: Pool
) -> None:
    cell = await rows.group()
    sender = (await rows.member(cell)).member_id
    outsider = (await rows.member(await rows.group())).member_id
    await groups.add_group_member(rows.conn, cell, sender, NOW)
    token = os.urandom(32)
    await sessions.insert_session(rows.conn, token, sender, NOW, NOW + timedelta(hours=1))
    async with transaction(pool) as conn:
        locked = await messages.lock_groups(conn, [cell, cell])
        assert list(locked) == [cell] and locked[cell].last_seq == 0
        before = await messages.check_senders(
            conn, [(token, cell, sender, 0, 7), (os.urandom(32), cell, outsider, 0, 1)]
        )
        assert [(c.live, c.in_group, c.used) for c in before] == [
            (True, True, False),
            (False, False, False),
        ]
        batch = [
            messages.NewMessage(cell, 1, 0, sender, 7, b"first"),
            messages.NewMessage(cell, 2, 0, sender, 8, b"second"),
        ]
        await messages.append_messages(
            conn, batch, NOW, events.CHANNEL, messages.notify_payloads([f"x:{2}"])
        )
    (after,) = await messages.check_senders(rows.conn, [(token, cell, sender, 0, 7)])
    assert (after.used, after.stored_seq, after.stored_body) == (True, 1, b"first")
    assert [(e.seq, e.kind, e.body) for e in await events.events_since(rows.conn, cell, 0, 10)] == [
        (1, "message", b"first"),
        (2, "message", b"second"),
    ]
    group = await groups.lock_group(rows.conn, cell)
    assert group is not None and group.epoch_messages == 2


async def test_a_used_counter_is_refused_by_the_table(rows: Rows) -> None:
    cell = await rows.group()
    sender = (await rows.member(cell)).member_id
    first = [messages.NewMessage(cell, 1, 0, sender, 7, b"first")]
    await messages.append_messages(rows.conn, first, NOW, events.CHANNEL, [])
    again = [messages.NewMessage(cell, 2, 0, sender, 7, b"replayed")]
    with pytest.raises(asyncpg.UniqueViolationError):
        await messages.append_messages(rows.conn, again, NOW, events.CHANNEL, [])
    assert len(await events.events_since(rows.conn, cell, 0, 10)) == 1


def test_notify_payloads_stay_under_the_limit() -> None:
    entries = [f"{'G' * 26}:{n}" for n in range(2000)]
    payloads = messages.notify_payloads(entries)
    assert len(payloads) > 1
    assert all(len(p) <= messages.NOTIFY_PAYLOAD_BYTES for p in payloads)
    assert " ".join(payloads).split() == entries
