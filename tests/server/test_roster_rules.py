"""The server runs the roster rule book too: bad adds and removals get a 4xx and write nothing.

Each case is an event an informant member could sign and post (the server is
honest here); crypto.roster refuses it before anything is stored.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from crypto.chains import make_admission, make_revocation
from crypto.network import Policy
from crypto.roster import add_fields
from crypto.statements import pack
from tests.server.actors import Actor, bring_in, table_counts
from tests.server.group_actors import GroupView


@pytest.fixture
async def founder(server, http) -> Actor:
    actor = Actor(http, server.url)
    policy = Policy(cell_min=2, vouches=2, probation_seconds=0, vetting_seconds=0)
    assert (await actor.found(policy)).status == 201
    return actor


async def cell_of_two(founder: Actor, server: Any, http: Any) -> tuple[GroupView, Actor]:
    b = Actor(http, server.url)
    await bring_in(founder, b)
    view = GroupView(founder, founder.cell or b"")
    assert (await view.add(b, await founder.admission_of(b))).status == 201
    return view, b


async def refused(view: GroupView, pool: Any, op: str, fields: Any, code: str) -> None:
    before = await table_counts(pool)
    reply = await view.post(op, fields)
    assert reply.code == code, reply.body
    assert 400 <= reply.status < 500
    assert await table_counts(pool) == before


async def test_an_add_without_its_evidence_is_refused(founder: Actor, server, http, pool) -> None:
    view, _ = await cell_of_two(founder, server, http)
    newcomer = Actor(http, server.url)
    newcomer.genesis = founder.genesis  # keys for this network, never admitted
    fields = {"bundle": pack(newcomer.bundle().statement)}
    await refused(view, pool, "add", fields, "invalid_event")


async def test_an_add_short_of_the_vouches_is_refused(founder: Actor, server, http, pool) -> None:
    view, _ = await cell_of_two(founder, server, http)
    newcomer = Actor(http, server.url)
    await bring_in(founder, newcomer)  # the founder's certificate; B has not vouched
    admission = await founder.admission_of(newcomer)
    await refused(view, pool, "add", add_fields(newcomer.bundle(), admission, []), "not_vetted")


async def test_an_add_certified_for_another_cell_is_refused(
    founder: Actor, server, http, pool
) -> None:
    view, _ = await cell_of_two(founder, server, http)
    newcomer = Actor(http, server.url)
    newcomer.genesis = founder.genesis
    elsewhere = make_admission(
        founder.key,
        founder.network,
        newcomer.key.public_key(),
        os.urandom(16),
        os.urandom(16),
        os.urandom(32),
        founder.now(),
    )
    await refused(view, pool, "add", add_fields(newcomer.bundle(), elsewhere, []), "wrong_cell")


async def test_a_revoked_removal_needs_a_stewards_revocation_of_that_member(
    founder: Actor, server, http, pool
) -> None:
    view, b = await cell_of_two(founder, server, http)
    by_member = make_revocation(b.key, founder.network, founder.id, b.now())
    fields = {"member": founder.id, "reason": "revoked", "revocation": pack(by_member.statement)}
    await refused(view, pool, "remove", fields, "not_allowed")
    of_another = make_revocation(founder.key, founder.network, os.urandom(32), founder.now())
    fields = {"member": b.id, "reason": "revoked", "revocation": pack(of_another.statement)}
    await refused(view, pool, "remove", fields, "wrong_member")
    fields = {"member": b.id, "reason": "revoked"}
    await refused(view, pool, "remove", fields, "invalid_event")
