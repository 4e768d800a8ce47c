"""Members played over the real HTTP API with real keys and statements: the benchmark's and the server tests'.

An :class:`Actor` is one person talking to one server; it builds each request
with crypto/ and returns the server's answer as a :class:`Reply`, whatever
it is, so a caller can check refusals as well as successes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from crypto import labels
from crypto.chains import (
    NO_PREVIOUS,
    Admission,
    make_admission,
    make_revocation,
    make_verdict,
    parse_admission,
)
from crypto.encoding import b32e, b64e, encode
from crypto.invites import InviteCode, make_invite, make_join
from crypto.keys import IdentityKey
from crypto.network import Genesis, Policy, make_genesis, make_key_bundle
from crypto.roster import GroupRules, make_group
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import from_wire, pack


@dataclass
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


@dataclass
class Actor:
    """One person with keys, talking to one server."""

    http: aiohttp.ClientSession
    url: str
    clock: Any = time.time
    key: IdentityKey = field(default_factory=IdentityKey.generate)
    kem: KemPrivateKey = field(default_factory=lambda: KemPrivateKey.generate(KemSuite.X25519))
    token: str | None = None
    genesis: Genesis | None = None
    cell: bytes | None = None

    @property
    def id(self) -> bytes:
        return self.key.member_id

    @property
    def id_text(self) -> str:
        return b32e(self.id)

    def now(self) -> int:
        value = self.clock()
        return int(value.timestamp() if hasattr(value, "timestamp") else value)

    @property
    def network(self) -> bytes:
        assert self.genesis is not None
        return self.genesis.network_id

    async def call(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Reply:
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as resp:
            return Reply(resp.status, await resp.json())

    def bundle(self) -> Any:
        return make_key_bundle(
            self.key,
            self.network,
            KemSuite.X25519.value,
            self.kem.public_key().public_bytes(),
            self.now(),
            self.now() + 365 * 86400,
        )

    async def found(self, policy: Policy | None = None) -> Reply:
        self.genesis = make_genesis(self.key, policy or Policy(), self.now())
        bundle = self.bundle()
        cell = make_group(
            self.key, self.network, self.now(), [bundle], rules=GroupRules.of(self.genesis)
        )
        self.cell = cell.group_id
        reply = await self.call(
            "POST",
            "/v1/networks",
            {
                "genesis": self.genesis.statement.to_wire(),
                "cell": cell.statement.to_wire(),
                "key_bundle": bundle.statement.to_wire(),
            },
        )
        if reply.status == 201:
            await self.login()
        return reply

    async def login(self) -> Reply:
        reply = await self.call(
            "POST", "/v1/auth/challenge", {"member_id": self.id_text}, auth=False
        )
        challenge = from_b64(reply.body["challenge"])
        signature = self.key.sign(labels.LOGIN, encode({"challenge": challenge, "member": self.id}))
        reply = await self.call(
            "POST",
            "/v1/auth/session",
            {"member_id": self.id_text, "challenge": b64e(challenge), "signature": b64e(signature)},
            auth=False,
        )
        if reply.status == 200:
            self.token = reply.body["token"]
        return reply

    async def invite(self, expires_in: int = 3600) -> tuple[InviteCode, Reply]:
        code = InviteCode.generate()
        assert self.cell is not None
        invite = make_invite(
            self.key, self.network, code, self.cell, self.now(), self.now() + expires_in
        )
        payload = code.seal_payload(
            {"genesis": pack(self.genesis.statement) if self.genesis else None}
        )
        reply = await self.call(
            "POST", "/v1/invites", {"invite": invite.statement.to_wire(), "payload": b64e(payload)}
        )
        return code, reply

    async def join(
        self, code: InviteCode, inviter: Actor, proof_code: InviteCode | None = None
    ) -> Reply:
        self.genesis, self.cell = inviter.genesis, inviter.cell
        bundle = self.bundle()
        join = make_join(self.key, self.network, code.lookup_id, bundle, self.now())
        proof = (proof_code or code).prove(join.statement)
        reply = await self.call(
            "POST",
            f"/v1/invites/{b32e(code.lookup_id)}/redeem",
            {
                "join": join.statement.to_wire(),
                "key_bundle": bundle.statement.to_wire(),
                "proof": b64e(proof),
            },
            auth=False,
        )
        if reply.status == 201:
            await self.login()
        return reply

    async def certificate_for(
        self, newcomer: Actor, code: InviteCode, *, key: Any = None
    ) -> Admission:
        evidence = await self.call("GET", f"/v1/members/{newcomer.id_text}/evidence")
        join = (
            from_wire(evidence.body["join"], "join", self.network)
            if evidence.status == 200
            else None
        )
        assert self.cell is not None
        return make_admission(
            self.key,
            self.network,
            (key or newcomer.key).public_key(),
            self.cell,
            code.lookup_id,
            join.id if join else b"\0" * 32,
            self.now(),
        )

    async def admit(self, newcomer: Actor, code: InviteCode, **kwargs: Any) -> Reply:
        admission = await self.certificate_for(newcomer, code, **kwargs)
        return await self.post_admission(admission)

    async def post_admission(self, admission: Admission) -> Reply:
        return await self.call(
            "POST", "/v1/admissions", {"admission": admission.statement.to_wire()}
        )

    async def admission_of(self, newcomer: Actor) -> Admission:
        evidence = await self.call("GET", f"/v1/members/{newcomer.id_text}/evidence")
        return parse_admission(from_wire(evidence.body["admission"], "admission", self.network))

    async def verdict(
        self, kind: str, newcomer: Actor, admission: Admission | None = None
    ) -> Reply:
        admission = admission or await self.admission_of(newcomer)
        verdict = make_verdict(kind, self.key, self.network, admission, self.now())  # type: ignore[arg-type]
        path = "/v1/vouches" if kind == "vouch" else "/v1/blocks"
        return await self.call("POST", path, {kind: verdict.statement.to_wire()})

    async def revoke(self, member: Actor | bytes, seq: int = 0, prev: bytes = NO_PREVIOUS) -> Reply:
        subject = member if isinstance(member, bytes) else member.id
        revocation = make_revocation(
            self.key, self.network, subject, self.now(), seq=seq, prev=prev
        )
        return await self.call(
            "POST", "/v1/revocations", {"revocation": revocation.statement.to_wire()}
        )

    async def status(self) -> str:
        reply = await self.call("GET", "/v1/me")
        return str(reply.body["status"])


def from_b64(text: str) -> bytes:
    from crypto.encoding import b64d

    return b64d(text)
