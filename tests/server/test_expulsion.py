"""Expulsion and self-revocation over the real API: refused as a whole, or carried out at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from crypto.chains import NO_PREVIOUS, make_revocation
from crypto.elections import make_elect_motion
from crypto.encoding import Value, b32e
from crypto.exclusion import (
    expulsion_grounds,
    make_expel_motion,
    make_freeze_motion,
    make_self_revocation,
)
from crypto.keys import IdentityKey
from crypto.motions import Motion, sign_motion, split_event_fields
from crypto.network import Policy
from crypto.review import make_clear_motion
from crypto.roster import RosterState, sign_event
from crypto.statements import pack, verify_statement
from server.clock import FixedClock
from tests.server.actors import Actor, bring_in, table_counts
from tests.server.group_actors import GroupView
from tests.server.test_elections import cell as cell  # noqa: F401 - the fixture
from tests.server.test_elections import open_motion
from tests.server.test_revocation_chain import head


def removal(
    state: RosterState,
    motion: Motion,
    signers: list[Actor],
    author: Actor,
    *,
    seq: int = 0,
    prev: bytes = NO_PREVIOUS,
    key: IdentityKey | None = None,
) -> dict[str, Value]:
    """The `remove` fields carrying out `motion` with `signers`' signatures (and the opener's)."""
    signatures = [sign_motion(s.key, s.network, motion, s.now()) for s in signers]
    grounds = expulsion_grounds(state, motion, signatures)
    subject = motion.terms["member"]
    assert isinstance(subject, bytes)
    revocation = make_revocation(
        key or author.key,
        author.network,
        subject,
        author.now(),
        seq=seq,
        prev=prev,
        grounds=grounds,
    )
    return {"member": subject, "reason": "expelled", "revocation": pack(revocation.statement)}


async def test_an_expulsion_takes_effect_only_with_its_quorum_and_once(
    cell: Any, pool: Any
) -> None:
    view, (founder, b, c, d) = cell
    state = await view.refresh()
    motion = make_expel_motion(
        founder.key, founder.network, state, d.id, "informant", founder.now()
    )
    assert (await open_motion(founder, motion)).status == 201
    before = (await table_counts(pool), await head(pool))

    async def refused(fields: dict[str, Value], status: int, code: str) -> None:
        view.state = state
        reply = await view.post("remove", fields)
        assert (reply.status, reply.code) == (status, code), reply.body
        assert (await table_counts(pool), await head(pool)) == before

    # The opener alone: 1 of the 2 a majority of the three others needs.
    await refused(removal(state, motion, [], founder), 409, "quorum_not_reached")
    # The subject's signature never counts.
    await refused(removal(state, motion, [d], founder), 403, "not_allowed")
    # A stale head of the revocation chain.
    await refused(removal(state, motion, [b], founder, seq=1), 409, "stale_head")
    # Published in the name of someone who did not sign it.
    await refused(removal(state, motion, [b], founder, key=c.key), 403, "not_allowed")

    # D's socket-free session still works until the expulsion.
    assert (await d.call("GET", "/v1/motions")).status == 200
    view.state = state
    carried = removal(state, motion, [b], founder)
    done = await view.post("remove", carried)
    assert done.status == 201, done.body
    assert (await head(pool))[0] == 1
    assert (await d.call("GET", "/v1/motions")).status == 401
    assert view.state is not None and d.id not in view.state.members
    # Once: the same motion again, on the new roster.
    again = await view.post("remove", carried)
    assert (again.status, again.code) == (403, "not_in_group"), again.body


async def test_a_motion_of_another_network_or_a_stranger_is_refused(
    cell: Any, pool: Any, server: Any, http: Any
) -> None:
    view, (founder, b, c, d) = cell
    state = await view.refresh()
    stranger = Actor(http, server.url)  # a key that was never on this roster
    motion = make_expel_motion(
        founder.key, founder.network, state, d.id, "informant", founder.now()
    )
    assert (await open_motion(founder, motion)).status == 201
    before = (await table_counts(pool), await head(pool))
    view.state = state
    with pytest.raises(Exception):  # noqa: B017 - no proof can show a stranger on the roster
        removal(state, motion, [stranger], founder)
    elsewhere = make_expel_motion(founder.key, bytes(32), state, d.id, "informant", founder.now())
    fields = removal(state, elsewhere, [b], founder)
    reply = await view.post("remove", fields)
    assert reply.status == 400, reply.body
    assert (await table_counts(pool), await head(pool)) == before


async def test_a_self_revocation_is_published_by_its_holder_only(cell: Any, pool: Any) -> None:
    view, (founder, b, c, d) = cell
    held = make_self_revocation(d.key, d.network, b.id, d.now())
    grounds: dict[str, Value] = {"grounds": "self", "self": pack(held)}
    before = (await table_counts(pool), await head(pool))
    by_other = make_revocation(c.key, c.network, d.id, c.now(), grounds=grounds)
    reply = await c.call("POST", "/v1/revocations", {"revocation": by_other.statement.to_wire()})
    assert (reply.status, reply.code) == (403, "not_holder"), reply.body
    assert (await table_counts(pool), await head(pool)) == before
    # A removal carrying a revocation the chain does not hold is refused too.
    by_holder = make_revocation(b.key, b.network, d.id, b.now(), grounds=grounds)
    await view.refresh()
    early = await view.post(
        "remove", {"member": d.id, "reason": "revoked", "revocation": pack(by_holder.statement)}
    )
    assert (early.status, early.code) == (409, "not_revoked"), early.body
    published = await b.call(
        "POST", "/v1/revocations", {"revocation": by_holder.statement.to_wire()}
    )
    assert published.status == 201, published.body
    assert published.body["member_id"] == b32e(d.id)
    assert (await d.call("GET", "/v1/motions")).status == 401
    await view.refresh()
    removed = await view.post(
        "remove", {"member": d.id, "reason": "revoked", "revocation": pack(by_holder.statement)}
    )
    assert removed.status == 201, removed.body


# --- Emergency freeze -------------------------------------------------------------------


async def freeze_cell(server_factory: Any, http: Any) -> tuple[Any, GroupView, list[Actor]]:
    """A cell of four on a server whose clock the test moves."""
    clock = FixedClock(datetime.now(UTC))
    server = await server_factory(clock=clock)
    founder = Actor(http, server.url, clock=clock)
    assert (await founder.found(Policy(cell_min=2, vouches=1))).status == 201
    view = GroupView(founder, founder.cell or b"")
    members = [founder]
    for _ in range(3):
        newcomer = Actor(http, server.url, clock=clock)
        await bring_in(founder, newcomer, *members[1:])
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
        members.append(newcomer)
    return clock, view, members


def freeze_fields(
    state: RosterState, kind: str, subject: Actor, signers: list[Actor]
) -> tuple[Motion, dict[str, Value]]:
    opener, *others = signers
    motion = make_freeze_motion(opener.key, opener.network, state, subject.id, kind, opener.now())
    signatures = [sign_motion(s.key, s.network, motion, s.now()) for s in others]
    return motion, {"member": subject.id, **split_event_fields(motion, signatures)}


async def test_two_cellmates_freeze_a_member_at_once_until_the_window_lapses(
    server_factory: Any, http: Any, pool: Any
) -> None:
    clock, view, (founder, b, c, d) = await freeze_cell(server_factory, http)
    state = await view.refresh()
    motion, fields = freeze_fields(state, "freeze", d, [founder, b])
    assert (await open_motion(founder, motion)).status == 201
    # One signature is not enough; nothing is written.
    _, short = freeze_fields(state, "freeze", d, [founder])
    before = await table_counts(pool)
    reply = await view.post("freeze", short)
    assert (reply.status, reply.code) == (409, "quorum_not_reached"), reply.body
    assert await table_counts(pool) == before

    assert (await view.post("freeze", fields)).status == 201
    assert (await d.call("GET", "/v1/motions")).status == 401  # sessions ended
    login = await d.login()
    assert (login.status, login.code) == (403, "frozen"), login.body
    # The next epoch is sealed to the three others only.
    assert (await view.commit_epoch()).status == 201
    async with pool.acquire() as conn:
        sealed_to = await conn.fetch(
            "SELECT member_id FROM epoch_secrets WHERE group_id = $1 AND epoch = $2",
            view.group,
            view.state.epoch if view.state else 0,
        )
    assert {bytes(r["member_id"]) for r in sealed_to} == {founder.id, b.id, c.id}

    # A frozen member freezes no one (nor could they post it: no session).
    state = await view.refresh()
    _, by_frozen = freeze_fields(state, "freeze", c, [d, b])
    reply = await view.post("freeze", by_frozen)
    assert (reply.status, reply.code) == (403, "not_allowed"), reply.body

    # Before the window ends, no lapse; after it, the subject logs in and lifts it.
    lapse = {"member": d.id}
    early = await view.post("unfreeze", lapse)
    assert (early.status, early.code) == (409, "not_lapsed"), early.body
    clock.advance(Policy().freeze_seconds)
    assert (await d.login()).status == 200
    own = GroupView(d, view.group)
    assert (await own.post("unfreeze", lapse)).status == 201
    assert own.state is not None and not own.state.frozen and own.state.needs_rekey


async def test_a_freeze_is_lifted_by_as_many_signatures_as_made_it(
    server_factory: Any, http: Any
) -> None:
    _, view, (founder, b, c, d) = await freeze_cell(server_factory, http)
    state = await view.refresh()
    _, fields = freeze_fields(state, "freeze", d, [founder, b])
    assert (await view.post("freeze", fields)).status == 201
    state = await view.refresh()
    _, lift = freeze_fields(state, "unfreeze", d, [b, c])
    assert (await view.post("unfreeze", lift)).status == 201
    assert (await d.login()).status == 200


# --- Subtree review ----------------------------------------------------------------------


async def test_an_invitee_not_vouched_for_again_in_time_is_suspended_until_cleared(
    server_factory: Any, http: Any, pool: Any
) -> None:
    """The founder admitted B; B admitted M; the cell expels B: M is under review, and
    suspended once the window passes (an injected clock), until a fresh vouch clears it."""
    clock = FixedClock(datetime.now(UTC))
    server = await server_factory(clock=clock)
    founder = Actor(http, server.url, clock=clock)
    policy = Policy(cell_min=2, vouches=1, probation_seconds=0, vetting_seconds=0)
    assert (await founder.found(policy)).status == 201
    view = GroupView(founder, founder.cell or b"")
    b, c = Actor(http, server.url, clock=clock), Actor(http, server.url, clock=clock)
    for newcomer, vouchers in ((b, ()), (c, (b,))):
        await bring_in(founder, newcomer, *vouchers)
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
    m = Actor(http, server.url, clock=clock)
    await bring_in(b, m, founder, c)
    assert (await view.add(m, await b.admission_of(m))).status == 201

    state = await view.refresh()
    motion = make_expel_motion(
        founder.key, founder.network, state, b.id, "informant", founder.now()
    )
    assert (await open_motion(founder, motion)).status == 201
    assert (await view.post("remove", removal(state, motion, [c], founder))).status == 201
    async with pool.acquire() as conn:
        body, sig = await conn.fetchrow(
            "SELECT s.body, s.sig FROM revocations r JOIN statements s USING (statement_id)"
        )
    revoked = verify_statement(bytes(body), bytes(sig), "revocation", founder.network)
    await view.refresh()
    assert (await view.post("review", {"revocation": pack(revoked)})).status == 201
    assert view.state is not None and m.id in view.state.review

    early = await view.post("suspend", {"member": m.id})
    assert (early.status, early.code) == (409, "not_lapsed"), early.body
    clock.advance(policy.review_seconds)
    assert (await view.post("suspend", {"member": m.id})).status == 201
    assert (await m.call("GET", "/v1/motions")).status == 401
    login = await m.login()
    assert (login.status, login.code) == (403, "suspended"), login.body

    # C, outside B's subtree, vouches afresh: M is back.
    state = await view.refresh()
    clear = make_clear_motion(c.key, c.network, state, m.id, c.now())
    assert (await open_motion(c, clear)).status == 201
    assert (await view.post("clear", split_event_fields(clear, []))).status == 201
    assert view.state is not None and m.id not in view.state.suspended
    assert (await m.login()).status == 200


# --- Races --------------------------------------------------------------------------------


async def test_two_expulsions_and_an_election_at_once_on_two_instances_leave_one_log(
    server_factory: Any, http: Any, pool: Any
) -> None:
    """Three carried-out motions of one cell, posted at the same moment, half to each of
    two server instances: one takes effect, the others are refused whole, and the log and
    the revocation chain stay one."""
    first, second = await server_factory(), await server_factory()
    founder = Actor(http, first.url)
    assert (await founder.found(Policy(cell_min=2, vouches=1, probation_seconds=0))).status == 201
    view = GroupView(founder, founder.cell or b"")
    members = [founder]
    for _ in range(4):
        newcomer = Actor(http, first.url)
        await bring_in(founder, newcomer, *members[1:])
        assert (await view.add(newcomer, await founder.admission_of(newcomer))).status == 201
        members.append(newcomer)
    founder_, b, c, d, e = members
    state = await view.refresh()
    expel_d = make_expel_motion(b.key, b.network, state, d.id, "informant", b.now())
    expel_e = make_expel_motion(c.key, c.network, state, e.id, "informant", c.now())
    elect = make_elect_motion(founder.key, founder.network, state, b.id, founder.now())
    for opener, motion in ((b, expel_d), (c, expel_e), (founder, elect)):
        assert (await open_motion(opener, motion)).status == 201
    # Each carried out by its opener, against the same roster, with a quorum.
    events = [
        (b, "remove", removal(state, expel_d, [c, founder], b)),
        (c, "remove", removal(state, expel_e, [b, founder], c)),
        (
            founder,
            "elect",
            split_event_fields(
                elect, [sign_motion(k.key, k.network, elect, k.now()) for k in (b, c)]
            ),
        ),
    ]

    async def post(n: int, actor: Actor, op: str, fields: dict[str, Value]) -> Any:
        event = sign_event(actor.key, actor.network, state, op, actor.now(), fields)
        url = (first if n % 2 == 0 else second).url
        async with http.post(
            f"{url}/v1/groups/{b32e(view.group)}/roster",
            json={"event": event.to_wire()},
            headers={"Authorization": f"Bearer {actor.token}"},
        ) as reply:
            return reply.status, (await reply.json()).get("error", {}).get("code")

    answers = await asyncio.gather(*(post(n, *item) for n, item in enumerate(events)))
    assert sorted(status for status, _ in answers)[0] == 201
    assert [status for status, _ in answers].count(201) == 1, answers
    assert all(code == "stale_head" for status, code in answers if status != 201), answers
    # One log that verifies, and a chain of at most the one expulsion that took effect.
    after = await view.refresh()
    expelled = {d.id, e.id} - set(after.members)
    assert len(expelled) <= 1
    assert (await head(pool))[0] == len(expelled)
    assert (after.spokesperson == b.id) == (not expelled)
