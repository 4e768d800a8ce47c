"""server/store/roster.py: roster logs in seq order, and each member's sealed epoch secret."""

from __future__ import annotations

import os

import asyncpg
import pytest

from server.store import roster
from tests.store.conftest import Rows


async def test_a_log_reads_back_in_seq_order(rows: Rows) -> None:
    cell = await rows.group()
    events = [await rows.stored("roster", group_id=cell) for _ in range(3)]
    for seq in (2, 0, 1):
        await roster.insert_roster_event(rows.conn, cell, seq, events[seq].id, "add")
    log = await roster.roster_log(rows.conn, cell)
    assert [s.body for s in log] == [e.body for e in events]
    cut = await roster.roster_log(rows.conn, cell, until=1)  # a former member's reach
    assert [s.body for s in cut] == [e.body for e in events[:2]]
    assert await roster.group_of_roster_event(rows.conn, events[1].id) == cell
    assert await roster.group_of_roster_event(rows.conn, os.urandom(32)) is None


async def test_a_seq_is_taken_once(rows: Rows) -> None:
    cell = await rows.group()
    first = await rows.stored("roster", group_id=cell)
    second = await rows.stored("roster", group_id=cell)
    await roster.insert_roster_event(rows.conn, cell, 0, first.id, "create")
    with pytest.raises(asyncpg.UniqueViolationError):
        await roster.insert_roster_event(rows.conn, cell, 0, second.id, "create")


async def test_an_unknown_operation_is_refused_by_the_table(rows: Rows) -> None:
    cell = await rows.group()
    event = await rows.stored("roster", group_id=cell)
    with pytest.raises(asyncpg.CheckViolationError):
        await roster.insert_roster_event(rows.conn, cell, 0, event.id, "coup")


async def test_each_member_reads_their_own_box_of_an_epoch(rows: Rows) -> None:
    cell = await rows.group()
    a, b = (await rows.member(cell)).member_id, (await rows.member(cell)).member_id
    await roster.insert_epoch_secrets(rows.conn, cell, 1, {a: b"box for a", b: b"box for b"})
    assert await roster.epoch_secret(rows.conn, cell, 1, a) == b"box for a"
    assert await roster.epoch_secret(rows.conn, cell, 1, b) == b"box for b"
    assert await roster.epoch_secret(rows.conn, cell, 2, a) is None
    with pytest.raises(asyncpg.UniqueViolationError):
        await roster.insert_epoch_secrets(rows.conn, cell, 1, {a: b"another box"})
