"""server/store/profiles.py: the latest sealed profile of each member in each group."""

from __future__ import annotations

from datetime import timedelta

from server.store import groups, profiles
from tests.store.conftest import NOW, Rows


async def test_the_latest_profile_replaces_the_last(rows: Rows) -> None:
    cell = await rows.group()
    member = (await rows.member(cell)).member_id
    await groups.add_group_member(rows.conn, cell, member, NOW)
    await profiles.upsert_profile(rows.conn, cell, member, 1, b"first", NOW)
    await profiles.upsert_profile(rows.conn, cell, member, 2, b"second", NOW + timedelta(1))
    assert await profiles.profiles(rows.conn, cell) == [profiles.ProfileRow(member, 2, b"second")]


async def test_only_current_members_profiles_are_listed(rows: Rows) -> None:
    cell = await rows.group()
    stays, leaves = (await rows.member(cell)).member_id, (await rows.member(cell)).member_id
    for member in (stays, leaves):
        await groups.add_group_member(rows.conn, cell, member, NOW)
        await profiles.upsert_profile(rows.conn, cell, member, 1, b"sealed", NOW)
    await groups.remove_group_member(rows.conn, cell, leaves)
    assert [p.member_id for p in await profiles.profiles(rows.conn, cell)] == [stays]
