"""Founding a network: the genesis, the first cell, the founder as first member."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crypto.network import parse_genesis, parse_key_bundle
from crypto.roster import GroupRules, parse_group_creation
from crypto.statements import from_wire
from server.services.common import api_error, check_fresh, crypto_errors, seconds, statement_from
from server.services.groups import add_founding_members, record_creation
from server.store import membership as store
from server.store.db import Connection


@dataclass(frozen=True)
class Founded:
    network_id: bytes
    cell_id: bytes
    member_id: bytes


async def create_network(
    conn: Connection, body: dict[str, Any], now: datetime, max_networks: int
) -> Founded:
    with crypto_errors():
        if "genesis" not in body:
            raise api_error(400, "bad_request", "field 'genesis' is required")
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
            400, "invalid_statement", "the founder signs the first cell and their own key bundle"
        )
    if cell.state.kind != "cell" or cell.state.parent is not None:
        raise api_error(400, "invalid_statement", "the first group of a network is a cell")
    if set(cell.state.members) != {founder}:
        raise api_error(400, "invalid_statement", "the first cell starts with its founder alone")
    # Serialises concurrent foundings so the network limit holds.
    await conn.execute("LOCK TABLE networks IN EXCLUSIVE MODE")
    if await store.count_networks(conn) >= max_networks:
        raise api_error(409, "network_exists", "this server already hosts its limit of networks")
    await store.insert_network(conn, network, genesis.statement.body, genesis.statement.signature)
    await store.insert_statement(
        conn,
        bundle_statement.id,
        network,
        "key-bundle",
        founder,
        bundle_statement.body,
        bundle_statement.signature,
    )
    await record_creation(conn, network, cell, now)
    await store.insert_member(
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
