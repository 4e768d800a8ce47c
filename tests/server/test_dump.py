"""A seized database holds no message text, name, contact detail or invite note.

The scenario writes known secrets through the real API, exactly as clients
do; then the whole database is dumped with pg_dump and searched for each
secret as plain text, in base64 (standard and URL-safe, at every alignment)
and in hex.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
from pathlib import Path

import pgserver

from crypto.encoding import b32e, b64e
from crypto.invites import InviteCode, make_invite
from crypto.messages import seal_profile
from crypto.network import Policy
from tests.server.actors import Actor, bring_in
from tests.server.group_actors import GroupView

SECRETS = [
    "Riverside Tenants Union",  # the network's name, sent only in invite payloads
    "met her at the library on Tuesday",  # an invite note
    "Rosa Testname-Example",  # a display name
    "signal +1 555 0199 ask for R",  # contact details
    "meet at the old mill at dawn",  # message texts
    "bring the banner and the first aid kit",
]


def pg_dump_binary() -> str:
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    found = str(bundled) if bundled.exists() else shutil.which("pg_dump")
    assert found, "pg_dump is needed for this test"
    return found


def encodings(secret: str) -> list[bytes]:
    raw = secret.encode()
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw)
            # Drop the characters that also depend on the neighbouring bytes.
            forms.append(text[4:-4])
    return forms


async def test_a_database_dump_contains_no_secret_in_any_encoding(
    server, http, database_url
) -> None:
    founder = Actor(http, server.url)
    await founder.found(Policy(vouches=1, probation_seconds=0))
    # An invite whose payload carries the network name and a note.
    code = InviteCode.generate()
    invite = make_invite(
        founder.key, founder.network, code, founder.cell or b"", founder.now(), founder.now() + 3600
    )
    payload = code.seal_payload({"name": SECRETS[0], "note": SECRETS[1]})
    reply = await founder.call(
        "POST", "/v1/invites", {"invite": invite.statement.to_wire(), "payload": b64e(payload)}
    )
    assert reply.status == 201
    member = Actor(http, server.url)
    await bring_in(founder, member)
    view = GroupView(founder, founder.cell or b"")
    await view.add(member, await founder.admission_of(member))
    await view.commit_epoch()
    keys = view.keys[view.state.epoch if view.state else 1]
    profile = seal_profile(
        keys.profile_key,
        keys.group,
        keys.epoch,
        founder.key,
        {"name": SECRETS[2], "contact": SECRETS[3]},
        version=1,
    )
    put = await founder.call(
        "PUT",
        f"/v1/groups/{b32e(keys.group)}/profile",
        {"epoch": keys.epoch, "sealed": b64e(profile)},
    )
    assert put.status == 200, put.body
    for text in SECRETS[4:]:
        assert (await view.send(text)).status == 201

    process = await asyncio.create_subprocess_exec(
        pg_dump_binary(), "--dbname", database_url, "--no-owner", stdout=asyncio.subprocess.PIPE
    )
    dump, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    assert b"COPY public.group_events" in dump  # the dump really holds the data
    for secret in SECRETS:
        for form in encodings(secret):
            assert form not in dump, f"{secret!r} found in the dump as {form[:24]!r}"


def test_the_search_would_find_a_planted_secret() -> None:
    secret = SECRETS[4]
    for prefix in (b"", b"x", b"xy"):
        planted = [
            b"COPY ... " + secret.encode() + b" ...",
            b"\\x" + (prefix + secret.encode()).hex().encode(),
            base64.b64encode(prefix + secret.encode() + b"tail"),
            base64.urlsafe_b64encode(b"head" + prefix + secret.encode()),
        ]
        for dump in planted:
            assert any(form in dump for form in encodings(secret)), dump[:40]
