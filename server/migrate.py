"""Apply the numbered SQL migrations in ``schema/`` to a database.

Rule: each migration runs in its own transaction together with the row that
records it in ``schema_migrations``, so a migration is either fully applied and
recorded or not at all. A PostgreSQL advisory lock serialises whole runs, so
several server instances starting at once apply each migration exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Arbitrary but fixed: every Spokes instance must use the same key.
# int.from_bytes(b"spokesmg", "big"), which fits a signed bigint.
MIGRATION_LOCK_KEY = 0x73706F6B65736D67

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

# The bookkeeping table is the one piece of shape that cannot live in a
# migration: it has to exist before the first one runs.
_BOOKKEEPING_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """The database and the migrations shipped with this code disagree."""


@dataclass(frozen=True)
class Migration:
    """One ``NNN_name.sql`` file."""

    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class MigrationReport:
    """What one run did: versions applied now, and the version the database is at."""

    applied: tuple[int, ...]
    current: int


def load_migrations() -> list[Migration]:
    """Every migration shipped in the ``schema`` package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("schema").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> MigrationReport:
    """Bring the database behind ``conn`` up to the newest shipped migration."""
    migrations = load_migrations()
    # Session-level lock, released in `finally`; a crashed process releases it
    # when its connection drops.
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING_DDL)
        rows = await conn.fetch("SELECT version, name FROM schema_migrations")
        done = {int(r["version"]): str(r["name"]) for r in rows}
        _check_known(done, migrations)
        applied: list[int] = []
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            applied.append(migration.version)
        current = max([*done, *applied], default=0)
        return MigrationReport(applied=tuple(applied), current=current)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def migrate_url(database_url: str) -> MigrationReport:
    """Open a single connection to ``database_url`` and migrate it."""
    conn = await asyncpg.connect(database_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


def _check_known(done: dict[int, str], migrations: list[Migration]) -> None:
    """Refuse a database migrated by different (usually newer) code."""
    shipped = {m.version: m.name for m in migrations}
    for version, name in sorted(done.items()):
        if version not in shipped:
            raise MigrationError(
                f"the database has migration {version} ({name}) that this server does not "
                "know; run a server version at least as new as the one that migrated it"
            )
        if shipped[version] != name:
            raise MigrationError(
                f"migration {version} is named {name!r} in the database but "
                f"{shipped[version]!r} here; the schema files were changed after release"
            )
