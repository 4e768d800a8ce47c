"""Roster logs, epochs, the rekey invariant and encrypted messages over the real API."""

from __future__ import annotations

import os

import pytest

from crypto.encoding import b32e, b64e
from crypto.epochs import MessageKey
from crypto.errors import DecryptionFailed
from crypto.messages import Header, seal_message
from crypto.network import DAY, Policy
from tests.server.actors import Actor, bring_in, table_counts
from tests.server.group_actors import GroupView


@pytest.fixture
async def founder(server, http) -> Actor:
    actor = Actor(http, server.url)
    policy = Policy(cell_min=2, vouches=2, probation_seconds=30 * DAY)
    assert (await actor.found(policy)).status == 201
    return actor


async def test_founding_starts_the_cells_roster_log(founder: Actor) -> None:
    view = GroupView(founder, founder.cell or b"")
    state = await view.refresh()
    assert list(state.members) == [founder.id]
    assert state.seq == 0 and state.epoch == 0 and state.needs_rekey


async def test_no_message_before_the_first_epoch(founder: Actor) -> None:
    view = GroupView(founder, founder.cell or b"")
    await view.refresh()
    assert (await view.commit_epoch()).status == 201
    ok = await view.send("hello")
    assert ok.status == 201 and ok.body["cursor"] >= 1


async def test_added_member_reads_only_after_the_new_epoch(founder: Actor, server, http) -> None:
    view = GroupView(founder, founder.cell or b"")
    await view.commit_epoch()
    assert (await view.send("before you came")).status == 201
    newcomer = Actor(http, server.url)
    await bring_in(founder, newcomer)
    admission = await founder.admission_of(newcomer)
    assert (await view.add(newcomer, admission)).status == 201
    refused = await view.send("while the roster is stale")
    assert (refused.status, refused.code) == (409, "rekey_required")
    assert (await view.commit_epoch()).status == 201
    assert (await view.send("welcome")).status == 201
    theirs = GroupView(newcomer, founder.cell or b"")
    await theirs.open_epoch()
    senders = {founder.id: founder.key.public_key(), newcomer.id: newcomer.key.public_key()}
    # Epoch 1's secret was never sealed to the newcomer: what came before stays closed.
    assert await theirs.read(senders) == ["<unreadable>", "welcome"]
    early = await newcomer.call("GET", f"/v1/groups/{b32e(founder.cell or b'')}/epochs/1/secret")
    assert early.status == 404


async def test_only_vetted_members_join_the_roster(founder: Actor, server, http, pool) -> None:
    other = Actor(http, server.url)
    await bring_in(founder, other)
    pending = Actor(http, server.url)
    code, _ = await founder.invite()
    await pending.join(code, founder)
    assert (await founder.admit(pending, code)).body["status"] == "pending"  # other must vouch
    view = GroupView(founder, founder.cell or b"")
    await view.refresh()
    before = await table_counts(pool)
    reply = await view.add(pending, await founder.admission_of(pending))
    assert (reply.status, reply.code) == (403, "not_admitted")
    assert await table_counts(pool) == before


async def test_an_event_that_does_not_extend_the_head_is_refused(founder: Actor) -> None:
    view = GroupView(founder, founder.cell or b"")
    stale = await view.refresh()
    assert (await view.commit_epoch()).status == 201
    view.state = stale  # a second client that has not seen the first epoch
    reply = await view.commit_epoch()
    assert (reply.status, reply.code) == (409, "stale_head")


async def test_epoch_without_a_box_for_every_member_is_refused(
    founder: Actor, server, http, pool
) -> None:
    newcomer = Actor(http, server.url)
    await bring_in(founder, newcomer)
    view = GroupView(founder, founder.cell or b"")
    await view.add(newcomer, await founder.admission_of(newcomer))
    before = await table_counts(pool)
    reply = await view.commit_epoch(skip=newcomer.id)
    assert (reply.status, reply.code) == (400, "bad_request")
    assert await table_counts(pool) == before


async def test_other_groups_look_like_nothing(founder: Actor, server, http) -> None:
    stranger = Actor(http, server.url)
    await bring_in(founder, stranger)  # admitted, but not (yet) on the roster
    theirs = await stranger.call("GET", f"/v1/groups/{b32e(founder.cell or b'')}/roster")
    nothing = await stranger.call("GET", f"/v1/groups/{b32e(os.urandom(16))}/roster")
    assert (theirs.status, theirs.body) == (nothing.status, nothing.body)
    assert theirs.status == 404


async def test_an_epoch_in_the_path_is_a_plain_decimal_number(founder: Actor) -> None:
    view = GroupView(founder, founder.cell or b"")
    await view.refresh()
    assert (await view.commit_epoch()).status == 201
    path = f"/v1/groups/{b32e(founder.cell or b'')}/epochs/%s/secret"
    assert (await founder.call("GET", path % "1")).status == 200
    # int() would read "+1", "1_0", " 1" and Arabic-Indic digits, and pass numbers
    # past PostgreSQL's bigint to the query.
    for epoch in ("x", "-1", "+1", "1_0", "%20" + "1", "%D9%A1", "9223372036854775808", "9" * 30):
        reply = await founder.call("GET", path % epoch)
        assert (reply.status, reply.code) == (400, "bad_request"), epoch


