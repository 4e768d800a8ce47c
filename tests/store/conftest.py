"""Fixtures for the store tests: a connection on the test's own database, and a row builder.

Store functions run inside a service's transaction; here each test holds a
plain connection (every statement commits on its own), so a refusal such as
a unique violation can be asserted and the test goes on. The rows a table
needs beneath it (a network, statements, groups, members) are written
through the store itself, from really signed statements.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from crypto.keys import IdentityKey
from crypto.network import Policy, make_genesis
from crypto.statements import Statement, sign_statement
from server.store import groups, members, networks
from server.store.db import Connection, Pool
from server.store.statements import insert_statement

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Rows:
    """One network's rows, built on demand for the table under test."""

    conn: Connection
    founder: IdentityKey = field(default_factory=IdentityKey.generate)
    network: bytes = b""

    async def found(self) -> Rows:
        genesis = make_genesis(self.founder, Policy(), int(time.time()))
        self.network = genesis.network_id
        statement = genesis.statement
        await networks.insert_network(self.conn, self.network, statement.body, statement.signature)
        return self

    def signed(self, statement_type: str = "note", key: IdentityKey | None = None) -> Statement:
        """A fresh statement of this network (a random nonce makes each one new)."""
        return sign_statement(
            key or self.founder,
            statement_type,
            self.network,
            int(time.time()),
            {"nonce": os.urandom(16)},
        )

    async def stored(
        self,
        statement_type: str = "note",
        key: IdentityKey | None = None,
        *,
        subject: bytes | None = None,
        group_id: bytes | None = None,
    ) -> Statement:
        statement = self.signed(statement_type, key)
        assert await insert_statement(self.conn, statement, subject=subject, group_id=group_id)
        return statement

    async def group(self, kind: str = "cell", level: int = 0) -> bytes:
        group_id = os.urandom(16)
        create = await self.stored("roster", group_id=group_id)
        await groups.insert_group(self.conn, group_id, self.network, kind, level, None, create.id)
        return group_id

    async def member(
        self,
        cell: bytes,
        *,
        key: IdentityKey | None = None,
        admitted_at: datetime | None = NOW,
        joined_at: datetime = NOW,
        inviter: bytes | None = None,
    ) -> IdentityKey:
        key = key or IdentityKey.generate()
        bundle = await self.stored("key-bundle", key)
        await members.insert_member(
            self.conn,
            key.member_id,
            self.network,
            key.public_key().raw,
            bundle.id,
            cell_id=cell,
            inviter_id=inviter,
            invite_lookup=None,
            join_statement=None,
            join_proof=None,
            joined_at=joined_at,
            admitted_at=admitted_at,
            is_steward=inviter is None,
        )
        return key


@pytest.fixture
async def conn(pool: Pool) -> AsyncIterator[Connection]:
    """A connection outside any transaction: each statement commits by itself."""
    async with pool.acquire() as connection:
        yield connection


@pytest.fixture
async def rows(conn: Connection) -> Rows:
    """A founded network to build rows in."""
    return await Rows(conn).found()
