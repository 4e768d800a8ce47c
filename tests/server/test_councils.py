"""Councils over the real API: founding on a delegation, linking a cell, a seat changing hands."""

from __future__ import annotations

import os
from typing import Any

import pytest

from crypto import councils, motions, roster
from crypto.delegations import parse_link
from crypto.elections import make_elect_motion, make_recall_motion
from crypto.encoding import b32e
from crypto.network import Policy
from crypto.roster import RosterState
from crypto.statements import Statement, from_wire, pack
from tests.server.actors import Actor, bring_in, table_counts
from tests.server.group_actors import GroupView


async def post(actor: Actor, group: bytes, event: Statement, **extra: Any) -> Any:
    return await actor.call(
        "POST", f"/v1/groups/{b32e(group)}/roster", {"event": event.to_wire(), **extra}
    )


async def elected(
    view: GroupView, who: Actor, opener: Actor, *signers: Actor, post_it: bool = True
):  # type: ignore[no-untyped-def]
    """Open and carry out an election in the view's group; the event (posted unless told not to)."""
    state = await view.refresh()
    motion = make_elect_motion(opener.key, opener.network, state, who.id, opener.now())
    signatures = [motions.sign_motion(s.key, s.network, motion, s.now()) for s in signers]
    event = roster.sign_event(
        opener.key,
        opener.network,
        state,
        "elect",
        opener.now(),
        motions.split_event_fields(motion, signatures),
    )
    if post_it:
        reply = await post(opener, state.group, event)
        assert reply.status == 201, reply.body
    return event, state


@pytest.fixture
async def two_cells(server, http) -> tuple[GroupView, GroupView, list[Actor]]:
    """Cell one: founder and B; cell two (split from it): C and D. Probation 0."""
    founder = Actor(http, server.url)
    assert (await founder.found(Policy(cell_min=2, vouches=1, probation_seconds=0))).status == 201
    view = GroupView(founder, founder.cell or b"")
    people = [founder]
    for _ in range(3):
        newcomer = Actor(http, server.url)
        await bring_in(founder, newcomer, *people[1:])
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
        people.append(newcomer)
    _, b, c, d = people
    state = await view.refresh()
    motion = motions.make_split_motion(c.key, c.network, state, [c.id, d.id], c.now())
    signatures = [motions.sign_motion(d.key, d.network, motion, d.now())]
    split = roster.sign_event(
        c.key, c.network, state, "split", c.now(), motions.split_event_fields(motion, signatures)
    )
    _, new_group = motions.split_terms(motion)
    create = roster.make_group(
        c.key, c.network, c.now(), [c.bundle(), d.bundle()], origin=split.id,
        lines=state.lines, since=state.since, group=new_group,
        rules=roster.GroupRules.of(founder.genesis),
    )  # fmt: skip
    assert (await post(c, state.group, split, create=create.statement.to_wire())).status == 201
    return view, GroupView(c, new_group), people


def seat_of(state: RosterState, event: Statement, holder: Actor) -> dict:  # type: ignore[type-arg]
    members = list(state.members.values())
    signers = {s for s in _signers(event)} | {holder.id}
    return councils.seat_evidence(event, councils.link_proofs(members, signers), holder.bundle())


def _signers(event: Statement) -> set[bytes]:
    group = event.fields["group"]
    assert isinstance(group, bytes)
    return set(parse_link(pack(event), group, event.network or b"", RULES).signers)


RULES = roster.GroupRules(Policy(), frozenset())


async def found_council(view: GroupView, founder: Actor, b: Actor) -> tuple[bytes, Any]:
    event, state = await elected(view, founder, founder, b)
    seat = seat_of(state, event, founder)
    create, _ = councils.make_council(
        founder.key, founder.network, founder.now(), 1, founder.bundle(), state.group, seat,
        rules=roster.GroupRules.of(founder.genesis),
    )  # fmt: skip
    reply = await founder.call("POST", "/v1/councils", {"create": create.to_wire()})
    return create.fields["group"], reply  # type: ignore[return-value]


