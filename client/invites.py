"""Invites and joining: making an invite code for my cell, and redeeming one.

The rule it keeps: an invite carries the network's genesis and the
inviter's chain to it, sealed under the code; whoever redeems it verifies
all of it before making keys, and the keys are saved before the one-time
code is spent (a refused redemption puts the home folder back as it was).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from client import api, verify
from client.errors import ClientError
from client.rosters import Rosters
from client.sdk import Client, Clock, server_url, system_clock
from client.state import InviteRecord, Secret, State, StateFile
from crypto.chains import Admission, parse_admission, verify_chain
from crypto.encoding import Value, b32e
from crypto.errors import DecryptionFailed, InvalidCode, InvalidStatement, RuleViolation
from crypto.invites import Invite, InviteCode, make_invite, make_join, parse_invite
from crypto.keys import IdentityKey, member_id_text, safety_number
from crypto.keystore import KdfParams
from crypto.network import HOUR, Genesis, verify_genesis
from crypto.review import check_may_admit
from crypto.sealing import KemPrivateKey
from crypto.statements import pack, unpack


@dataclass(frozen=True)
class Joined:
    member_id: str
    safety_number: str
    status: str
    network_id: str
    network_name: str
    invited_by: str


@dataclass(frozen=True)
class InviteCreated:
    code: str
    expires_at: int
    lookup_id: str


class Invites:
    """The invites I make for my cell."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def create(self, note: str, expiry_hours: int | None) -> InviteCreated:
        genesis, cell_id = self.client.network()
        chain = await self._own_chain(genesis)
        now = self.client.now()
        # Under review, or the sponsor of an expelled member on hold: the cell's
        # log would refuse whoever this invite brings (crypto/review.py).
        _, state = await Rosters(self.client).sync_roster(cell_id)
        try:
            check_may_admit(state, self.client.me, now, self.client.rules())
        except RuleViolation as exc:
            raise ClientError(
                exc.code,
                f"You can't invite now: {exc}. Nothing was created; `spokes status` shows "
                "your standing.",
            ) from None
        lifetime = genesis.policy.invite_expiry_seconds
        if expiry_hours is not None:
            lifetime = min(lifetime, expiry_hours * HOUR)
        code = InviteCode.generate()
        invite = make_invite(
            self.client.state.identity, genesis.network_id, code, cell_id, now, now + lifetime
        )
        payload: dict[str, Value] = {
            "genesis": pack(genesis.statement),
            "name": self.client.state.network_name or "",
            "invite": pack(invite.statement),
            "chain": [pack(link.statement) for link in chain],
            "note": note,
        }
        stored = api.parse_invite_stored(
            await self.client.call(api.create_invite(invite.statement, code.seal_payload(payload)))
        )
        lookup = b32e(code.lookup_id)
        invites = dict(self.client.state.invites)
        invites[lookup] = InviteRecord(note, stored.expires_at)
        self.client.save(replace(self.client.state, invites=invites))
        return InviteCreated(code.text, stored.expires_at, lookup)

    async def _own_chain(self, genesis: Genesis) -> tuple[Admission, ...]:
        """This member's chain to the genesis, fetched and verified once, then kept."""
        me = self.client.state.identity.public_key()
        if self.client.state.chain or me in genesis.stewards:
            return self.client.state.chain
        evidence = api.parse_evidence(
            await self.client.call(api.member_evidence(self.client.state.member_id))
        )
        report = verify.evaluate_member(genesis, evidence, self.client.now())
        if report.admission is None or report.status not in ("probation", "active"):
            raise ClientError(
                "not_admitted",
                "You are not admitted yet, so you can't invite anyone. "
                "Run `spokes status` to see how your vetting stands.",
            )
        chain = (report.admission, *verify.admissions(evidence.chain, genesis.network_id))
        self.client.save(replace(self.client.state, chain=chain))
        return chain


