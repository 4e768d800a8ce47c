"""server/store/councils.py: the index of which group holds which seat of which council."""

from __future__ import annotations

import asyncpg
import pytest

from server.store import councils
from server.store.councils import SeatRow
from tests.store.conftest import Rows


async def test_a_seat_is_indexed_and_changes_hands(rows: Rows) -> None:
    cell = await rows.group()
    council = await rows.group("council", 1)
    holder = await rows.member(cell)
    link = await rows.stored("roster", holder, group_id=cell)
    await councils.put_seat(rows.conn, SeatRow(council, cell, holder.member_id, link.id, 3))
    assert await councils.seats_of_group(rows.conn, cell) == [
        SeatRow(council, cell, holder.member_id, link.id, 3)
    ]
    later = await rows.stored("roster", holder, group_id=cell)
    await councils.put_seat(rows.conn, SeatRow(council, cell, None, later.id, 5))
    assert await councils.seats_of_group(rows.conn, cell) == [
        SeatRow(council, cell, None, later.id, 5)
    ]
    assert await councils.seats_of_group(rows.conn, council) == []


async def test_a_seat_names_a_real_member_and_a_motion_id(rows: Rows) -> None:
    cell = await rows.group()
    council = await rows.group("council", 1)
    link = await rows.stored("roster", group_id=cell)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with rows.conn.transaction():
            await councils.put_seat(rows.conn, SeatRow(council, cell, bytes(32), link.id, 1))
    with pytest.raises(asyncpg.CheckViolationError):  # a link is named by a 32-byte motion id
        async with rows.conn.transaction():
            await councils.put_seat(rows.conn, SeatRow(council, cell, None, bytes(31), 1))
    with pytest.raises(asyncpg.CheckViolationError):
        async with rows.conn.transaction():
            await councils.put_seat(rows.conn, SeatRow(council, cell, None, link.id, -1))
