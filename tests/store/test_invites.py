"""server/store/invites.py: open invites, redeemed at most once."""

from __future__ import annotations

import os
from datetime import timedelta

from crypto.keys import IdentityKey
from server.store import invites
from tests.store.conftest import NOW, Rows


async def invite(rows: Rows, cell: bytes, inviter: IdentityKey, expires_in: int = 3600) -> bytes:
    lookup = os.urandom(16)
    statement = await rows.stored("invite", inviter, group_id=cell)
    assert await invites.insert_invite(
        rows.conn,
        lookup,
        rows.network,
        inviter.member_id,
        cell,
        os.urandom(32),
        b"sealed payload",
        statement.id,
        NOW + timedelta(seconds=expires_in),
        NOW,
    )
    return lookup


async def test_an_invite_reads_back_and_its_lookup_id_is_taken_once(rows: Rows) -> None:
    cell = await rows.group()
    inviter = await rows.member(cell)
    lookup = await invite(rows, cell, inviter)
    stored = await invites.get_invite(rows.conn, lookup, for_update=True)
    assert stored is not None
    assert (stored.inviter_id, stored.cell_id, stored.payload) == (
        inviter.member_id,
        cell,
        b"sealed payload",
    )
    assert stored.redeemed_by is None
    again = await rows.stored("invite", inviter, group_id=cell)
    assert not await invites.insert_invite(
        rows.conn,
        lookup,
        rows.network,
        inviter.member_id,
        cell,
        os.urandom(32),
        b"another",
        again.id,
        NOW + timedelta(hours=1),
        NOW,
    )
    assert await invites.get_invite(rows.conn, os.urandom(16)) is None


async def test_an_invite_is_redeemed_once(rows: Rows) -> None:
    cell = await rows.group()
    inviter = await rows.member(cell)
    lookup = await invite(rows, cell, inviter)
    first = await rows.member(cell, admitted_at=None, inviter=inviter.member_id)
    second = await rows.member(cell, admitted_at=None, inviter=inviter.member_id)
    assert await invites.mark_redeemed(rows.conn, lookup, first.member_id, NOW)
    assert not await invites.mark_redeemed(rows.conn, lookup, second.member_id, NOW)
    stored = await invites.get_invite(rows.conn, lookup)
    assert stored is not None and stored.redeemed_by == first.member_id


async def test_open_invites_leave_out_redeemed_and_expired_ones(rows: Rows) -> None:
    cell = await rows.group()
    inviter = await rows.member(cell)
    redeemed = await invite(rows, cell, inviter)
    await invite(rows, cell, inviter, expires_in=60)
    await invite(rows, cell, inviter)
    newcomer = await rows.member(cell, admitted_at=None, inviter=inviter.member_id)
    await invites.mark_redeemed(rows.conn, redeemed, newcomer.member_id, NOW)
    assert await invites.count_open_invites(rows.conn, inviter.member_id, NOW) == 2
    later = NOW + timedelta(minutes=2)
    assert await invites.count_open_invites(rows.conn, inviter.member_id, later) == 1
