"""A newcomer learns nothing about the cell they are joining until they are admitted.

Their own evidence (GET /v1/members/{self}/evidence) holds only their own
statements and their certificate (whose issuer invited them): no cell member's
id, chain, verdict, roster or revocation. Once admitted they get it all.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

import jsonschema_rs
import pytest

from crypto.chains import parse_admission
from crypto.encoding import b32e, b64d
from crypto.keys import IdentityKey
from crypto.network import Policy
from crypto.statements import sign_statement
from server.http.routes import openapi_document
from server.services import common
from tests.server.actors import Actor, bring_in


def mentions(data: Any, member: bytes) -> bool:
    """Whether `member`'s id appears anywhere in `data`: as text, or inside base64 or hex."""
    text = json.dumps(data).lower()
    if b32e(member).lower() in text or member.hex() in text:
        return True
    strings: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    for value in strings:
        try:
            if member in b64d(value):
                return True
        except (ValueError, binascii.Error):
            pass
    return False


@pytest.fixture
async def cell(server, http) -> tuple[Actor, Actor, Actor]:
    """A founder, B and X in one cell; everyone active at once."""
    founder, b, x = Actor(http, server.url), Actor(http, server.url), Actor(http, server.url)
    assert (await founder.found(Policy(vouches=2, probation_seconds=0))).status == 201
    await bring_in(founder, b)
    await bring_in(founder, x, b)
    for member in (b, x):
        assert await member.status() == "active"
    return founder, b, x


async def invited_by(inviter: Actor, http: Any, url: str) -> tuple[Actor, str]:
    """A newcomer who redeemed ``inviter``'s invite (not admitted yet), and its code."""
    newcomer = Actor(http, url)
    code, reply = await inviter.invite()
    assert reply.status == 201
    assert (await newcomer.join(code, inviter)).status == 201
    return newcomer, code


async def test_a_pending_newcomer_sees_no_cellmate_until_admitted(
    server, http, cell: tuple[Actor, Actor, Actor]
) -> None:
    founder, b, x = cell
    c, code = await invited_by(b, http, server.url)
    others = (founder.id, x.id)  # B invited C, so C knows B already

    async def own() -> dict[str, Any]:
        reply = await c.call("GET", f"/v1/members/{c.id_text}/evidence")
        assert reply.status == 200, reply.body
        return dict(reply.body)

    joined = await own()
    assert joined["cell"] is None and joined["status"] == "pending"
    assert joined["key_bundle"] and joined["join"] and joined["invite"] and joined["proof"]
    assert joined["admission"] is None
    for empty in ("chain", "verdicts", "former_members", "cell_history", "revocations"):
        assert joined[empty] == []
    assert not any(mentions(joined, member) for member in others)

    assert (await b.admit(c, code)).status == 201
    assert (await founder.verdict("vouch", c)).status == 201  # X has not spoken: still pending
    vetting = await own()
    assert vetting["status"] == "pending" and vetting["admission"] is not None
    assert vetting["cell"] is None and vetting["verdicts"] == [] and vetting["chain"] == []
    assert not any(mentions(vetting, member) for member in others)

    # The cell still sees everything about C, and C's vetting, as before.
    seen = await x.call("GET", f"/v1/members/{c.id_text}/evidence")
    assert seen.status == 200 and seen.body["cell"] is not None
    assert len(seen.body["verdicts"]) == 1 and mentions(seen.body, founder.id)

    assert (await x.verdict("vouch", c)).status == 201  # every member has vouched
    admitted = await own()
    assert admitted["status"] == "active"
    listed = {m["member_id"] for m in admitted["cell"]["members"]}
    assert {founder.id_text, b.id_text, x.id_text} <= listed
    assert len(admitted["verdicts"]) == 2 and admitted["chain"]


async def test_a_pending_newcomers_own_evidence_is_as_the_openapi_document_says(
    server, http, cell: tuple[Actor, Actor, Actor]
) -> None:
    """The fuzzer (tests/server/test_fuzz.py) found `"cell": null` refused by the document."""
    founder = cell[0]
    newcomer = Actor(http, server.url)
    code, reply = await founder.invite()
    assert reply.status == 201
    assert (await newcomer.join(code, founder)).status == 201
    reply = await newcomer.call("GET", f"/v1/members/{newcomer.id_text}/evidence")
    assert reply.status == 200 and reply.body["cell"] is None
    document = openapi_document()
    evidence = {"$ref": "#/components/schemas/Evidence", "components": document["components"]}
    jsonschema_rs.validator_for(evidence).validate(reply.body)


