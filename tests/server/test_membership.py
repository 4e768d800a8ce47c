"""Founding, login, invites, admission and vetting over the real HTTP API and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from crypto.encoding import b32e
from crypto.invites import InviteCode
from crypto.keys import IdentityKey
from crypto.network import DAY, Policy
from crypto.roster import GroupRules, make_group
from server.clock import FixedClock
from server.settings import RateLimit
from tests.server.actors import Actor, bring_in, table_counts

NO_PROBATION = Policy(probation_seconds=0, vouches=2)


@pytest.fixture
async def founder(server, http) -> Actor:
    actor = Actor(http, server.url)
    reply = await actor.found(Policy(vouches=2, probation_seconds=30 * DAY))
    assert reply.status == 201, reply.body
    return actor


async def test_founding_creates_the_network_and_its_first_cell(founder: Actor) -> None:
    me = await founder.call("GET", "/v1/me")
    assert me.status == 200
    assert me.body["status"] == "active" and me.body["steward"] is True
    assert me.body["cell_id"] == b32e(founder.cell or b"")
    network = await founder.call("GET", "/v1/network")
    assert network.body["network_id"] == b32e(founder.network)


async def test_a_second_network_is_refused(founder: Actor, server, http) -> None:
    other = Actor(http, server.url)
    reply = await other.found()
    assert (reply.status, reply.code) == (409, "network_exists")


async def test_genesis_with_a_flipped_bit_is_refused_and_writes_nothing(server, http, pool) -> None:
    actor = Actor(http, server.url)
    before = await table_counts(pool)
    from crypto.network import make_genesis

    actor.genesis = make_genesis(actor.key, Policy(), actor.now())
    wire = actor.genesis.statement.to_wire()
    sig = bytearray(actor.genesis.statement.signature)
    sig[5] ^= 1
    from crypto.encoding import b64e

    wire["sig"] = b64e(bytes(sig))
    cell = make_group(
        actor.key, actor.network, actor.now(), [actor.bundle()], rules=GroupRules.of(actor.genesis)
    )
    reply = await actor.call(
        "POST",
        "/v1/networks",
        {
            "genesis": wire,
            "cell": cell.statement.to_wire(),
            "key_bundle": actor.bundle().statement.to_wire(),
        },
    )
    assert (reply.status, reply.code) == (400, "invalid_signature")
    assert await table_counts(pool) == before


# --- Login ---------------------------------------------------------------------


async def test_forged_login_signature_is_refused(founder: Actor, server, http) -> None:
    impostor = Actor(http, server.url, key=IdentityKey.generate())
    challenge = await impostor.call("POST", "/v1/auth/challenge", {"member_id": founder.id_text})
    from crypto import labels
    from crypto.encoding import b64d, b64e, encode

    raw = b64d(challenge.body["challenge"])
    signature = impostor.key.sign(labels.LOGIN, encode({"challenge": raw, "member": founder.id}))
    reply = await impostor.call(
        "POST",
        "/v1/auth/session",
        {
            "member_id": founder.id_text,
            "challenge": challenge.body["challenge"],
            "signature": b64e(signature),
        },
    )
    assert (reply.status, reply.code) == (401, "login_failed")


async def test_replayed_login_answer_is_refused(founder: Actor) -> None:
    from crypto import labels
    from crypto.encoding import b64d, b64e, encode

    challenge = await founder.call("POST", "/v1/auth/challenge", {"member_id": founder.id_text})
    raw = b64d(challenge.body["challenge"])
    answer = {
        "member_id": founder.id_text,
        "challenge": challenge.body["challenge"],
        "signature": b64e(
            founder.key.sign(labels.LOGIN, encode({"challenge": raw, "member": founder.id}))
        ),
    }
    first = await founder.call("POST", "/v1/auth/session", answer)
    second = await founder.call("POST", "/v1/auth/session", answer)
    assert first.status == 200
    assert (second.status, second.code) == (401, "login_failed")


async def test_a_challenge_spent_on_a_wrong_signature_cannot_be_retried(
    founder: Actor, pool
) -> None:
    from crypto import labels
    from crypto.encoding import b64d, b64e, encode

    challenge = await founder.call("POST", "/v1/auth/challenge", {"member_id": founder.id_text})
    raw = b64d(challenge.body["challenge"])
    right = founder.key.sign(labels.LOGIN, encode({"challenge": raw, "member": founder.id}))
    wrong = bytearray(right)
    wrong[7] ^= 1

    def answer(signature: bytes) -> dict[str, str]:
        return {
            "member_id": founder.id_text,
            "challenge": challenge.body["challenge"],
            "signature": b64e(signature),
        }

    first = await founder.call("POST", "/v1/auth/session", answer(bytes(wrong)))
    assert (first.status, first.code) == (401, "login_failed")
    async with pool.acquire() as conn:
        left = await conn.fetchval(
            "SELECT count(*) FROM login_challenges WHERE challenge = $1", raw
        )
    assert left == 0
    second = await founder.call("POST", "/v1/auth/session", answer(right))
    assert (second.status, second.code) == (401, "login_failed")


async def test_login_signature_for_another_context_is_refused(founder: Actor) -> None:
    from crypto.encoding import b64d, b64e, encode
    from crypto.statements import signing_context

    # A statement of type "login" over the same bytes must not pass for a login.

    challenge = await founder.call("POST", "/v1/auth/challenge", {"member_id": founder.id_text})
    raw = b64d(challenge.body["challenge"])
    wrong = founder.key.sign(
        signing_context("login"), encode({"challenge": raw, "member": founder.id})
    )
    reply = await founder.call(
        "POST",
        "/v1/auth/session",
        {
            "member_id": founder.id_text,
            "challenge": challenge.body["challenge"],
            "signature": b64e(wrong),
        },
    )
    assert (reply.status, reply.code) == (401, "login_failed")


async def test_unknown_member_gets_a_challenge_but_no_session(server, http) -> None:
    stranger = Actor(http, server.url)
    reply = await stranger.login()
    assert (reply.status, reply.code) == (401, "login_failed")


async def test_expired_session_token_is_refused(server_factory, http) -> None:
    clock = FixedClock(datetime.now(UTC))
    server = await server_factory(clock=clock)
    actor = Actor(http, server.url, clock=clock)
    assert (await actor.found()).status == 201
    assert (await actor.call("GET", "/v1/me")).status == 200
    clock.advance(server.settings.session_ttl.total_seconds() + 1)
    reply = await actor.call("GET", "/v1/me")
    assert (reply.status, reply.code) == (401, "session_expired")
    garbage = await actor.call("GET", "/v1/me", auth=False)
    assert (garbage.status, garbage.code) == (401, "unauthorized")


# --- Invites and redemption -------------------------------------------------


async def test_newcomer_joins_and_founder_admits_them(founder: Actor, server, http) -> None:
    newcomer = Actor(http, server.url)
    code, reply = await founder.invite()
    assert reply.status == 201
    fetched = await newcomer.call("GET", f"/v1/invites/{b32e(code.lookup_id)}", auth=False)
    assert fetched.status == 200
    joined = await newcomer.join(code, founder)
    assert joined.body == {"member_id": newcomer.id_text, "status": "pending"}
    assert await newcomer.status() == "pending"
    pending = await founder.call("GET", "/v1/admissions/pending")
    assert [p["member_id"] for p in pending.body["pending"]] == [newcomer.id_text]
    admitted = await founder.admit(newcomer, code)
    # A founding cell of one needs only its one member: the founder's certificate.
    assert (admitted.status, admitted.body["status"]) == (201, "probation")
    assert await newcomer.status() == "probation"


async def test_reused_invite_code_is_refused(founder: Actor, server, http) -> None:
    first, second = Actor(http, server.url), Actor(http, server.url)
    code, _ = await founder.invite()
    assert (await first.join(code, founder)).status == 201
    reply = await second.join(code, founder)
    assert (reply.status, reply.code) == (410, "invite_used")
    fetched = await second.call("GET", f"/v1/invites/{b32e(code.lookup_id)}", auth=False)
    assert (fetched.status, fetched.code) == (410, "invite_used")


async def test_expired_invite_is_refused(server_factory, http) -> None:
    clock = FixedClock(datetime.now(UTC))
    server = await server_factory(clock=clock)
    founder = Actor(http, server.url, clock=clock)
    await founder.found()
    code, _ = await founder.invite(expires_in=3600)
    clock.advance(3601)
    newcomer = Actor(http, server.url, clock=clock)
    reply = await newcomer.join(code, founder)
    assert (reply.status, reply.code) == (410, "invite_expired")


async def test_wrong_proof_looks_exactly_like_an_unknown_invite(
    founder: Actor, server, http, pool
) -> None:
    code, _ = await founder.invite()
    before = await table_counts(pool)
    wrong = await Actor(http, server.url).join(code, founder, proof_code=InviteCode.generate())
    unknown = await Actor(http, server.url).join(InviteCode.generate(), founder)
    assert (wrong.status, wrong.body) == (unknown.status, unknown.body)
    assert wrong.code == "invite_not_found"
    assert await table_counts(pool) == before


@pytest.mark.spokes_settings(
    rate_redeem_per_source=RateLimit(100, 3600), rate_redeem_per_lookup=RateLimit(100, 3600)
)
async def test_malformed_redemption_looks_the_same_for_real_and_unknown_lookup_ids(
    founder: Actor, server, http, pool
) -> None:
    from crypto.encoding import b64e
    from crypto.invites import make_join

    code, _ = await founder.invite()
    newcomer = Actor(http, server.url)
    newcomer.genesis = founder.genesis
    bundle = newcomer.bundle()
    join = make_join(newcomer.key, newcomer.network, code.lookup_id, bundle, newcomer.now())
    stale = make_join(newcomer.key, newcomer.network, code.lookup_id, bundle, newcomer.now() - 900)
    other_bundle = Actor(http, server.url)
    other_bundle.genesis = founder.genesis
    proof = b64e(code.prove(join.statement))
    flipped = bytearray(join.statement.signature)
    flipped[3] ^= 1
    good_join, good_bundle = join.statement.to_wire(), bundle.statement.to_wire()
    cases = [
        {"key_bundle": good_bundle, "proof": proof},
        {"join": 7, "key_bundle": good_bundle, "proof": proof},
        {"join": {"body": "!!", "sig": "AA"}, "key_bundle": good_bundle, "proof": proof},
        {
            "join": {**good_join, "sig": b64e(bytes(flipped))},
            "key_bundle": good_bundle,
            "proof": proof,
        },
        {"join": good_join, "proof": proof},
        {"join": good_join, "key_bundle": good_join, "proof": proof},
        {
            "join": good_join,
            "key_bundle": other_bundle.bundle().statement.to_wire(),
            "proof": proof,
        },
        {"join": stale.statement.to_wire(), "key_bundle": good_bundle, "proof": proof},
        {"join": good_join, "key_bundle": good_bundle},
        {"join": good_join, "key_bundle": good_bundle, "proof": "AA"},
    ]
    before = await table_counts(pool)
    real, unknown = b32e(code.lookup_id), b32e(os.urandom(16))
    for body in cases:
        to_real = await newcomer.call("POST", f"/v1/invites/{real}/redeem", body, auth=False)
        to_unknown = await newcomer.call("POST", f"/v1/invites/{unknown}/redeem", body, auth=False)
        assert to_real.status == 400, (to_real.body, body)
        assert (to_real.status, to_real.body) == (to_unknown.status, to_unknown.body), body
    assert await table_counts(pool) == before
    # The invite is still there for a well-formed redemption.
    assert (await newcomer.join(code, founder)).status == 201


async def test_concurrent_redemptions_of_one_invite_admit_exactly_one(
    founder: Actor, server, http
) -> None:
    code, _ = await founder.invite()
    replies = await asyncio.gather(*(Actor(http, server.url).join(code, founder) for _ in range(5)))
    statuses = sorted(r.status for r in replies)
    assert statuses.count(201) == 1
    assert all(r.code in ("invite_used", None) for r in replies)


async def test_invite_quota_and_probation_are_enforced(founder: Actor, server, http) -> None:
    for _ in range(3):
        assert (await founder.invite())[1].status == 201
    code, reply = await founder.invite()
    assert (reply.status, reply.code) == (409, "quota_exhausted")


async def test_member_in_probation_cannot_invite(founder: Actor, server, http) -> None:
    newcomer = Actor(http, server.url)
    await bring_in(founder, newcomer)
    _, reply = await newcomer.invite()
    assert (reply.status, reply.code) == (403, "in_probation")


@pytest.mark.spokes_settings(
    rate_invite_fetch_per_source=RateLimit(5, 3600), rate_redeem_per_source=RateLimit(5, 3600)
)
async def test_guessing_lookup_ids_is_rate_limited(server, http) -> None:
    guesser = Actor(http, server.url)
    codes = []
    for _ in range(7):
        reply = await guesser.call("GET", f"/v1/invites/{b32e(os.urandom(16))}", auth=False)
        codes.append(reply.code)
    assert codes[:5] == ["invite_not_found"] * 5
    assert codes[5:] == ["rate_limited"] * 2


# --- Admission certificates --------------------------------------------------


async def test_certificate_signed_by_a_non_member_is_refused(
    founder: Actor, server, http, pool
) -> None:
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    outsider = Actor(http, server.url, key=IdentityKey.generate())
    outsider.genesis, outsider.cell, outsider.token = founder.genesis, founder.cell, founder.token
    admission = await outsider.certificate_for(newcomer, code)
    before = await table_counts(pool)
    reply = await outsider.post_admission(admission)
    assert (reply.status, reply.code) == (403, "not_a_member")
    assert await table_counts(pool) == before


async def test_certificate_over_a_different_key_is_refused(
    founder: Actor, server, http, pool
) -> None:
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    before = await table_counts(pool)
    reply = await founder.admit(newcomer, code, key=IdentityKey.generate())
    assert (reply.status, reply.code) == (400, "key_mismatch")
    assert await table_counts(pool) == before


async def test_certificate_by_a_member_in_probation_is_refused(
    founder: Actor, server, http
) -> None:
    member = Actor(http, server.url)
    await bring_in(founder, member)
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    reply = await member.admit(newcomer, code)
    assert (reply.status, reply.code) == (403, "in_probation")


async def test_certificate_by_a_cellmate_who_did_not_invite_is_refused(server, http) -> None:
    founder = Actor(http, server.url)
    await founder.found(NO_PROBATION)
    member = Actor(http, server.url)
    await bring_in(founder, member)
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    reply = await member.admit(newcomer, code)
    assert (reply.status, reply.code) == (403, "not_inviter")


async def _move_to_other_cell(pool, member: Actor, founder: Actor) -> None:
    other = os.urandom(16)
    async with pool.acquire() as conn:
        create = await conn.fetchval("SELECT create_statement FROM groups LIMIT 1")
        await conn.execute(
            "INSERT INTO groups (group_id, network_id, kind, level, create_statement) VALUES ($1, $2, 'cell', 0, $3)",
            other,
            founder.network,
            create,
        )
        await conn.execute("UPDATE members SET cell_id = $1 WHERE member_id = $2", other, member.id)
    member.cell = other


async def test_certificate_and_vouch_from_outside_the_cell_are_refused(server, http, pool) -> None:
    founder = Actor(http, server.url)
    await founder.found(NO_PROBATION)
    elsewhere = Actor(http, server.url)
    await bring_in(founder, elsewhere)
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    await _move_to_other_cell(pool, elsewhere, founder)
    elsewhere.cell = founder.cell  # the certificate claims the target cell
    reply = await elsewhere.admit(newcomer, code)
    assert (reply.status, reply.code) == (403, "not_in_cell")
    assert (await founder.admit(newcomer, code)).status == 201
    before = await table_counts(pool)
    vouch = await elsewhere.verdict("vouch", newcomer, await founder.admission_of(newcomer))
    assert vouch.status == 404 and vouch.code == "not_found"
    assert await table_counts(pool) == before


async def test_revoked_member_can_no_longer_admit(server, http) -> None:
    founder = Actor(http, server.url)
    await founder.found(NO_PROBATION)
    member = Actor(http, server.url)
    await bring_in(founder, member)
    newcomer = Actor(http, server.url)
    code, _ = await member.invite()
    await newcomer.join(code, member)
    assert (await founder.revoke(member)).status == 201
    reply = await member.admit(newcomer, code)
    assert (reply.status, reply.code) == (401, "unauthorized")
    assert (await member.login()).code == "login_failed"


async def test_only_stewards_revoke(server, http) -> None:
    founder = Actor(http, server.url)
    await founder.found(NO_PROBATION)
    member = Actor(http, server.url)
    await bring_in(founder, member)
    reply = await member.revoke(founder)
    assert (reply.status, reply.code) == (403, "not_steward")


# --- Vetting ---------------------------------------------------------------------


async def test_second_cell_member_vouch_completes_admission(server, http) -> None:
    founder = Actor(http, server.url)
    await founder.found(Policy(vouches=2, probation_seconds=30 * DAY))
    second = Actor(http, server.url)
    await bring_in(founder, second)
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    assert (await founder.admit(newcomer, code)).body["status"] == "pending"
    inviter_again = await founder.verdict("vouch", newcomer)
    assert (inviter_again.status, inviter_again.code) == (409, "already_vouched")
    reply = await second.verdict("vouch", newcomer)
    assert reply.body["status"] == "probation"
    again = await second.verdict("vouch", newcomer)
    assert (again.status, again.code) == (409, "already_vouched")
    # Completed: a block comes too late; a vouch may still be what the
    # roster's add needs while the newcomer is not on it (PROTOCOL §11).
    late_block = await founder.verdict("block", newcomer)
    assert (late_block.status, late_block.code) == (409, "vetting_closed")


async def test_block_before_completion_refuses_the_newcomer(server, http) -> None:
    founder = Actor(http, server.url)
    await founder.found(Policy(vouches=2, probation_seconds=30 * DAY))
    second = Actor(http, server.url)
    await bring_in(founder, second)
    newcomer = Actor(http, server.url)
    code, _ = await founder.invite()
    await newcomer.join(code, founder)
    await founder.admit(newcomer, code)
    reply = await second.verdict("block", newcomer)
    assert reply.body["status"] == "blocked"
    assert await newcomer.status() == "blocked"


async def test_branch_diversity_stops_an_inviter_and_their_invitee_admitting_alone(
    server, http
) -> None:
    founder = Actor(http, server.url)
    await founder.found(NO_PROBATION)
    b = Actor(http, server.url)
    await bring_in(founder, b)  # cell {F}: the founder alone suffices
    d = Actor(http, server.url)
    await bring_in(b, d, founder)  # cell {F, B}: B's certificate and F's vouch
    e = Actor(http, server.url)
    code, _ = await b.invite()
    await e.join(code, b)
    assert (await b.admit(e, code)).body["status"] == "pending"
    reply = await d.verdict("vouch", e)  # two vouches, both from B's own subtree
    assert reply.status == 201 and reply.body["status"] == "pending"
    assert await e.status() == "pending"
    reply = await founder.verdict("vouch", e)  # the outsider: now every member has vouched
    assert reply.body["status"] == "active"


async def test_evidence_of_another_cell_looks_like_nothing(server, http, pool) -> None:
    founder = Actor(http, server.url)
    await founder.found(NO_PROBATION)
    elsewhere = Actor(http, server.url)
    await bring_in(founder, elsewhere)
    await _move_to_other_cell(pool, elsewhere, founder)
    theirs = await elsewhere.call("GET", f"/v1/members/{founder.id_text}/evidence")
    nobody = await elsewhere.call("GET", f"/v1/members/{b32e(os.urandom(32))}/evidence")
    assert (theirs.status, theirs.body) == (nobody.status, nobody.body) == (404, nobody.body)


# --- Bad input -------------------------------------------------------------------


async def test_malformed_bodies_get_clear_errors(founder: Actor, server, http, pool) -> None:
    before = await table_counts(pool)
    headers = {"Authorization": f"Bearer {founder.token}", "Content-Type": "application/json"}
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "bad_request"),
        (b'{"invite": 5, "payload": "AA"}', 400, "invalid_statement"),
        (b'{"invite": {"body": "!!", "sig": "AA"}, "payload": "AA"}', 400, "invalid_statement"),
        (b'{"payload": 7}', 400, "bad_request"),
        (b"{" + b'"x": "' + b"a" * 400_000 + b'"}', 413, "body_too_large"),
    ]
    for raw, status, code in cases:
        async with http.post(server.url + "/v1/invites", data=raw, headers=headers) as resp:
            body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (status, code), raw[:40]
    assert await table_counts(pool) == before


async def test_one_key_racing_through_two_invites_becomes_one_member(
    founder: Actor, server, http, pool
) -> None:
    (first, _), (second, _) = await founder.invite(), await founder.invite()
    key = IdentityKey.generate()
    a, b = Actor(http, server.url, key=key), Actor(http, server.url, key=key)
    replies = await asyncio.gather(a.join(first, founder), b.join(second, founder))
    assert sorted(r.status for r in replies) == [201, 409]
    assert {r.code for r in replies} <= {None, "already_member", "conflict"}
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM members WHERE member_id = $1", key.member_id)
            == 1
        )
        redeemed = await conn.fetchval("SELECT count(*) FROM invites WHERE redeemed_by IS NOT NULL")
    assert redeemed == 1


async def test_an_id_is_read_only_in_its_lowercase_form(founder: Actor, server, http) -> None:
    """The document's ids are lowercase base32, and so the server's: one id, one text
    (an uppercase id named the same member, a form the document refuses)."""
    for path in (
        f"/v1/members/{founder.id_text.upper()}/evidence",
        f"/v1/groups/{b32e(founder.cell or b'').upper()}/events",
        f"/v1/groups/{b32e(founder.cell or b'').upper()}/roster",
    ):
        reply = await founder.call("GET", path)
        assert (reply.status, reply.code) == (400, "bad_request"), path
    reply = await founder.call(
        "POST", "/v1/auth/challenge", {"member_id": founder.id_text.upper()}, auth=False
    )
    assert (reply.status, reply.code) == (400, "bad_request")
    assert (await founder.call("GET", f"/v1/members/{founder.id_text}/evidence")).status == 200