async def test_bad_messages_are_refused_and_write_nothing(founder: Actor, pool) -> None:
    view = GroupView(founder, founder.cell or b"")
    await view.commit_epoch()
    good = view.seal("fine")
    path = f"/v1/groups/{b32e(founder.cell or b'')}/messages"
    before = await table_counts(pool)
    cases = [
        (
            {
                "header": "!!",
                "ciphertext": b64e(good.ciphertext),
                "signature": b64e(good.signature),
            },
            "bad_request",
        ),
        (
            {
                "header": b64e(good.header),
                "ciphertext": b64e(good.ciphertext[:-1]),
                "signature": b64e(good.signature),
            },
            "invalid_statement",
        ),
        (
            {
                "header": b64e(good.header),
                "ciphertext": b64e(good.ciphertext),
                "signature": b64e(bytes(64)),
            },
            "invalid_signature",
        ),
        (
            {
                "header": b64e(b"\x07\x00\x00\x00\x00"),
                "ciphertext": b64e(good.ciphertext),
                "signature": b64e(good.signature),
            },
            "invalid_statement",
        ),
    ]
    for body, code in cases:
        reply = await founder.call("POST", path, body)
        assert (reply.status, reply.code) == (400, code), body
    assert await table_counts(pool) == before
    first = await view.send_sealed(good)
    assert first.status == 201
    again = await view.send_sealed(good)  # the same bytes: a resend whose answer was lost
    assert (again.status, again.body) == (201, first.body)
    key = MessageKey(os.urandom(32), os.urandom(12))
    other = seal_message(founder.key, Header.decode(good.header), key, {"text": "other"})
    replay = await view.send_sealed(other)
    assert (replay.status, replay.code) == (409, "replayed_counter")
    stale = view.seal("old epoch")
    await view.commit_epoch()
    reply = await view.send_sealed(stale)
    assert (reply.status, reply.code) == (409, "stale_epoch")


async def test_a_box_sealed_by_the_server_fails_the_signed_commitment(founder: Actor) -> None:
    from crypto import epochs

    view = GroupView(founder, founder.cell or b"")
    await view.commit_epoch()
    state = await view.refresh()
    assert state.commitment is not None
    me = state.members[founder.id]
    forged = epochs.seal_secret(
        os.urandom(32),
        me.kem_suite,
        me.kem_public,
        state.group,
        state.epoch,
        state.roster_hash,
        founder.id,
    )
    with pytest.raises(DecryptionFailed):
        epochs.open_secret(
            founder.kem,
            forged,
            state.group,
            state.epoch,
            state.roster_hash,
            founder.id,
            state.commitment,
        )


async def test_a_split_moves_members_who_all_signed(founder: Actor, server, http, pool) -> None:
    from crypto import motions, roster

    b, c, d = (Actor(http, server.url) for _ in range(3))
    await bring_in(founder, b)
    view = GroupView(founder, founder.cell or b"")
    await view.add(b, await founder.admission_of(b))
    await bring_in(founder, c, b)
    await view.add(c, await founder.admission_of(c))
    await bring_in(founder, d, b, c)
    await view.add(d, await founder.admission_of(d))
    state = await view.refresh()
    # A split that would leave the founder alone is refused, and writes nothing.
    lonely = motions.make_split_motion(b.key, founder.network, state, [b.id, c.id, d.id], b.now())
    fields = motions.split_event_fields(
        lonely, [motions.sign_motion(k.key, founder.network, lonely, b.now()) for k in (c, d)]
    )
    event = roster.sign_event(b.key, founder.network, state, "split", b.now(), fields)
    before = await table_counts(pool)
    reply = await b.call(
        "POST", f"/v1/groups/{b32e(state.group)}/roster", {"event": event.to_wire()}
    )
    assert (reply.status, reply.code) == (409, "below_minimum")
    assert await table_counts(pool) == before
    motion = motions.make_split_motion(
        founder.key, founder.network, state, [b.id, c.id], founder.now()
    )
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(state.group)}/motions", {"motion": motion.statement.to_wire()}
    )
    assert opened.status == 201
    listed = await b.call("GET", "/v1/motions")
    assert [m["motion_id"] for m in listed.body["motions"]] == [opened.body["motion_id"]]
    signatures = []
    for signer in (b, c):
        signature = motions.sign_motion(signer.key, founder.network, motion, signer.now())
        reply = await signer.call(
            "POST",
            f"/v1/motions/{opened.body['motion_id']}/signatures",
            {"signature": signature.to_wire()},
        )
        assert reply.status == 201, reply.body
        signatures.append(signature)
    _, new_group = motions.split_terms(motion)
    # Without C's signature the split is refused...
    early = roster.sign_event(
        b.key,
        founder.network,
        state,
        "split",
        b.now(),
        motions.split_event_fields(motion, signatures[:1]),
    )
    create_early = roster.make_group(
        b.key,
        founder.network,
        b.now(),
        [b.bundle(), c.bundle()],
        origin=early.id,
        lines=state.lines,
        group=new_group,
        rules=roster.GroupRules.of(founder.genesis),
    )
    reply = await b.call(
        "POST",
        f"/v1/groups/{b32e(state.group)}/roster",
        {"event": early.to_wire(), "create": create_early.statement.to_wire()},
    )
    assert (reply.status, reply.code) == (409, "quorum_not_reached")
    # ...and with both it takes effect, founding the new cell.
    split = roster.sign_event(
        b.key,
        founder.network,
        state,
        "split",
        b.now(),
        motions.split_event_fields(motion, signatures),
    )
    create = roster.make_group(
        b.key,
        founder.network,
        b.now(),
        [b.bundle(), c.bundle()],
        origin=split.id,
        lines=state.lines,
        group=new_group,
        rules=roster.GroupRules.of(founder.genesis),
    )
    reply = await b.call(
        "POST",
        f"/v1/groups/{b32e(state.group)}/roster",
        {"event": split.to_wire(), "create": create.statement.to_wire()},
    )
    assert reply.status == 201, reply.body
    assert set((await view.refresh()).members) == {founder.id, d.id}
    new_view = GroupView(c, new_group)
    assert set((await new_view.refresh()).members) == {b.id, c.id}
    assert (await b.call("GET", "/v1/motions")).body["motions"] == []


