"""Migrations: the schema they build, idempotence, and concurrent starts."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from server.migrate import MigrationError, load_migrations, migrate, migrate_url
from server.store.db import Pool

EXPECTED_TABLES = {
    "schema_migrations",
    "networks",
    "statements",
    "groups",
    "members",
    "invites",
    "admissions",
    "vouches",
    "blocks",
    "revocations",
    "login_challenges",
    "sessions",
    "rate_limits",
    # 002_events
    "group_members",
    "group_events",
    # 003_roster
    "roster_events",
    "epoch_secrets",
    "messages",
    "profiles",
    "motions",
    "motion_signatures",
    # 005_former_members
    "former_group_members",
    # 007_councils
    "council_seats",
    # 008_mail
    "mail_addresses",
    "mail_notices",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {r["table_name"] for r in rows}


async def test_migrated_database_has_exactly_the_expected_tables(pool: Pool) -> None:
    async with pool.acquire() as conn:
        assert await _tables(conn) == EXPECTED_TABLES


async def test_every_shipped_migration_is_recorded(pool: Pool) -> None:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    shipped = [(m.version, m.name) for m in load_migrations()]
    assert [(r["version"], r["name"]) for r in rows] == shipped
    assert shipped[0] == (1, "init")


async def test_migrating_an_empty_database_then_again_is_idempotent(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        assert await _tables(conn) == set()
        first = await migrate(conn)
        second = await migrate(conn)
        assert await _tables(conn) == EXPECTED_TABLES
    newest = load_migrations()[-1].version
    assert first.applied == tuple(m.version for m in load_migrations())
    assert first.current == newest
    assert second.applied == ()
    assert second.current == newest


async def test_two_concurrent_migrations_both_succeed_and_apply_once(
    pool: Pool, database_url: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    first, second = await asyncio.gather(migrate_url(database_url), migrate_url(database_url))
    every = tuple(m.version for m in load_migrations())
    # The advisory lock lets exactly one of them do the work.
    assert sorted([first.applied, second.applied]) == [(), every]
    assert first.current == second.current == every[-1]
    async with pool.acquire() as conn:
        assert await _tables(conn) == EXPECTED_TABLES


async def test_a_database_from_newer_code_is_refused(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
        with pytest.raises(MigrationError, match="999"):
            await migrate(conn)
