"""Electing and recalling a spokesperson over the real API: motions and roster events."""

from __future__ import annotations

from typing import Any

import pytest

from crypto import motions
from crypto.elections import make_elect_motion, make_recall_motion
from crypto.encoding import b32e
from crypto.motions import Motion
from crypto.network import DAY, Policy
from crypto.roster import RosterState
from crypto.rostertree import roster_root
from tests.server.actors import Actor, bring_in, table_counts
from tests.server.group_actors import GroupView


@pytest.fixture
async def cell(server, http) -> tuple[GroupView, list[Actor]]:
    """A founder and three members on the roster; probation 30 days for the three."""
    founder = Actor(http, server.url)
    assert (
        await founder.found(Policy(cell_min=2, vouches=1, probation_seconds=30 * DAY))
    ).status == 201
    view = GroupView(founder, founder.cell or b"")
    members = [founder]
    for _ in range(3):
        newcomer = Actor(http, server.url)
        await bring_in(founder, newcomer, *members[1:])
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
        members.append(newcomer)
    return view, members


async def open_motion(actor: Actor, motion: Motion) -> Any:
    return await actor.call(
        "POST", f"/v1/groups/{b32e(motion.group)}/motions", {"motion": motion.statement.to_wire()}
    )


async def carry(view: GroupView, op: str, motion: Motion, signers: list[Actor]) -> Any:
    signatures = [motions.sign_motion(s.key, s.network, motion, s.now()) for s in signers]
    await view.refresh()
    return await view.post(op, motions.split_event_fields(motion, signatures))


async def test_the_founder_is_elected_by_a_majority_and_recalled(cell, pool) -> None:
    view, (founder, b, c, d) = cell
    state: RosterState = await view.refresh()
    motion = make_elect_motion(b.key, b.network, state, founder.id, b.now())
    assert (await open_motion(b, motion)).status == 201
    listed = await c.call("GET", "/v1/motions")
    assert [m["kind"] for m in listed.body["motions"]] == ["elect"]
    # B (opening) and C: 2 of 4, short of a majority; refused and nothing written.
    before = await table_counts(pool)
    short = await carry(view, "elect", motion, [c])
    assert (short.status, short.code) == (409, "quorum_not_reached")
    assert await table_counts(pool) == before
    assert (await carry(view, "elect", motion, [c, d])).status == 201
    assert view.state is not None and view.state.spokesperson == founder.id
    assert (await c.call("GET", "/v1/motions")).body["motions"] == []  # carried out
    # The same election again is a replay.
    again = await carry(view, "elect", motion, [c, d])
    assert (again.status, again.code) == (409, "stale_motion")
    recall = make_recall_motion(d.key, d.network, view.state, d.now())
    assert (await open_motion(d, recall)).status == 201
    assert (await carry(view, "recall", recall, [b, c])).status == 201
    assert view.state.spokesperson is None
    replayed = await carry(view, "elect", motion, [c, d])
    assert (replayed.status, replayed.code) == (409, "stale_motion")


async def test_motions_that_could_never_pass_are_refused_when_opened(cell, pool) -> None:
    view, (founder, b, c, _) = cell
    state = await view.refresh()
    before = await table_counts(pool)
    probation = make_elect_motion(founder.key, founder.network, state, b.id, founder.now())
    reply = await open_motion(founder, probation)
    assert (reply.status, reply.code) == (403, "in_probation")
    stranger = make_elect_motion(founder.key, founder.network, state, bytes(32), founder.now())
    reply = await open_motion(founder, stranger)
    assert (reply.status, reply.code) == (403, "not_in_group")
    with pytest.raises(Exception, match="no spokesperson"):
        make_recall_motion(c.key, c.network, state, c.now())
    terms = motions.election_terms_for(state, founder.id, roster_root(state.members.values()))
    forged = motions.make_motion(c.key, c.network, state, "recall", terms, c.now())
    reply = await open_motion(c, forged)
    assert (reply.status, reply.code) == (409, "not_spokesperson")
    assert await table_counts(pool) == before


async def test_an_election_of_a_member_in_probation_is_refused_by_the_rule(cell, pool) -> None:
    view, (founder, b, c, d) = cell
    state = await view.refresh()
    motion = make_elect_motion(c.key, c.network, state, b.id, c.now())
    before = await table_counts(pool)
    reply = await carry(view, "elect", motion, [b, d])  # never opened: straight to the log
    assert (reply.status, reply.code) == (403, "in_probation")
    assert await table_counts(pool) == before