async def test_an_epoch_is_retired_by_the_policys_message_count(server, http) -> None:
    founder = Actor(http, server.url)
    await founder.found(Policy(epoch_messages=100))
    view = GroupView(founder, founder.cell or b"")
    await view.commit_epoch()
    for n in range(100):
        assert (await view.send(f"message {n}")).status == 201
    refused = await view.send("one too many")
    assert (refused.status, refused.code) == (409, "rekey_required")
    assert (await view.commit_epoch()).status == 201
    assert (await view.send("in the next epoch")).status == 201


async def test_an_epoch_is_retired_by_the_policys_age(server_factory, http) -> None:
    from datetime import UTC, datetime

    from server.clock import FixedClock

    clock = FixedClock(datetime.now(UTC))
    server = await server_factory(clock=clock)
    founder = Actor(http, server.url, clock=clock)
    await founder.found(Policy(epoch_seconds=3600))
    view = GroupView(founder, founder.cell or b"")
    await view.commit_epoch()
    assert (await view.send("fresh")).status == 201
    clock.advance(3600)
    refused = await view.send("stale")
    assert (refused.status, refused.code) == (409, "rekey_required")


async def test_motion_signatures_from_outsiders_and_bad_ones_are_refused(
    founder: Actor, server, http, pool
) -> None:
    from crypto import motions

    b, c, d = (Actor(http, server.url) for _ in range(3))
    view = GroupView(founder, founder.cell or b"")
    for newcomer, vouchers in ((b, ()), (c, (b,)), (d, (b, c))):
        await bring_in(founder, newcomer, *vouchers)
        await view.add(newcomer, await founder.admission_of(newcomer))
    state = await view.refresh()
    motion = motions.make_split_motion(
        founder.key, founder.network, state, [b.id, c.id], founder.now()
    )
    opened = await founder.call(
        "POST", f"/v1/groups/{b32e(state.group)}/motions", {"motion": motion.statement.to_wire()}
    )
    motion_id = opened.body["motion_id"]
    outsider = Actor(http, server.url)
    await bring_in(founder, outsider, b, c, d)  # admitted, but not on this roster
    theirs = motions.sign_motion(outsider.key, founder.network, motion, outsider.now())
    before = await table_counts(pool)
    to_this = await outsider.call(
        "POST", f"/v1/motions/{motion_id}/signatures", {"signature": theirs.to_wire()}
    )
    to_none = await outsider.call(
        "POST", f"/v1/motions/{b32e(os.urandom(32))}/signatures", {"signature": theirs.to_wire()}
    )
    assert (to_this.status, to_this.body) == (to_none.status, to_none.body) == (404, to_none.body)
    assert (await outsider.call("GET", "/v1/motions")).body["motions"] == []
    forged = await b.call(
        "POST", f"/v1/motions/{motion_id}/signatures", {"signature": theirs.to_wire()}
    )
    assert (forged.status, forged.code) == (400, "invalid_statement")  # not b's own signature
    garbage = await b.call(
        "POST", f"/v1/motions/{motion_id}/signatures", {"signature": {"body": "AA", "sig": "AA"}}
    )
    assert (garbage.status, garbage.code) == (400, "invalid_statement")
    assert await table_counts(pool) == before
    mine = motions.sign_motion(b.key, founder.network, motion, b.now())
    first = await b.call(
        "POST", f"/v1/motions/{motion_id}/signatures", {"signature": mine.to_wire()}
    )
    again = await b.call(
        "POST", f"/v1/motions/{motion_id}/signatures", {"signature": mine.to_wire()}
    )
    assert first.status == 201
    assert (again.status, again.code) == (409, "conflict")
