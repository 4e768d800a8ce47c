"""server/store/notices.py: sealed addresses and the mail outbox, on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import asyncpg
import pytest

from server.store import groups, notices
from server.store.db import Pool
from tests.store.conftest import NOW, Rows

SEALED = os.urandom(60)  # the store keeps bytes; sealing is server/mail.py's
HOUR = timedelta(hours=1)


async def opted_in_cell(rows: Rows, members: int, opted_in: int) -> tuple[bytes, list[bytes]]:
    """A cell of `members` on its roster, the first `opted_in` with an address."""
    cell = await rows.group()
    ids = []
    for n in range(members):
        member_id = (await rows.member(cell)).member_id
        await groups.add_group_member(rows.conn, cell, member_id, NOW)
        if n < opted_in:
            await notices.put_address(rows.conn, member_id, SEALED, NOW)
        ids.append(member_id)
    return cell, ids


async def outbox(rows: Rows) -> list[tuple[bytes, str]]:
    found = await rows.conn.fetch("SELECT member_id, kind FROM mail_notices ORDER BY notice_id")
    return [(bytes(r["member_id"]), r["kind"]) for r in found]


async def test_notices_are_written_only_for_members_with_an_address(rows: Rows) -> None:
    cell, (ann, bob, cat) = await opted_in_cell(rows, 3, opted_in=1)
    assert await notices.insert_notices(rows.conn, [ann, bob], "invite_redeemed", NOW) == 1
    assert await notices.insert_group_notices(rows.conn, cell, [cat], "motion", NOW) == 1
    assert await notices.insert_group_notices(rows.conn, cell, [ann], "motion", None) == 0
    assert await outbox(rows) == [(ann, "invite_redeemed"), (ann, "motion")]


async def test_the_table_refuses_a_notice_without_an_address_or_of_an_unknown_kind(
    rows: Rows,
) -> None:
    _, (ann, bob) = await opted_in_cell(rows, 2, opted_in=1)
    insert = """INSERT INTO mail_notices (member_id, kind, created_at, next_attempt_at)
                VALUES ($1, $2, $3, $3)"""
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await rows.conn.execute(insert, bob, "motion", NOW)
    with pytest.raises(asyncpg.CheckViolationError):
        await rows.conn.execute(insert, ann, "your group name here", NOW)
    with pytest.raises(asyncpg.CheckViolationError):
        await notices.put_address(rows.conn, bob, b"short", NOW)
    assert await outbox(rows) == []


async def test_clearing_an_address_takes_its_pending_notices(rows: Rows) -> None:
    _, (ann, bob) = await opted_in_cell(rows, 2, opted_in=2)
    await notices.insert_notices(rows.conn, [ann, bob], "motion", NOW)
    assert await notices.delete_address(rows.conn, ann)
    assert not await notices.delete_address(rows.conn, ann)
    assert await outbox(rows) == [(bob, "motion")]


async def test_activity_is_one_notice_an_hour_for_the_others_in_the_group(rows: Rows) -> None:
    cell, (ann, bob, cat) = await opted_in_cell(rows, 3, opted_in=2)
    # Ann writes twice and Cat once in one batch: Bob is told once; Ann, of Cat's message.
    batch = ([cell, cell, cell], [ann, ann, cat])
    assert await notices.insert_activity(rows.conn, *batch, NOW, NOW - HOUR) == 2
    later = NOW + timedelta(minutes=59)
    assert await notices.insert_activity(rows.conn, *batch, later, later - HOUR) == 0
    after = NOW + HOUR
    assert await notices.insert_activity(rows.conn, [cell], [ann], after, after - HOUR) == 1
    assert sorted(await outbox(rows)) == sorted(
        [(ann, "activity"), (bob, "activity"), (bob, "activity")]
    )


async def test_two_batches_at_once_give_one_activity_notice(rows: Rows, pool: Pool) -> None:
    cell, (ann, bob) = await opted_in_cell(rows, 2, opted_in=1)
    async with pool.acquire() as one, pool.acquire() as two:
        first = one.transaction()
        await first.start()
        assert await notices.insert_activity(one, [cell], [bob], NOW, NOW - HOUR) == 1
        # The second waits on the first's lock on Ann's row, then finds the hour taken.
        second = asyncio.create_task(notices.insert_activity(two, [cell], [bob], NOW, NOW - HOUR))
        await asyncio.sleep(0.05)
        assert not second.done()
        await first.commit()
        assert await asyncio.wait_for(second, 5) == 0
    assert await outbox(rows) == [(ann, "activity")]


async def test_a_claimed_notice_is_not_claimed_again_until_its_lease_ends(
    rows: Rows, pool: Pool
) -> None:
    _, (ann, bob) = await opted_in_cell(rows, 2, opted_in=2)
    await notices.insert_notices(rows.conn, [ann], "motion", NOW)
    await notices.insert_notices(rows.conn, [bob], "activity", NOW)
    lease = NOW + timedelta(minutes=5)
    async with pool.acquire() as one, pool.acquire() as two:
        claiming = one.transaction()
        await claiming.start()
        (first,) = await notices.claim_due(one, NOW, lease, limit=1)
        # While the first claim is uncommitted, a second worker skips its row.
        (second,) = await notices.claim_due(two, NOW, lease, limit=5)
        await claiming.commit()
    assert {first.member_id, second.member_id} == {ann, bob}
    assert (first.attempts, first.sealed) == (1, SEALED)
    assert await notices.claim_due(rows.conn, lease - timedelta(seconds=1), lease, 5) == []
    await notices.reschedule(rows.conn, [(first.notice_id, NOW)])
    (again,) = await notices.claim_due(rows.conn, NOW, lease, 5)
    assert (again.notice_id, again.attempts) == (first.notice_id, 2)
    assert await notices.delete_notices(rows.conn, [first.notice_id, second.notice_id]) == 2
    assert await outbox(rows) == []


async def test_old_notices_are_pruned(rows: Rows) -> None:
    _, (ann,) = await opted_in_cell(rows, 1, opted_in=1)
    await notices.insert_notices(rows.conn, [ann], "motion", NOW - timedelta(days=4))
    await notices.insert_notices(rows.conn, [ann], "activity", NOW)
    assert await notices.prune_notices(rows.conn, NOW - timedelta(days=3)) == 1
    assert await outbox(rows) == [(ann, "activity")]
