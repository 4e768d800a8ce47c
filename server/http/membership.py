"""HTTP handlers for networks, login, invites and admission (docs/API.md).

Each handler is: rate-limit or authenticate → parse → call one service (which
owns its transaction) → respond. Its docstring is an example exchange.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from crypto.encoding import b32e, b64e
from server.http.appkeys import CLOCK_KEY, HUB_KEY, POOL_KEY, SETTINGS_KEY
from server.http.common import authenticate, json_response, parse_id, path_id, rate_limit
from server.http.parse import get_b64, get_str, read_json
from server.services import admissions, auth, evidence, invites, networks, revocations
from server.services.common import seconds

MAX_NETWORKS = 1


def add_membership_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/networks", create_network)
    r.add_get("/v1/network", get_network)
    r.add_post("/v1/auth/challenge", challenge)
    r.add_post("/v1/auth/session", session)
    r.add_get("/v1/me", me)
    r.add_post("/v1/invites", create_invite)
    r.add_get("/v1/invites/{lookup_id}", fetch_invite)
    r.add_post("/v1/invites/{lookup_id}/redeem", redeem_invite)
    r.add_get("/v1/admissions/pending", pending)
    r.add_post("/v1/admissions", admit)
    r.add_post("/v1/vouches", vouch)
    r.add_post("/v1/blocks", block)
    r.add_post("/v1/revocations", revoke)
    r.add_get("/v1/revocations", revocation_chain)
    r.add_get("/v1/members/{member_id}/evidence", member_evidence)


async def create_network(request: web.Request) -> web.Response:
    """POST /v1/networks {"genesis": stmt, "cell": stmt, "key_bundle": stmt}
    → 201 {"network_id": "…", "cell_id": "…", "member_id": "…"}"""
    body = await read_json(request)
    founded = await networks.create_network(
        request.app[POOL_KEY], body, request.app[CLOCK_KEY](), MAX_NETWORKS
    )
    return json_response(
        {
            "network_id": b32e(founded.network_id),
            "cell_id": b32e(founded.cell_id),
            "member_id": b32e(founded.member_id),
        },
        201,
    )


async def get_network(request: web.Request) -> web.Response:
    """GET /v1/network → {"network_id": "…", "genesis": {"body": "…", "sig": "…"}}"""
    session = await authenticate(request)
    genesis = await networks.network_genesis(request.app[POOL_KEY], session)
    return json_response(
        {"network_id": b32e(genesis.network_id), "genesis": genesis.statement.to_wire()}
    )


async def challenge(request: web.Request) -> web.Response:
    """POST /v1/auth/challenge {"member_id": "…"} → {"challenge": "b64", "expires_at": 1700000000}"""
    body = await read_json(request)
    member_id = parse_id(get_str(body, "member_id", 64), 32, "member_id")
    await rate_limit(request, "login_per_source")
    settings = request.app[SETTINGS_KEY]
    value, expires = await auth.issue_challenge(
        request.app[POOL_KEY], member_id, request.app[CLOCK_KEY](), settings.challenge_ttl
    )
    return json_response({"challenge": b64e(value), "expires_at": seconds(expires)})


async def session(request: web.Request) -> web.Response:
    """POST /v1/auth/session {"member_id": "…", "challenge": "b64", "signature": "b64"}
    → {"token": "…", "expires_at": 1700000000}"""
    body = await read_json(request)
    member_id = parse_id(get_str(body, "member_id", 64), 32, "member_id")
    value = get_b64(body, "challenge", 32, 32)
    signature = get_b64(body, "signature", 64, 64)
    await rate_limit(request, "login_per_source")
    await rate_limit(request, "login_per_member", member_id)
    settings = request.app[SETTINGS_KEY]
    # open_session runs its own transactions: the challenge is spent even if the login fails.
    token, expires = await auth.open_session(
        request.app[POOL_KEY],
        member_id,
        value,
        signature,
        request.app[CLOCK_KEY](),
        settings.session_ttl,
    )
    return json_response({"token": token, "expires_at": seconds(expires)})


async def me(request: web.Request) -> web.Response:
    """GET /v1/me → {"member_id": "…", "status": "probation", "cell_id": "…", ...}"""
    session = await authenticate(request)
    standing = await evidence.me(request.app[POOL_KEY], session, request.app[CLOCK_KEY]())
    member = standing.member
    return json_response(
        {
            "member_id": b32e(member.member_id),
            "network_id": b32e(member.network_id),
            "cell_id": b32e(member.cell_id) if member.cell_id else None,
            "status": standing.status,
            "steward": member.is_steward,
            "joined_at": seconds(member.joined_at),
            "admitted_at": seconds(member.admitted_at) if member.admitted_at else None,
            "probation_ends_at": standing.probation_ends_at,
        }
    )


async def create_invite(request: web.Request) -> web.Response:
    """POST /v1/invites {"invite": stmt, "payload": "b64"} → 201 {"lookup_id": "…", "expires_at": 1700000000}"""
    session = await authenticate(request)
    body = await read_json(request)
    payload = get_b64(body, "payload", 1, invites.MAX_PAYLOAD_BYTES)
    lookup, expires = await invites.create_invite(
        request.app[POOL_KEY], session, body.get("invite"), payload, request.app[CLOCK_KEY]()
    )
    return json_response({"lookup_id": b32e(lookup), "expires_at": seconds(expires)}, 201)


async def fetch_invite(request: web.Request) -> web.Response:
    """GET /v1/invites/{lookup_id} → {"payload": "b64", "expires_at": 1700000000}"""
    lookup = path_id(request, "lookup_id", 16)
    await rate_limit(request, "invite_fetch_per_source")
    await rate_limit(request, "redeem_per_lookup", lookup)
    invite = await invites.fetch_invite(request.app[POOL_KEY], lookup, request.app[CLOCK_KEY]())
    return json_response(
        {"payload": b64e(invite.payload), "expires_at": seconds(invite.expires_at)}
    )


async def redeem_invite(request: web.Request) -> web.Response:
    """POST /v1/invites/{lookup_id}/redeem {"join": stmt, "key_bundle": stmt, "proof": "b64"}
    → 201 {"member_id": "…", "status": "pending"}"""
    lookup = path_id(request, "lookup_id", 16)
    await rate_limit(request, "redeem_per_source")
    await rate_limit(request, "redeem_per_lookup", lookup)
    body = await read_json(request)
    proof = get_b64(body, "proof", 64, 64)
    redeemed = await invites.redeem(
        request.app[POOL_KEY], lookup, body, proof, request.app[CLOCK_KEY]()
    )
    return json_response({"member_id": b32e(redeemed.member_id), "status": redeemed.status}, 201)


async def pending(request: web.Request) -> web.Response:
    """GET /v1/admissions/pending → {"pending": [Evidence, ...]}"""
    session = await authenticate(request)
    items = await evidence.pending(request.app[POOL_KEY], session, request.app[CLOCK_KEY]())
    return json_response({"pending": items})


async def admit(request: web.Request) -> web.Response:
    """POST /v1/admissions {"admission": stmt} → 201 {"member_id": "…", "status": "pending"}"""
    session = await authenticate(request)
    body = await read_json(request)
    member_id, status = await admissions.admit(
        request.app[POOL_KEY], session, body.get("admission"), request.app[CLOCK_KEY]()
    )
    return json_response({"member_id": b32e(member_id), "status": status}, 201)


async def _verdict(request: web.Request, kind: Literal["vouch", "block"]) -> web.Response:
    session = await authenticate(request)
    body = await read_json(request)
    member_id, status = await admissions.add_verdict(
        request.app[POOL_KEY], session, kind, body.get(kind), request.app[CLOCK_KEY]()
    )
    return json_response({"member_id": b32e(member_id), "status": status}, 201)


async def vouch(request: web.Request) -> web.Response:
    """POST /v1/vouches {"vouch": stmt} → 201 {"member_id": "…", "status": "probation"}"""
    return await _verdict(request, "vouch")


async def block(request: web.Request) -> web.Response:
    """POST /v1/blocks {"block": stmt} → 201 {"member_id": "…", "status": "blocked"}"""
    return await _verdict(request, "block")


async def revoke(request: web.Request) -> web.Response:
    """POST /v1/revocations {"revocation": stmt}
    → 201 {"member_id": "…", "status": "revoked", "seq": 0, "revocation_id": "…"}"""
    session = await authenticate(request)
    body = await read_json(request)
    member_id, seq, statement_id = await revocations.revoke(
        request.app[POOL_KEY], session, body.get("revocation"), request.app[CLOCK_KEY]()
    )
    # After the commit: this instance's sockets close at once, others' at their next session check.
    request.app[HUB_KEY].close_member_sockets(member_id)
    return json_response(
        {
            "member_id": b32e(member_id),
            "status": "revoked",
            "seq": seq,
            "revocation_id": b32e(statement_id),
        },
        201,
    )


async def revocation_chain(request: web.Request) -> web.Response:
    """GET /v1/revocations → {"revocations": [stmt, …]} (the chain, seq 0 first)"""
    session = await authenticate(request)
    chain = await revocations.revocation_list(request.app[POOL_KEY], session)
    return json_response({"revocations": chain})


async def member_evidence(request: web.Request) -> web.Response:
    """GET /v1/members/{member_id}/evidence → Evidence (docs/API.md)"""
    session = await authenticate(request)
    member_id = path_id(request, "member_id", 32)
    item = await evidence.member_evidence(
        request.app[POOL_KEY], session, member_id, request.app[CLOCK_KEY]()
    )
    return json_response(item)
