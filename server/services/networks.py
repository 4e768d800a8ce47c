"""Founding a network (the genesis, the first cell, the founder as first member) and reading its genesis.

The rule: a server hosts at most ``max_networks`` networks; concurrent
foundings queue on the networks table's lock, so the limit holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.network import Genesis, parse_genesis, parse_key_bundle
from crypto.roster import GroupRules, parse_group_creation
from crypto.statements import from_wire
from server.errors import ErrorCode
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    load_genesis,
    seconds,
    statement_from,
)
from server.services.roster_ops import add_founding_members, record_creation
from server.store import members as member_store
from server.store import networks as store
from server.store.db import Pool, transaction
from server.store.statements import insert_statement


@dataclass(frozen=True)
class Founded:
    network_id: bytes
    cell_id: bytes
    member_id: bytes


async def create_network(
    pool: Pool, body: dict[str, Any], now: datetime, max_networks: int
) -> Founded:
    with crypto_errors():
        if "genesis" not in body:
            raise api_error(400, ErrorCode.BAD_REQUEST, "field 'genesis' is required")
        genesis = parse_genesis(from_wire(body["genesis"], "genesis", None))
    network = genesis.network_id
    cell_statement = statement_from(body, "cell", "roster", network)
    bundle_statement = statement_from(body, "key_bundle", "key-bundle", network)
    with crypto_errors():
        cell = parse_group_creation(cell_statement, rules=GroupRules.of(genesis), now=seconds(now))
        parse_key_bundle(bundle_statement, seconds(now))
    for statement in (genesis.statement, cell_statement, bundle_statement):
        check_fresh(statement, now)
    founder = genesis.statement.author
    if cell_statement.author != founder or bundle_statement.author != founder:
        raise api_error(
            400,
            ErrorCode.INVALID_STATEMENT,
            "the founder signs the first cell and their own key bundle",
        )
    if cell.state.kind != "cell" or cell.state.parent is not None:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, "the first group of a network is a cell")
    if set(cell.state.members) != {founder}:
        raise api_error(
            400, ErrorCode.INVALID_STATEMENT, "the first cell starts with its founder alone"
        )
    async with transaction(pool) as conn:
        await store.lock_networks(conn)
        if await store.count_networks(conn) >= max_networks:
            raise api_error(
                409, ErrorCode.NETWORK_EXISTS, "this server already hosts its limit of networks"
            )
        await store.insert_network(
            conn, network, genesis.statement.body, genesis.statement.signature
        )
        await insert_statement(conn, bundle_statement)
        await record_creation(conn, network, cell, now)
        await member_store.insert_member(
            conn,
            founder,
            network,
            genesis.statement.author_key.raw,
            bundle_statement.id,
            cell_id=cell.group_id,
            inviter_id=None,
            invite_lookup=None,
            join_statement=None,
            join_proof=None,
            joined_at=now,
            admitted_at=now,
            is_steward=True,
        )
        await add_founding_members(conn, cell, now)
    return Founded(network, cell.group_id, founder)


async def network_genesis(pool: Pool, session: Session) -> Genesis:
    """The caller's network's genesis, verified."""
    async with transaction(pool) as conn:
        return await load_genesis(conn, session.network_id)