async def join(
    store: StateFile,
    secret: Secret,
    code_text: str,
    server: str,
    params: KdfParams | None,
    *,
    clock: Clock = system_clock,
) -> tuple[Client, Joined]:
    """Redeem an invite code: verify what it leads to, make keys, ask to join."""
    try:
        code = InviteCode.parse(code_text)
    except InvalidCode as exc:
        raise ClientError(
            "invalid_code", f"{exc}. Nothing was changed; ask your inviter to read it again."
        ) from None
    previous = store.read(secret) if store.exists() else None
    if previous is not None and previous.genesis is not None:
        raise ClientError(
            "already_in_network",
            f"{store.home} already belongs to a network; nothing was changed. "
            "Use another --home to join a second one.",
        )
    state = previous or State(IdentityKey.generate(), KemPrivateKey.generate(), server)
    client = Client(store, secret, replace(state, server=server_url(server)), clock=clock)
    try:
        joined = await _redeem(client, code, previous, params)
    except BaseException:
        await client.close()
        raise
    return client, joined


async def _redeem(
    client: Client, code: InviteCode, previous: State | None, params: KdfParams | None
) -> Joined:
    sealed = api.parse_invite_payload(await client.call(api.fetch_invite(code.lookup_id)))
    now = client.now()
    genesis, name, invite = open_invite(code, sealed, now)
    network = genesis.network_id
    bundle = client.key_bundle(network, now)
    join = make_join(client.state.identity, network, code.lookup_id, bundle, now)
    joined_state = replace(
        client.state,
        genesis=genesis,
        network_name=name,
        key_bundle=bundle,
        cell_id=invite.cell,
        chain=(),
        session=None,
    )
    # Keys are saved before the redemption uses the one-time code, so a
    # crash can't leave a redeemed invite whose keys are lost; a refused
    # redemption puts the home folder back as it was.
    client.save(joined_state, params=params if previous is None else None)
    try:
        answer = api.parse_member_state(
            await client.call(
                api.redeem_invite(
                    code.lookup_id, join.statement, bundle.statement, code.prove(join.statement)
                )
            )
        )
    except BaseException:
        if previous is None:
            client.store.path.unlink(missing_ok=True)
        else:
            client.save(previous)
        raise
    if answer.member_id != member_id_text(client.state.member_id):
        raise verify.fail("the server registered someone else for this redemption")
    try:
        await client.login()
    except ClientError:
        pass  # a pending member may not be let in yet; the next command logs in
    inviter_key = invite.statement.author_key
    return Joined(
        member_id=member_id_text(client.state.member_id),
        safety_number=safety_number(inviter_key, client.state.identity.public_key()),
        status=answer.status,
        network_id=b32e(network),
        network_name=name,
        invited_by=member_id_text(inviter_key.member_id),
    )


def open_invite(code: InviteCode, sealed: bytes, now: int) -> tuple[Genesis, str, Invite]:
    """Open and verify an invite payload: the network, the invite, the inviter's chain."""
    try:
        payload = code.open_payload(sealed)
    except DecryptionFailed:
        raise verify.fail("the invite does not open with this code") from None
    with verify.checking("invite"):
        raw_genesis = payload.get("genesis")
        if not isinstance(raw_genesis, list) or len(raw_genesis) != 2:
            raise InvalidStatement("the invite carries no genesis")
        body, signature = raw_genesis
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise InvalidStatement("the invite carries no genesis")
        genesis = verify_genesis(body, signature)
        network = genesis.network_id
        invite = parse_invite(unpack(payload.get("invite"), "invite", network))
        raw_chain = payload.get("chain")
        if not isinstance(raw_chain, list):
            raise InvalidStatement("the invite carries no chain")
        chain = [parse_admission(unpack(item, "admission", network)) for item in raw_chain]
        verify_chain(genesis, invite.statement.author_key, chain, {})
        name = payload.get("name")
        if not isinstance(name, str):
            raise InvalidStatement("the invite carries no network name")
    if invite.lookup_id != code.lookup_id or invite.proof_public_key != code.proof_public_key:
        raise verify.fail("the invite inside does not belong to this code")
    if invite.expires <= now:
        raise ClientError(
            "invite_expired", "This invite has expired; ask your inviter for a new one."
        )
    if chain and invite.statement.time < chain[0].statement.time + genesis.policy.probation_seconds:
        raise verify.fail("the invite was made by a member still in probation")
    return genesis, name, invite