async def test_a_tampered_row_is_refused_after_the_genuine_one_was_verified(
    server, http, pool, cell: tuple[Actor, Actor, Actor]
) -> None:
    """The server's cache of verified statements is keyed by their bytes: a changed row misses."""
    founder, b, x = cell
    c, code = await invited_by(b, http, server.url)
    assert (await b.admit(c, code)).status == 201

    async def listed() -> Any:
        return await x.call("GET", "/v1/admissions/pending")

    first = await listed()
    assert first.status == 200, first.body
    assert [p["member_id"] for p in first.body["pending"]] == [c.id_text]
    # Listing C settled C's vetting, which verified B's certificate (B is in the cell).
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT s.statement_id, s.body, s.sig FROM admissions a
               JOIN statements s ON s.statement_id = a.certificate_id WHERE a.subject_id = $1""",
            b.id,
        )
    body, sig = bytes(row["body"]), bytes(row["sig"])
    verified = common._verified_key(body, sig, "admission", founder.network)
    assert common._VERIFIED.get(verified)
    parsed = common._VERIFIED.admission(verified)
    assert parsed is not None and parsed.subject == b.id  # kept parsed too

    for column, value in (("sig", sig[:-1] + bytes([sig[-1] ^ 1])), ("body", body + b"\x00")):
        async with pool.acquire() as conn:
            await conn.execute(
                f"UPDATE statements SET {column} = $1 WHERE statement_id = $2",  # noqa: S608
                value,
                row["statement_id"],
            )
        refused = await listed()
        assert refused.status == 400, (column, refused.body)
        assert refused.body["error"]["code"] in ("invalid_signature", "invalid_statement")
        async with pool.acquire() as conn:
            await conn.execute(
                "UPDATE statements SET body = $1, sig = $2 WHERE statement_id = $3",
                body,
                sig,
                row["statement_id"],
            )
        assert (await listed()).body == first.body  # the genuine row is served again


def test_the_verified_cache_keeps_its_bounds_and_drops_the_least_recently_used() -> None:
    key = IdentityKey.generate()
    statements = [sign_statement(key, "note", b"n" * 32, 0, {"i": i}) for i in range(6)]
    cost = common._entry_cost(statements[0])
    cache = common.VerifiedCache(max_entries=3, max_bytes=100 * cost)
    for i, statement in enumerate(statements[:3]):
        cache.put(bytes([i]), statement)
    assert cache.get(bytes([0])) is statements[0]  # now the most recently used
    cache.put(bytes([3]), statements[3])
    assert len(cache) == 3 and cache.get(bytes([1])) is None
    assert [cache.get(bytes([i])) for i in (0, 2, 3)] == [statements[i] for i in (0, 2, 3)]

    small = common.VerifiedCache(max_entries=100, max_bytes=2 * cost + cost // 2)
    for i, statement in enumerate(statements):
        small.put(bytes([i]), statement)
    assert len(small) == 2 and small.size <= small.max_bytes
    assert small.get(bytes([5])) is statements[5] and small.get(bytes([0])) is None


def test_the_verified_cache_keeps_a_certificate_parsed_and_counts_it() -> None:
    steward, newcomer = IdentityKey.generate(), IdentityKey.generate()
    statement = sign_statement(
        steward,
        "admission",
        b"n" * 32,
        0,
        {
            "subject": newcomer.member_id,
            "subject_key": newcomer.public_key().raw,
            "cell": b"c" * 16,
            "invite": b"i" * 16,
            "join": b"j" * 32,
        },
    )
    admission = parse_admission(statement)
    cache = common.VerifiedCache(max_entries=10, max_bytes=10**6)
    cache.put(b"k", statement)
    assert cache.admission(b"k") is None and cache.size == common._entry_cost(statement)
    cache.put(b"k", statement, admission)
    assert cache.admission(b"k") is admission and len(cache) == 1
    assert cache.size == common._entry_cost(statement) + common._ADMISSION_OVERHEAD_BYTES
    cache.put(b"k", statement)  # verified again elsewhere: the parsed form stays
    assert cache.admission(b"k") is admission and cache.get(b"k") is statement
