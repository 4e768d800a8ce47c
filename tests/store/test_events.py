"""server/store/events.py: a group's event log, numbered without gaps, announced by NOTIFY."""

from __future__ import annotations

import asyncio
import os

import pytest

from crypto.encoding import b32e
from server.store import events, groups
from server.store.db import Connection, Pool, transaction
from tests.store.conftest import NOW, Rows


async def test_events_are_numbered_in_order_and_read_after_a_cursor(rows: Rows) -> None:
    cell = await rows.group()
    member = (await rows.member(cell)).member_id
    await groups.add_group_member(rows.conn, cell, member, NOW)
    seqs = [
        await events.append_event(rows.conn, cell, "message", member, f"m{n}".encode(), NOW)
        for n in range(3)
    ]
    assert seqs == [1, 2, 3]
    after = await events.events_since(rows.conn, cell, 1, 10)
    assert [(e.seq, e.body) for e in after] == [(2, b"m1"), (3, b"m2")]
    until = await events.events_since(rows.conn, cell, 0, 10, until=2)  # a former member's reach
    assert [e.seq for e in until] == [1, 2]
    page = await events.event_page(rows.conn, cell, 2, 10)
    assert page.members == frozenset({member})
    assert [e.seq for e in page.events] == [3]


async def test_pages_of_several_groups_come_in_one_read(rows: Rows) -> None:
    a, b, empty = await rows.group(), await rows.group(), await rows.group()
    for group in (a, b):
        for _ in range(2):
            await events.append_event(rows.conn, group, "roster", None, b"x", NOW)
    pages = await events.event_pages(rows.conn, [(a, 0), (b, 1), (empty, 0)], 10)
    assert [e.seq for e in pages[a].events] == [1, 2]
    assert [e.seq for e in pages[b].events] == [2]
    assert pages[empty].events == [] and pages[empty].members == frozenset()


async def test_an_event_for_no_group_is_refused(rows: Rows) -> None:
    with pytest.raises(events.GroupNotFound):
        await events.append_event(rows.conn, os.urandom(16), "message", None, b"x", NOW)


async def test_a_listener_hears_an_event_once_it_commits(
    rows: Rows, pool: Pool, database_url: str
) -> None:
    cell = await rows.group()
    heard: asyncio.Queue[str] = asyncio.Queue()
    lost: list[object] = []
    listener = await events.listen(
        database_url, lambda _c, _p, _ch, payload: heard.put_nowait(payload), lost.append
    )
    try:
        await events.ping(listener)
        async with transaction(pool) as conn:
            seq = await events.append_event(conn, cell, "message", None, b"x", NOW)
            await asyncio.sleep(0.1)
            assert heard.empty()  # not before the commit
        payload = await asyncio.wait_for(heard.get(), 5)
        assert payload == events.notify_payload(cell, seq) == f"{b32e(cell)}:{seq}"
    finally:
        listener.terminate()


async def test_a_rolled_back_event_leaves_no_gap(rows: Rows, pool: Pool) -> None:
    cell = await rows.group()

    async def append_then_fail(conn: Connection) -> None:
        await events.append_event(conn, cell, "message", None, b"lost", NOW)
        raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        async with transaction(pool) as conn:
            await append_then_fail(conn)
    assert await events.append_event(rows.conn, cell, "message", None, b"kept", NOW) == 1
