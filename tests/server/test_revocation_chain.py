"""The revocation chain over the real HTTP API and PostgreSQL.

The server appends a revocation only if it extends the network's head
(seq = the chain's length, prev = its last id), and refuses, writing
nothing, a stale or forked one, a non-member, an already revoked member.
GET /v1/revocations serves the chain in order to admitted members only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crypto.chains import NO_PREVIOUS, verify_revocation_list
from crypto.encoding import b32d
from crypto.keys import IdentityKey
from crypto.network import Policy
from crypto.statements import from_wire, sign_statement
from tests.server.actors import Actor, bring_in, table_counts

NO_PROBATION = Policy(probation_seconds=0, vouches=1)


@pytest.fixture
async def cell(server: Any, http: Any) -> tuple[Actor, Actor, Actor, Actor]:
    """A steward founder and three admitted members."""
    founder = Actor(http, server.url)
    assert (await founder.found(NO_PROBATION)).status == 201
    members: list[Actor] = []
    for _ in range(3):
        member = Actor(http, server.url)
        await bring_in(founder, member, *members)  # every cellmate vouches: admitted at once
        members.append(member)
    return founder, members[0], members[1], members[2]


async def head(pool: Any) -> tuple[int, bytes | None]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT revocation_seq, revocation_head FROM networks")
    return row["revocation_seq"], None if row["revocation_head"] is None else bytes(row[1])


async def chain_of(actor: Actor) -> list[Any]:
    reply = await actor.call("GET", "/v1/revocations")
    assert reply.status == 200, reply.body
    return [from_wire(w, "revocation", actor.network) for w in reply.body["revocations"]]


async def test_revocations_chain_and_are_served_in_order(cell: Any, pool: Any) -> None:
    founder, a, b, c = cell
    first = await founder.revoke(a)
    assert first.status == 201, first.body
    assert first.body["seq"] == 0 and first.body["status"] == "revoked"
    prev = b32d(first.body["revocation_id"])
    second = await founder.revoke(b, seq=1, prev=prev)
    assert second.status == 201, second.body
    assert await head(pool) == (2, b32d(second.body["revocation_id"]))
    listed = verify_revocation_list(founder.genesis, await chain_of(c))
    assert listed.head is not None and listed.head.id == b32d(second.body["revocation_id"])
    assert set(listed.revoked) == {a.id, b.id}
    # The evidence carries the same chain, in the same order.
    evidence = await c.call("GET", f"/v1/members/{c.id_text}/evidence")
    wires = evidence.body["revocations"]
    statements = [from_wire(w, "revocation", c.network) for w in wires]
    assert verify_revocation_list(founder.genesis, statements).ids == listed.ids


async def refused(pool: Any, reply: Any, status: int, code: str, before: Any) -> None:
    assert (reply.status, reply.code) == (status, code), reply.body
    assert await table_counts(pool) == before[0]
    assert await head(pool) == before[1]


async def test_a_stale_or_forked_revocation_is_refused_and_writes_nothing(
    cell: Any, pool: Any
) -> None:
    founder, a, b, _ = cell
    first = await founder.revoke(a)
    prev = b32d(first.body["revocation_id"])
    before = (await table_counts(pool), await head(pool))
    # Another seq 0 (a fork of the list), a skipped seq, a wrong prev.
    for seq, named in ((0, NO_PREVIOUS), (2, prev), (1, NO_PREVIOUS), (1, bytes(31) + b"\x01")):
        await refused(pool, await founder.revoke(b, seq=seq, prev=named), 409, "stale_head", before)
    assert (await founder.revoke(b, seq=1, prev=prev)).status == 201


async def test_revoking_a_non_member_or_a_revoked_member_is_refused(cell: Any, pool: Any) -> None:
    founder, a, _, _ = cell
    before = (await table_counts(pool), await head(pool))
    stranger = IdentityKey.generate().member_id
    await refused(pool, await founder.revoke(stranger), 404, "not_found", before)
    first = await founder.revoke(a)
    assert first.status == 201
    before = (await table_counts(pool), await head(pool))
    again = await founder.revoke(a, seq=1, prev=b32d(first.body["revocation_id"]))
    await refused(pool, again, 409, "already_revoked", before)


async def test_only_a_steward_appends_to_the_chain(cell: Any, pool: Any) -> None:
    _, a, b, _ = cell
    before = (await table_counts(pool), await head(pool))
    await refused(pool, await a.revoke(b), 403, "not_steward", before)


async def test_two_stewards_racing_for_one_seq_leave_one_chain(cell: Any, pool: Any) -> None:
    founder, a, b, _ = cell
    replies = await asyncio.gather(founder.revoke(a), founder.revoke(b))
    assert sorted(r.status for r in replies) == [201, 409]
    assert {r.code for r in replies if r.status == 409} <= {"stale_head"}
    assert (await head(pool))[0] == 1


async def test_a_pending_newcomer_gets_no_revocation_list(
    cell: Any, server: Any, http: Any
) -> None:
    founder = cell[0]
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    assert (await newcomer.join(code, founder)).status == 201
    reply = await newcomer.call("GET", "/v1/revocations")
    assert (reply.status, reply.code) == (403, "not_admitted")


async def test_a_revocation_without_its_position_is_refused(cell: Any, pool: Any) -> None:
    founder, a, _, _ = cell
    before = (await table_counts(pool), await head(pool))
    for fields in (
        {"subject": a.id},
        {"subject": a.id, "seq": 0},
        {"subject": a.id, "prev": bytes(32)},
    ):
        statement = sign_statement(
            founder.key, "revocation", founder.network, founder.now(), fields
        )
        reply = await founder.call("POST", "/v1/revocations", {"revocation": statement.to_wire()})
        await refused(pool, reply, 400, "invalid_statement", before)