async def test_a_spokesperson_founds_a_council_and_links_another_cell(
    two_cells, http, server
) -> None:
    one, two, (founder, b, c, d) = two_cells
    council, reply = await found_council(one, founder, b)
    assert reply.status == 201, reply.body
    assert reply.body["group_id"] == b32e(council)
    council_view = GroupView(founder, council)
    assert set((await council_view.refresh()).members) == {founder.id}
    seats = await b.call("GET", f"/v1/groups/{b32e(one.group)}/seats")
    assert [s["council_id"] for s in seats.body["seats"]] == [b32e(council)]
    assert seats.body["seats"][0]["holder"] == b32e(founder.id)
    outsider = await c.call("GET", f"/v1/groups/{b32e(one.group)}/seats")
    assert outsider.status == 404

    # Cell two elects C; the council (its one seat) moves to link it; C accepts.
    c_elected, two_state = await elected(two, c, c, d)
    state = await council_view.refresh()
    motion = councils.make_link_motion(
        founder.key, founder.network, state, two.group, founder.now()
    )
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(council)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201, opened.body
    assert (await d.call("GET", f"/v1/councils/{b32e(council)}/invitation")).status == 404
    invitation = await c.call("GET", f"/v1/councils/{b32e(council)}/invitation")
    assert invitation.status == 200 and invitation.body["group_id"] == b32e(two.group)
    log = [from_wire(w, "roster", c.network) for w in invitation.body["roster"]]
    council_state = roster.verify_log(log, rules=roster.GroupRules.of(founder.genesis))
    acceptance = councils.make_acceptance(c.key, c.network, council, two.group, c.now())
    fields = councils.link_fields(motion, [], acceptance, seat_of(two_state, c_elected, c))
    link = roster.sign_event(c.key, c.network, council_state, "link", c.now(), fields)
    assert (await post(c, council, link)).status == 201
    assert set((await council_view.refresh()).members) == {founder.id, c.id}

    # Cell two recalls C and elects D: D posts the seat change; C is off the council.
    state = await two.refresh()
    recall = make_recall_motion(d.key, d.network, state, d.now())
    signatures = [motions.sign_motion(c.key, c.network, recall, c.now())]
    recalled = roster.sign_event(
        d.key, d.network, state, "recall", d.now(), motions.split_event_fields(recall, signatures)
    )
    assert (await post(d, two.group, recalled)).status == 201
    d_elected, after = await elected(two, d, d, c)
    old = list(two_state.members.values())
    values = [
        councils.seat_link_value(
            link_event,
            councils.link_proofs(list(after.members.values()), _signers(link_event) | extra),
            councils.link_proofs(old, _signers(link_event)),
            [],
        )
        for link_event, extra in ((recalled, set()), (d_elected, {d.id}))
    ]
    council_state = await council_view.refresh()
    seat = roster.sign_event(
        d.key, d.network, council_state, "seat", d.now(),
        councils.seat_fields(two.group, values, d.bundle()),
    )  # fmt: skip
    reply = await post(d, council, seat)
    assert reply.status == 201, reply.body
    assert set((await council_view.refresh()).members) == {founder.id, d.id}
    assert (await founder.call("GET", f"/v1/groups/{b32e(council)}/roster")).status == 200
    assert (await c.call("GET", f"/v1/groups/{b32e(council)}/profiles")).status == 404


