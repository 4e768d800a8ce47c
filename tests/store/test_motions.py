"""server/store/motions.py: motions opened in a group, signed once per member, then done."""

from __future__ import annotations

import os

import asyncpg
import pytest

from server.store import groups, motions
from tests.store.conftest import NOW, Rows


async def test_an_open_motion_is_listed_with_its_signatures_until_done(rows: Rows) -> None:
    cell = await rows.group()
    opener, signer = await rows.member(cell), await rows.member(cell)
    outsider = await rows.member(await rows.group())
    for key in (opener, signer):
        await groups.add_group_member(rows.conn, cell, key.member_id, NOW)
    motion = await rows.stored("motion", opener, group_id=cell)
    await motions.insert_motion(rows.conn, motion.id, cell, "split")
    assert await motions.get_motion(rows.conn, motion.id) == motions.MotionRow(cell, "open")
    signature = await rows.stored("motion-sign", signer, group_id=cell)
    assert await motions.insert_signature(
        rows.conn, motion.id, cell, signer.member_id, signature.id
    )
    again = await rows.stored("motion-sign", signer, group_id=cell)
    assert not await motions.insert_signature(
        rows.conn, motion.id, cell, signer.member_id, again.id
    )

    (listed,) = await motions.open_motions(rows.conn, opener.member_id)
    assert (listed.group_id, listed.kind, listed.motion.body) == (cell, "split", motion.body)
    assert [s.body for s in listed.signatures] == [signature.body]
    assert await motions.open_motions(rows.conn, outsider.member_id) == []

    await motions.mark_done(rows.conn, motion.id)
    assert await motions.open_motions(rows.conn, opener.member_id) == []
    assert await motions.get_motion(rows.conn, motion.id) == motions.MotionRow(cell, "done")
    assert await motions.get_motion(rows.conn, os.urandom(32)) is None


async def test_a_signature_under_another_group_than_its_motions_is_refused(rows: Rows) -> None:
    cell, other = await rows.group(), await rows.group()
    opener = await rows.member(cell)
    motion = await rows.stored("motion", opener, group_id=cell)
    await motions.insert_motion(rows.conn, motion.id, cell, "split")
    signature = await rows.stored("motion-sign", opener, group_id=other)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await motions.insert_signature(rows.conn, motion.id, other, opener.member_id, signature.id)
