"""server/store/members.py: members, their cell and how far their vetting went."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from crypto.keys import IdentityKey
from server.store import members
from tests.store.conftest import NOW, Rows


async def test_a_member_reads_back_with_their_key(rows: Rows) -> None:
    cell = await rows.group()
    key = await rows.member(cell)
    member = await members.get_member(rows.conn, key.member_id)
    assert member is not None
    assert member.identity_key == key.public_key().raw
    assert (member.cell_id, member.admitted_at, member.is_steward) == (cell, NOW, True)
    assert await members.member_exists_with_key(rows.conn, key.public_key().raw)
    assert await members.identity_key(rows.conn, key.member_id) == key.public_key().raw
    join, proof, bundle = await members.join_evidence(rows.conn, key.member_id)
    assert join is None and proof is None and bundle is not None


async def test_one_key_is_one_member(rows: Rows) -> None:
    cell = await rows.group()
    key = await rows.member(cell)
    with pytest.raises(asyncpg.UniqueViolationError):
        # Another member id over the same identity key: the UNIQUE key refuses it.
        await members.insert_member(
            rows.conn,
            IdentityKey.generate().member_id,
            rows.network,
            key.public_key().raw,
            (await rows.stored("key-bundle", key)).id,
            cell_id=cell,
            inviter_id=None,
            invite_lookup=None,
            join_statement=None,
            join_proof=None,
            joined_at=NOW,
            admitted_at=None,
            is_steward=False,
        )


async def test_a_cell_lists_admitted_members_and_pending_newcomers_apart(rows: Rows) -> None:
    cell = await rows.group()
    first = await rows.member(cell, admitted_at=NOW)
    second = await rows.member(cell, admitted_at=NOW + timedelta(seconds=1))
    newcomer = await rows.member(cell, admitted_at=None, inviter=first.member_id)
    revoked = await rows.member(cell, admitted_at=NOW)
    await members.mark_revoked(rows.conn, revoked.member_id, NOW)
    admitted = [m.member_id for m in await members.cell_members(rows.conn, cell)]
    assert admitted == [first.member_id, second.member_id]
    pending = [m.member_id for m in await members.pending_in_cell(rows.conn, cell)]
    assert pending == [newcomer.member_id]


async def test_admitted_and_blocked_are_marked_once(rows: Rows) -> None:
    cell = await rows.group()
    newcomer = await rows.member(cell, admitted_at=None)
    later = NOW + timedelta(hours=1)
    await members.mark_admitted(rows.conn, newcomer.member_id, later)
    await members.mark_admitted(rows.conn, newcomer.member_id, later + timedelta(hours=1))
    await members.mark_blocked(rows.conn, newcomer.member_id, later)
    await members.mark_blocked(rows.conn, newcomer.member_id, later + timedelta(hours=1))
    member = await members.get_member(rows.conn, newcomer.member_id)
    assert member is not None
    assert member.admitted_at == later and member.blocked_at == later


async def test_a_split_moves_members_to_the_new_cell(rows: Rows) -> None:
    old, new = await rows.group(), await rows.group()
    moved, stays = await rows.member(old), await rows.member(old)
    await members.set_member_cell(rows.conn, [moved.member_id], new)
    assert [m.member_id for m in await members.cell_members(rows.conn, new)] == [moved.member_id]
    assert [m.member_id for m in await members.cell_members(rows.conn, old)] == [stays.member_id]
