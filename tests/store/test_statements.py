"""server/store/statements.py: verified statements, stored once under their id."""

from __future__ import annotations

import os

import pytest

from crypto.statements import statement_id
from server.store.db import Connection
from server.store.statements import get_statement, insert_statement
from tests.store.conftest import Rows


async def test_a_stored_statement_reads_back_as_signed(rows: Rows, conn: Connection) -> None:
    statement = rows.signed()
    assert await insert_statement(conn, statement, subject=rows.founder.member_id)
    stored = await get_statement(conn, statement.id)
    assert stored is not None
    assert (stored.body, stored.sig) == (statement.body, statement.signature)
    assert statement_id(stored.body) == statement.id
    row = await conn.fetchrow(
        "SELECT network_id, type, author, subject FROM statements WHERE statement_id = $1",
        statement.id,
    )
    assert dict(row) == {
        "network_id": rows.network,
        "type": "note",
        "author": rows.founder.member_id,
        "subject": rows.founder.member_id,
    }


async def test_the_same_statement_twice_is_stored_once(rows: Rows, conn: Connection) -> None:
    statement = rows.signed()
    assert await insert_statement(conn, statement)
    assert not await insert_statement(conn, statement)
    count = await conn.fetchval(
        "SELECT count(*) FROM statements WHERE statement_id = $1", statement.id
    )
    assert count == 1


async def test_an_unknown_statement_is_none(rows: Rows, conn: Connection) -> None:
    assert await get_statement(conn, os.urandom(32)) is None


async def test_a_statement_naming_no_network_is_refused(rows: Rows, conn: Connection) -> None:
    from crypto.statements import sign_statement

    genesis_like = sign_statement(rows.founder, "note", None, 1, {})
    with pytest.raises(ValueError, match="network"):
        await insert_statement(conn, genesis_like)
