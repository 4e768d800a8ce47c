"""server/store/groups.py: each group's row (the lock everything takes) and its member index."""

from __future__ import annotations

import os
from datetime import timedelta

import asyncpg
import pytest

from server.store import groups
from tests.store.conftest import NOW, Rows


async def test_a_group_reads_back_locked_with_its_create_event(rows: Rows) -> None:
    cell = await rows.group()
    row = await groups.lock_group(rows.conn, cell)
    assert row is not None
    assert (row.network_id, row.kind, row.level, row.roster_seq, row.epoch) == (
        rows.network,
        "cell",
        0,
        0,
        0,
    )
    assert row.rekey_needed
    create = await groups.group_statement(rows.conn, cell)
    assert create is not None
    assert await groups.lock_group(rows.conn, os.urandom(16)) is None


async def test_a_group_id_is_taken_once(rows: Rows) -> None:
    cell = await rows.group()
    create = await rows.stored("roster", group_id=cell)
    with pytest.raises(asyncpg.UniqueViolationError):
        await groups.insert_group(rows.conn, cell, rows.network, "cell", 0, None, create.id)


async def test_a_new_epoch_restarts_its_clock_and_count(rows: Rows) -> None:
    cell = await rows.group()
    head = os.urandom(32)
    await groups.set_roster_head(rows.conn, cell, 1, head, 1, False, NOW)
    await rows.conn.execute("UPDATE groups SET epoch_messages = 7 WHERE group_id = $1", cell)
    later = NOW + timedelta(hours=1)
    await groups.set_roster_head(rows.conn, cell, 2, head, 1, True, later)
    same = await groups.lock_group(rows.conn, cell)
    assert same is not None
    assert (same.roster_seq, same.epoch_messages, same.epoch_started_at) == (2, 7, NOW)
    await groups.set_roster_head(rows.conn, cell, 3, head, 2, False, later)
    new = await groups.lock_group(rows.conn, cell)
    assert new is not None
    assert (new.epoch, new.epoch_messages, new.epoch_started_at, new.rekey_needed) == (
        2,
        0,
        later,
        False,
    )


async def test_the_member_index_adds_and_drops_once(rows: Rows) -> None:
    cell = await rows.group()
    council = await rows.group("council", 1)
    member = (await rows.member(cell)).member_id
    assert await groups.add_group_member(rows.conn, cell, member, NOW)
    assert not await groups.add_group_member(rows.conn, cell, member, NOW)
    assert await groups.add_group_member(rows.conn, council, member, NOW + timedelta(seconds=1))
    assert await groups.is_group_member(rows.conn, cell, member)
    assert await groups.groups_of(rows.conn, member) == [cell, council]
    summaries = await groups.group_summaries(rows.conn, member)
    assert [(s.group_id, s.kind, s.level, s.members) for s in summaries] == [
        (cell, "cell", 0, 1),
        (council, "council", 1, 1),
    ]
    assert await groups.remove_group_member(rows.conn, cell, member)
    assert not await groups.remove_group_member(rows.conn, cell, member)
    assert not await groups.is_group_member(rows.conn, cell, member)


async def test_a_former_members_reach_is_the_event_that_removed_them(rows: Rows) -> None:
    cell = await rows.group()
    member = (await rows.member(cell)).member_id
    assert await groups.former_reach(rows.conn, cell, member) is None
    await groups.add_former_member(rows.conn, cell, member, 9, 4)
    assert await groups.former_reach(rows.conn, cell, member) == groups.FormerReach(9, 4)
    await groups.add_former_member(rows.conn, cell, member, 12, 6)  # removed again, later
    assert await groups.former_reach(rows.conn, cell, member) == groups.FormerReach(12, 6)
    with pytest.raises(asyncpg.CheckViolationError):
        await groups.add_former_member(rows.conn, cell, member, 0, 0)
