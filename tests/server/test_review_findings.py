"""Hostile review of councils over the real API (an HONEST server, informant members).

Each test here failed against the code the review read and passes since its fix.
"""

from __future__ import annotations

from crypto import councils, motions, roster
from crypto.elections import make_recall_motion
from crypto.encoding import b32e
from crypto.motions import make_motion
from tests.server.group_actors import GroupView
from tests.server.test_councils import (  # noqa: F401 - two_cells is a fixture
    elected,
    found_council,
    post,
    seat_of,
    two_cells,
)


async def test_a_recalled_spokesperson_cant_take_their_groups_seat_on_an_old_election(
    two_cells,  # noqa: F811
) -> None:
    """Cell two elects C; the council moves to link cell two and C sees the invitation.
    Cell two then recalls C and elects D. C, still a member of cell two, accepts the link
    anyway with the election of C: every carried event is in cell two's log, so the
    server seats C, whom cell two recalled, and never asks for its latest election."""
    one, two, (founder, b, c, d) = two_cells
    council, reply = await found_council(one, founder, b)
    assert reply.status == 201, reply.body
    council_view = GroupView(founder, council)
    c_elected, at_election = await elected(two, c, c, d)
    state = await council_view.refresh()
    motion = councils.make_link_motion(
        founder.key, founder.network, state, two.group, founder.now()
    )
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(council)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201, opened.body
    assert (await c.call("GET", f"/v1/councils/{b32e(council)}/invitation")).status == 200

    now_two = await two.refresh()
    recall = make_recall_motion(d.key, d.network, now_two, d.now())
    recalled = roster.sign_event(
        d.key, d.network, now_two, "recall", d.now(),
        motions.split_event_fields(recall, [motions.sign_motion(c.key, c.network, recall, c.now())]),
    )  # fmt: skip
    assert (await post(d, two.group, recalled)).status == 201
    await elected(two, d, d, c)
    assert (await two.refresh()).spokesperson == d.id

    acceptance = councils.make_acceptance(c.key, c.network, council, two.group, c.now())
    fields = councils.link_fields(motion, [], acceptance, seat_of(at_election, c_elected, c))
    council_state = await council_view.refresh()
    link = roster.sign_event(c.key, c.network, council_state, "link", c.now(), fields)
    reply = await post(c, council, link)
    seated = set((await council_view.refresh()).members)
    assert reply.status != 201 and c.id not in seated, (reply.status, "C sits for cell two")


async def test_a_link_motion_naming_a_list_is_refused_not_a_500(two_cells) -> None:  # noqa: F811
    """check_opening asks `group in state.seats` before checking the terms: an unhashable
    `group` raises TypeError inside the request."""
    one, _, (founder, b, _, _) = two_cells
    council, reply = await found_council(one, founder, b)
    assert reply.status == 201, reply.body
    state = await GroupView(founder, council).refresh()
    bad = make_motion(founder.key, founder.network, state, "link", {"group": [b"x"]}, founder.now())
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(council)}/motions", {"motion": bad.statement.to_wire()}
    )
    assert opened.status == 400, (opened.status, opened.body)


async def test_a_malformed_link_motion_cant_block_every_invitation(two_cells) -> None:  # noqa: F811
    """A council member (an informant) opens a link motion whose `group` is 3 bytes: it is
    accepted (check_opening does not parse link terms), never closes, and, being the oldest,
    makes GET /invitation answer 400 to every spokesperson the council later invites."""
    one, two, (founder, b, c, d) = two_cells
    council, reply = await found_council(one, founder, b)
    assert reply.status == 201, reply.body
    view = GroupView(founder, council)
    state = await view.refresh()
    bad = make_motion(founder.key, founder.network, state, "link", {"group": b"abc"}, founder.now())
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(council)}/motions", {"motion": bad.statement.to_wire()}
    )
    await elected(two, c, c, d)
    good = councils.make_link_motion(founder.key, founder.network, state, two.group, founder.now())
    assert (
        await founder.call(
            "POST", f"/v1/groups/{b32e(council)}/motions", {"motion": good.statement.to_wire()}
        )
    ).status == 201
    invitation = await c.call("GET", f"/v1/councils/{b32e(council)}/invitation")
    assert opened.status == 400 or invitation.status == 200, (opened.status, invitation.body)
