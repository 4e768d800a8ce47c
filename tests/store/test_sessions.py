"""server/store/sessions.py: single-use login challenges and hashed session tokens."""

from __future__ import annotations

import os
from datetime import timedelta

import asyncpg
import pytest

from server.store import members, sessions
from tests.store.conftest import NOW, Rows

HOUR = timedelta(hours=1)


async def test_a_challenge_answers_one_login(rows: Rows) -> None:
    member = await rows.member(await rows.group())
    challenge = os.urandom(32)
    await sessions.insert_challenge(rows.conn, challenge, member.member_id, NOW + HOUR)
    assert await sessions.take_challenge(rows.conn, challenge, member.member_id, NOW)
    assert not await sessions.take_challenge(rows.conn, challenge, member.member_id, NOW)


async def test_a_challenge_is_spent_even_by_a_wrong_or_late_answer(rows: Rows) -> None:
    cell = await rows.group()
    member, other = await rows.member(cell), await rows.member(cell)
    wrong, late = os.urandom(32), os.urandom(32)
    await sessions.insert_challenge(rows.conn, wrong, member.member_id, NOW + HOUR)
    await sessions.insert_challenge(rows.conn, late, member.member_id, NOW + HOUR)
    assert not await sessions.take_challenge(rows.conn, wrong, other.member_id, NOW)
    assert not await sessions.take_challenge(rows.conn, late, member.member_id, NOW + 2 * HOUR)
    assert await rows.conn.fetchval("SELECT count(*) FROM login_challenges") == 0


async def test_a_session_reads_back_until_it_is_ended(rows: Rows) -> None:
    member = await rows.member(await rows.group())
    digest = os.urandom(32)
    await sessions.insert_session(rows.conn, digest, member.member_id, NOW, NOW + HOUR)
    found = await sessions.get_session(rows.conn, digest)
    assert found == sessions.SessionRow(member.member_id, rows.network, NOW + HOUR, False)
    owners = await sessions.session_members(rows.conn, [digest, os.urandom(32)])
    assert owners == {digest: sessions.SessionMember(member.member_id, member.public_key().raw)}
    assert await sessions.live_sessions(rows.conn, [digest], NOW) == {digest}
    assert await sessions.live_sessions(rows.conn, [digest], NOW + HOUR) == set()
    await sessions.end_member_sessions(rows.conn, member.member_id, NOW)
    ended = await sessions.get_session(rows.conn, digest)
    assert ended is not None and ended.revoked
    assert await sessions.live_sessions(rows.conn, [digest], NOW) == set()


async def test_a_revoked_member_has_no_live_session(rows: Rows) -> None:
    member = await rows.member(await rows.group())
    digest = os.urandom(32)
    await sessions.insert_session(rows.conn, digest, member.member_id, NOW, NOW + HOUR)
    await members.mark_revoked(rows.conn, member.member_id, NOW)
    found = await sessions.get_session(rows.conn, digest)
    assert found is not None and found.revoked
    assert await sessions.live_sessions(rows.conn, [digest], NOW) == set()


async def test_a_token_hash_is_one_session(rows: Rows) -> None:
    member = await rows.member(await rows.group())
    digest = os.urandom(32)
    await sessions.insert_session(rows.conn, digest, member.member_id, NOW, NOW + HOUR)
    with pytest.raises(asyncpg.UniqueViolationError):
        await sessions.insert_session(rows.conn, digest, member.member_id, NOW, NOW + HOUR)
