"""server/store/admissions.py: one certificate per newcomer, one vouch or block per member."""

from __future__ import annotations

from crypto.keys import IdentityKey
from server.store import admissions, members
from tests.store.conftest import NOW, Rows


async def certify(rows: Rows, cell: bytes, issuer: IdentityKey, subject: IdentityKey) -> bytes:
    certificate = await rows.stored("admission", issuer, subject=subject.member_id, group_id=cell)
    assert await admissions.insert_admission(
        rows.conn, subject.member_id, certificate.id, issuer.member_id, cell, NOW
    )
    return certificate.id


async def test_a_newcomer_has_one_certificate(rows: Rows) -> None:
    cell = await rows.group()
    steward = await rows.member(cell)
    newcomer = await rows.member(cell, admitted_at=None, inviter=steward.member_id)
    certificate = await certify(rows, cell, steward, newcomer)
    other = await rows.stored("admission", steward, subject=newcomer.member_id)
    assert not await admissions.insert_admission(
        rows.conn, newcomer.member_id, other.id, steward.member_id, cell, NOW
    )
    stored = await admissions.admission_of(rows.conn, newcomer.member_id)
    assert stored is not None
    assert stored.body == (
        await rows.conn.fetchval("SELECT body FROM statements WHERE statement_id = $1", certificate)
    )
    assert await members.count_vetting_in_cell(rows.conn, cell) == 1


async def test_a_chain_runs_from_the_member_up_to_the_steward(rows: Rows) -> None:
    cell = await rows.group()
    steward = await rows.member(cell)
    first = await rows.member(cell, inviter=steward.member_id)
    second = await rows.member(cell, inviter=first.member_id)
    nearest = await certify(rows, cell, first, second)
    farthest = await certify(rows, cell, steward, first)
    chain = await admissions.chain_of(rows.conn, second.member_id)
    ids = [
        await rows.conn.fetchval("SELECT statement_id FROM statements WHERE body = $1", s.body)
        for s in chain
    ]
    assert ids == [nearest, farthest]
    assert await admissions.chain_of(rows.conn, steward.member_id) == []


async def test_a_member_vouches_and_blocks_once_each(rows: Rows) -> None:
    cell = await rows.group()
    steward = await rows.member(cell)
    voucher = await rows.member(cell, inviter=steward.member_id)
    newcomer = await rows.member(cell, admitted_at=None, inviter=steward.member_id)
    vouch = await rows.stored("vouch", voucher, subject=newcomer.member_id)
    block = await rows.stored("block", steward, subject=newcomer.member_id)
    conn, subject = rows.conn, newcomer.member_id
    assert await admissions.insert_verdict(conn, "vouch", subject, voucher.member_id, vouch.id, NOW)
    again = await rows.stored("vouch", voucher, subject=subject)
    assert not await admissions.insert_verdict(
        conn, "vouch", subject, voucher.member_id, again.id, NOW
    )
    assert await admissions.insert_verdict(conn, "block", subject, steward.member_id, block.id, NOW)
    verdicts = await admissions.verdicts_about(conn, subject)
    assert sorted(v.body for v in verdicts) == sorted([vouch.body, block.body])


async def test_a_statement_counts_as_one_verdict_only(rows: Rows) -> None:
    cell = await rows.group()
    steward = await rows.member(cell)
    a = await rows.member(cell, admitted_at=None, inviter=steward.member_id)
    b = await rows.member(cell, admitted_at=None, inviter=steward.member_id)
    vouch = await rows.stored("vouch", steward, subject=a.member_id)
    conn = rows.conn
    assert await admissions.insert_verdict(
        conn, "vouch", a.member_id, steward.member_id, vouch.id, NOW
    )
    # The same statement filed for another newcomer: its id is unique among vouches.
    assert not await admissions.insert_verdict(
        conn, "vouch", b.member_id, steward.member_id, vouch.id, NOW
    )
    assert await admissions.verdicts_about(conn, b.member_id) == []
