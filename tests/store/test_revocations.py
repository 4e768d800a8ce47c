"""server/store/revocations.py: the network's revocation chain and its head."""

from __future__ import annotations

import asyncpg
import pytest

from server.store import revocations
from tests.store.conftest import Rows


async def test_the_chain_grows_from_its_head(rows: Rows) -> None:
    cell = await rows.group()
    first, second = await rows.member(cell), await rows.member(cell)
    assert await revocations.revocation_head(rows.conn, rows.network) == (0, None)
    one = await rows.stored("revocation", subject=first.member_id)
    await revocations.append_revocation(rows.conn, rows.network, 0, first.member_id, one.id)
    assert await revocations.revocation_head(rows.conn, rows.network) == (1, one.id)
    two = await rows.stored("revocation", subject=second.member_id)
    await revocations.append_revocation(rows.conn, rows.network, 1, second.member_id, two.id)
    chain = await revocations.revocation_chain(rows.conn, rows.network)
    assert [s.body for s in chain] == [one.body, two.body]


async def test_a_second_link_at_one_seq_is_refused(rows: Rows) -> None:
    cell = await rows.group()
    first, second = await rows.member(cell), await rows.member(cell)
    one = await rows.stored("revocation", subject=first.member_id)
    await revocations.append_revocation(rows.conn, rows.network, 0, first.member_id, one.id)
    fork = await rows.stored("revocation", subject=second.member_id)
    with pytest.raises(asyncpg.UniqueViolationError):
        await revocations.append_revocation(rows.conn, rows.network, 0, second.member_id, fork.id)
    assert await revocations.revocation_head(rows.conn, rows.network) == (1, one.id)