async def test_a_council_is_founded_only_on_the_latest_election_in_the_log(two_cells, pool) -> None:
    one, _, (founder, b, _, _) = two_cells
    event, state = await elected(one, founder, founder, b, post_it=False)  # signed, never posted
    seat = seat_of(state, event, founder)
    create, _ = councils.make_council(
        founder.key, founder.network, founder.now(), 1, founder.bundle(), state.group, seat,
        rules=roster.GroupRules.of(founder.genesis),
    )  # fmt: skip
    before = await table_counts(pool)
    reply = await founder.call("POST", "/v1/councils", {"create": create.to_wire()})
    assert (reply.status, reply.code) == (403, "not_spokesperson")
    assert await table_counts(pool) == before
    # B is not the one elected: the rule book refuses their council.
    posted, state = await elected(one, founder, founder, b)
    seat = seat_of(state, posted, founder)
    create, _ = councils.make_council(
        founder.key, founder.network, founder.now(), 1, founder.bundle(), state.group, seat,
        rules=roster.GroupRules.of(founder.genesis),
    )  # fmt: skip
    before = await table_counts(pool)
    reply = await b.call("POST", "/v1/councils", {"create": create.to_wire()})
    assert (reply.status, reply.code) == (400, "invalid_statement")
    assert await table_counts(pool) == before


async def test_a_changed_motion_row_invites_nobody_and_blocks_no_invitation(
    two_cells, pool
) -> None:
    """A link motion whose stored bytes were changed in the database is skipped, as a
    malformed one is: it neither invites (the server never serves it as valid) nor makes
    the invitation answer an error."""
    one, two, (founder, b, c, d) = two_cells
    council, reply = await found_council(one, founder, b)
    assert reply.status == 201, reply.body
    await elected(two, c, c, d)
    state = await GroupView(founder, council).refresh()
    motion = councils.make_link_motion(
        founder.key, founder.network, state, two.group, founder.now()
    )
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(council)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201, opened.body
    path = f"/v1/councils/{b32e(council)}/invitation"
    assert (await c.call("GET", path)).status == 200
    sig = motion.statement.signature
    async with pool.acquire() as conn:
        changed = sig[:-1] + bytes([sig[-1] ^ 1])
        await conn.execute(
            "UPDATE statements SET sig = $1 WHERE statement_id = $2", changed, motion.statement.id
        )
        skipped = await c.call("GET", path)
        assert (skipped.status, skipped.code) == (404, "not_found")
        await conn.execute(
            "UPDATE statements SET sig = $1 WHERE statement_id = $2", sig, motion.statement.id
        )
    assert (await c.call("GET", path)).status == 200


async def test_a_council_is_as_foreign_as_no_group_to_everyone_not_seated_in_it(
    two_cells, http, server, pool
) -> None:
    """Cell one's other member, a sibling cell's members: every endpoint and the live feed
    answer about the council exactly as about a group that does not exist."""
    from tests.server.test_group_privacy import subscribe, well_formed_requests, without_group

    one, _, (founder, b, c, d) = two_cells
    council, reply = await found_council(one, founder, b)
    assert reply.status == 201, reply.body
    council_view = GroupView(founder, council)
    await council_view.refresh()
    assert (await council_view.commit_epoch()).status == 201
    assert (await council_view.send("for the council")).status == 201
    for asker in (b, c, d):
        before = await table_counts(pool)
        nowhere = os.urandom(16)
        def requests(group: bytes, asker: Actor = asker) -> list[tuple[str, str, Any]]:
            return [
                *well_formed_requests(asker, group),
                ("GET", f"/v1/groups/{b32e(group)}/seats", None),
                ("GET", f"/v1/councils/{b32e(group)}/invitation", None),
            ]

        for (method, path, body), (_, other, other_body) in zip(
            requests(council), requests(nowhere), strict=True
        ):
            real = await asker.call(method, path, body)
            fake = await asker.call(method, other, other_body)
            assert (real.status, real.code) == (404, "not_found"), (method, path, real.body)
            assert real.body == fake.body, (method, path)
        real_feed = await subscribe(http, server.url, asker, council)
        fake_feed = await subscribe(http, server.url, asker, nowhere)
        assert without_group(real_feed, council) == without_group(fake_feed, nowhere)
        listed = await asker.call("GET", "/v1/groups")
        assert b32e(council) not in str(listed.body)
        assert await table_counts(pool) == before
