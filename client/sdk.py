"""The member SDK: one async `Client` with a method per thing a member does.

The rule it keeps: before signing anything, the client verifies what it is
about to sign and everything the server handed over for it, with crypto/,
against the genesis it pinned; what it reports (status, safety numbers) is
computed here from signed statements, never copied from the server.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

from client import api, verify
from client.api import Request
from client.errors import ClientError, ServerError
from client.groups import extend_log, lying
from client.state import InviteRecord, Session, State, StateFile
from client.transport import Transport
from crypto.chains import (
    Admission,
    RevocationHead,
    RevocationList,
    make_admission,
    make_revocation,
    make_verdict,
    parse_admission,
    verify_chain,
    verify_revocation_list,
)
from crypto.encoding import Value, b32e
from crypto.errors import DecryptionFailed, InvalidCode, InvalidStatement
from crypto.invites import Invite, InviteCode, make_invite, make_join, parse_invite
from crypto.keys import IdentityKey, fingerprint, member_id_text, parse_member_id, safety_number
from crypto.keystore import KdfParams
from crypto.network import (
    DAY,
    HOUR,
    Genesis,
    KeyBundle,
    Policy,
    make_genesis,
    make_key_bundle,
    verify_genesis,
)
from crypto.roster import GroupRules, make_group
from crypto.sealing import KemPrivateKey
from crypto.statements import pack, unpack

Clock = Callable[[], int]
KEY_BUNDLE_LIFETIME = 365 * DAY
# Log in again this long before the cached session would run out.
SESSION_MARGIN = 30


def system_clock() -> int:
    return int(time.time())


def normalize_safety_number(text: str) -> str:
    """People read safety numbers with spaces or dashes; compare the digits only."""
    return "".join(ch for ch in text if ch not in " -\t")


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


@dataclass(frozen=True)
class PendingNewcomer:
    member_id: str
    safety_number: str
    invited_by: str
    joined_at: int
    status: str
    stage: str
    vouches: int
    needed: int
    invited_by_me: bool


@dataclass(frozen=True)
class MemberStatusView:
    member_id: str
    status: str
    cell_id: str
    network_id: str
    admitted_at: int | None
    probation_ends_at: int | None
    vouches: int | None  # None: not countable, the server shows you no cell yet
    needed: int | None
    verified: bool
    # Your own standing before admission: the server shows you only your own
    # statements, so the certificate is checked and the vouches are not.
    limited: bool = False
    certified: bool | None = None  # your inviter's certificate is signed (verified)
    server_status: str | None = None  # what the server says, unverified (limited only)


class Client:
    """One member's client: their keystore, their server, their pinned network."""

    def __init__(
        self,
        store: StateFile,
        passphrase: str,
        state: State,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.state = state
        self._passphrase = passphrase
        self._clock = clock
        self._transport = Transport(state.server)

    # Opening and closing.

    @classmethod
    def open(cls, store: StateFile, passphrase: str, *, clock: Clock = system_clock) -> Client:
        return cls(store, passphrase, store.read(passphrase), clock=clock)

    @classmethod
    def init(
        cls,
        store: StateFile,
        passphrase: str,
        server: str,
        params: KdfParams,
        *,
        clock: Clock = system_clock,
    ) -> Client:
        """Make new keys and a keystore for them; refuse if one exists."""
        if store.exists():
            raise ClientError(
                "already_initialized",
                f"{store.home} already holds a keystore; nothing was changed. "
                "Use another --home for a second identity.",
            )
        state = State(IdentityKey.generate(), KemPrivateKey.generate(), _server_url(server))
        store.write(state, passphrase, params)
        return cls(store, passphrase, state, clock=clock)

    async def close(self) -> None:
        await self._transport.close()

    def _save(self, state: State) -> None:
        self.store.write(state, self._passphrase)
        self.state = state

    def reread(self) -> None:
        """Take the keystore as it is on disk now (under the lock, before changing it)."""
        self.state = self.store.read(self._passphrase)

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[None]:
        """Take the home's lock and re-read the keystore: a unit of work for a long command."""
        async with self.store.lock_async():
            self.reread()
            yield

    # Sending, with automatic login.

    async def _call(self, request: Request) -> Any:
        if not request.auth:
            return await self._transport.send(request)
        token = await self._token()
        try:
            return await self._transport.send(request, token)
        except ServerError as exc:
            if exc.status != 401 or exc.code not in ("unauthorized", "session_expired"):
                raise
        # The cached session was ended or ran out: log in again, once.
        token = await self.login()
        return await self._transport.send(request, token)

    async def _token(self) -> str:
        session = self.state.session
        if session is not None and session.expires_at > self._clock() + SESSION_MARGIN:
            return session.token
        return await self.login()

    async def login(self) -> str:
        """Challenge–response: sign the server's challenge with the identity key."""
        member_id = self.state.member_id
        challenge = api.parse_challenge(await self._call(api.login_challenge(member_id)))
        signature = self.state.identity.sign(
            api.LOGIN_CONTEXT, api.login_message(challenge, member_id)
        )
        answer = await self._call(api.login_session(member_id, challenge, signature))
        session = api.parse_session(answer)
        self._save(replace(self.state, session=Session(session.token, session.expires_at)))
        return session.token

    # Local facts.

    def _network(self) -> tuple[Genesis, bytes]:
        if self.state.genesis is None or self.state.cell_id is None:
            raise ClientError(
                "not_in_network",
                "This keystore belongs to no network yet. Run `spokes network create --name NAME` "
                "to found one, or `spokes join CODE --server URL` with an invite code.",
            )
        return self.state.genesis, self.state.cell_id

    def whoami(self) -> dict[str, Any]:
        state = self.state
        return {
            "member_id": member_id_text(state.member_id),
            "safety_number": fingerprint(state.identity.public_key()),
            "server": state.server,
            "network_id": None if state.network_id is None else b32e(state.network_id),
            "network_name": state.network_name,
            "cell_id": None if state.cell_id is None else b32e(state.cell_id),
        }

    # Founding a network.

    async def create_network(self, name: str, policy: Policy) -> dict[str, str]:
        if self.state.genesis is not None:
            raise ClientError(
                "already_in_network",
                "This keystore already belongs to a network; nothing was changed. "
                "Use another --home to found a second one.",
            )
        now = self._clock()
        identity = self.state.identity
        genesis = make_genesis(identity, policy, now)
        network = genesis.network_id
        bundle = self._key_bundle(network, now)
        cell = make_group(identity, network, now, [bundle], rules=GroupRules.of(genesis))
        created = api.parse_network_created(
            await self._call(
                api.create_network(genesis.statement, cell.statement, bundle.statement)
            )
        )
        if created.network_id != b32e(network) or created.cell_id != b32e(cell.group_id):
            raise verify.fail("the server registered a network other than the one sent")
        self._save(
            replace(
                self.state,
                genesis=genesis,
                network_name=name,
                key_bundle=bundle,
                cell_id=cell.group_id,
                chain=(),
            )
        )
        return {"network_id": created.network_id, "cell_id": created.cell_id}

    def _key_bundle(self, network: bytes, now: int) -> KeyBundle:
        kem_public = self.state.kem.public_key()
        return make_key_bundle(
            self.state.identity,
            network,
            kem_public.suite.value,
            kem_public.public_bytes(),
            now,
            now + KEY_BUNDLE_LIFETIME,
        )

    # Inviting.

    async def create_invite(self, note: str, expiry_hours: int | None) -> InviteCreated:
        genesis, cell_id = self._network()
        chain = await self._own_chain(genesis)
        now = self._clock()
        lifetime = genesis.policy.invite_expiry_seconds
        if expiry_hours is not None:
            lifetime = min(lifetime, expiry_hours * HOUR)
        code = InviteCode.generate()
        invite = make_invite(
            self.state.identity, genesis.network_id, code, cell_id, now, now + lifetime
        )
        payload: dict[str, Value] = {
            "genesis": pack(genesis.statement),
            "name": self.state.network_name or "",
            "invite": pack(invite.statement),
            "chain": [pack(link.statement) for link in chain],
            "note": note,
        }
        stored = api.parse_invite_stored(
            await self._call(api.create_invite(invite.statement, code.seal_payload(payload)))
        )
        lookup = b32e(code.lookup_id)
        invites = dict(self.state.invites)
        invites[lookup] = InviteRecord(note, stored.expires_at)
        self._save(replace(self.state, invites=invites))
        return InviteCreated(code.text, stored.expires_at, lookup)

    async def _own_chain(self, genesis: Genesis) -> tuple[Admission, ...]:
        """This member's chain to the genesis, fetched and verified once, then kept."""
        me = self.state.identity.public_key()
        if self.state.chain or me in genesis.stewards:
            return self.state.chain
        evidence = api.parse_evidence(await self._call(api.member_evidence(self.state.member_id)))
        report = verify.evaluate_member(genesis, evidence, self._clock())
        if report.admission is None or report.status not in ("probation", "active"):
            raise ClientError(
                "not_admitted",
                "You are not admitted yet, so you can't invite anyone. "
                "Run `spokes status` to see how your vetting stands.",
            )
        chain = (report.admission, *verify.admissions(evidence.chain, genesis.network_id))
        self._save(replace(self.state, chain=chain))
        return chain

    # Joining.

    @classmethod
    async def join(
        cls,
        store: StateFile,
        passphrase: str,
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
        previous = store.read(passphrase) if store.exists() else None
        if previous is not None and previous.genesis is not None:
            raise ClientError(
                "already_in_network",
                f"{store.home} already belongs to a network; nothing was changed. "
                "Use another --home to join a second one.",
            )
        state = previous or State(IdentityKey.generate(), KemPrivateKey.generate(), server)
        client = cls(store, passphrase, replace(state, server=_server_url(server)), clock=clock)
        try:
            joined = await client._redeem(code, previous, params)
        except BaseException:
            await client.close()
            raise
        return client, joined

    async def _redeem(
        self, code: InviteCode, previous: State | None, params: KdfParams | None
    ) -> Joined:
        sealed = api.parse_invite_payload(await self._call(api.fetch_invite(code.lookup_id)))
        now = self._clock()
        genesis, name, invite = _open_invite(code, sealed, now)
        network = genesis.network_id
        bundle = self._key_bundle(network, now)
        join = make_join(self.state.identity, network, code.lookup_id, bundle, now)
        joined_state = replace(
            self.state,
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
        self.store.write(joined_state, self._passphrase, params if previous is None else None)
        try:
            answer = api.parse_member_state(
                await self._call(
                    api.redeem_invite(
                        code.lookup_id, join.statement, bundle.statement, code.prove(join.statement)
                    )
                )
            )
        except BaseException:
            if previous is None:
                self.store.path.unlink(missing_ok=True)
            else:
                self.store.write(previous, self._passphrase)
            raise
        self.state = joined_state
        if answer.member_id != member_id_text(self.state.member_id):
            raise verify.fail("the server registered someone else for this redemption")
        try:
            await self.login()
        except ClientError:
            pass  # a pending member may not be let in yet; the next command logs in
        inviter_key = invite.statement.author_key
        return Joined(
            member_id=member_id_text(self.state.member_id),
            safety_number=safety_number(inviter_key, self.state.identity.public_key()),
            status=answer.status,
            network_id=b32e(network),
            network_name=name,
            invited_by=member_id_text(inviter_key.member_id),
        )

    # The revocation chain (PROTOCOL §7): verified from seq 0, carried forward.

    def revocation_head(self) -> Value:
        """[seq, id] of the last revocation this client verified, or None: sent in messages."""
        known = self.state.revocations
        return None if not known else RevocationHead(len(known) - 1, known[-1]).to_value()

    def known_revocations(self, listed: RevocationList, *, save: bool = True) -> None:
        """Take a verified chain only if it begins with every revocation verified before.

        Shorter (a revocation withheld, the list rolled back) or another
        revocation at a seq already known (a fork) is the lying alarm. A
        longer chain becomes the known one; `save=False` keeps it in memory
        for the caller's own save (reading, where records are mid-change).
        """
        known = self.state.revocations
        found = listed.check_known(known)
        if found == "missing":
            raise lying(
                f"the server shows {len(listed.revocations)} revocation(s), fewer than the "
                f"{len(known)} this client verified before: it withholds a revocation or "
                "rolled the revocation list back"
            )
        if found == "forked":
            raise lying(
                "the server shows a revocation list that forks from the one this client "
                "verified before: members are being shown different revocations"
            )
        if len(listed.ids) > len(known):
            state = replace(self.state, revocations=listed.ids)
            if save:
                self._save(state)
            else:
                self.state = state

    async def revocation_list(self, *, save: bool = True) -> RevocationList:
        """The network's revocation chain from the server, verified and checked against mine."""
        genesis, _ = self._network()
        data = await self._call(api.revocation_list())
        listed = verify.revocation_list(genesis, api.parse_revocation_list(data))
        self.known_revocations(listed, save=save)
        return listed

    async def check_revocation_head(self, head: RevocationHead, sender: bytes) -> None:
        """A cellmate's message names the revocation head they knew: it must be on my chain.

        A head beyond mine makes me fetch the chain, which must reach exactly
        that head; the server's failing to show it means it hides a revocation
        from me that a cellmate has seen.
        """
        known = self.state.revocations
        who = member_id_text(sender)
        if head.seq < len(known):
            if known[head.seq] != head.id:
                raise lying(
                    f"{who} knows another revocation at seq {head.seq} than this client: "
                    "the server forked the revocation list"
                )
            return
        genesis, _ = self._network()
        data = await self._call(api.revocation_list())
        listed = verify.revocation_list(genesis, api.parse_revocation_list(data))
        found = listed.check(head)
        if found == "missing":
            raise lying(
                f"the server withholds a revocation that a cellmate has seen: {who} knows "
                f"{head.seq + 1} revocation(s), the server shows {len(listed.revocations)}"
            )
        if found == "forked":
            raise lying(
                f"{who} knows another revocation at seq {head.seq} than the server shows: "
                "the server forked the revocation list"
            )
        self.known_revocations(listed, save=False)

    async def revoke(self, member_text: str) -> dict[str, Any]:
        """A steward signs the next revocation of the chain, after verifying the chain."""
        genesis, _ = self._network()
        subject = _parse_member(member_text)
        me = self.state.identity
        if me.member_id not in genesis.steward_ids:
            raise ClientError(
                "not_steward",
                "Only a steward named in the network's genesis can revoke a member; "
                "nothing was signed.",
            )
        for attempt in range(2):
            listed = await self.revocation_list()
            if subject in listed.by_subject:
                raise ClientError(
                    "already_revoked", f"{member_id_text(subject)} is already revoked."
                )
            seq, prev = listed.next_position()
            revocation = make_revocation(
                me, genesis.network_id, subject, self._clock(), seq=seq, prev=prev
            )
            try:
                answer = await self._call(api.post_revocation(revocation.statement))
            except ServerError as exc:
                if exc.code == "stale_head" and attempt == 0:
                    continue  # another steward was first: verify the longer chain, sign again
                raise
            if not isinstance(answer, dict) or answer.get("revocation_id") != b32e(
                revocation.statement.id
            ):
                raise lying("the server acknowledged another revocation than the one sent")
            extended = verify_revocation_list(
                genesis, [*(r.statement for r in listed.revocations), revocation.statement]
            )
            self.known_revocations(extended)
            return {
                "member_id": member_id_text(subject),
                "status": "revoked",
                "seq": seq,
                "revocation_id": b32e(revocation.statement.id),
            }
        raise AssertionError("unreachable")

    # Vetting newcomers.

    async def _evidence(self, member_text: str | None) -> verify.MemberReport:
        genesis, _ = self._network()
        member_id = self.state.member_id if member_text is None else _parse_member(member_text)
        evidence = api.parse_evidence(await self._call(api.member_evidence(member_id)))
        if evidence.member_id.lower() != member_id_text(member_id):
            raise verify.fail("the server sent evidence about another member")
        report = verify.evaluate_member(genesis, evidence, self._clock())
        listed = verify.revocation_list(genesis, evidence.revocations)
        self.known_revocations(listed)
        await self._check_listed(report, listed.revoked)
        return report

    async def _check_listed(self, report: verify.MemberReport, revoked: dict[bytes, int]) -> None:
        """The cellmates a vetting is counted against include everyone my cell's log shows.

        The server lists the cell's members in the evidence; a server that
        leaves some out would have a vetting counted against too few members
        (so fewer vouches, no outsider needed). The signed roster log, which
        this client verified, names them all: any missing is a lie.
        """
        genesis, cell_id = self._network()
        record = self.state.groups.get(cell_id)
        if report.cell.group.group_id != cell_id or record is None or not record.events:
            return  # not my cell, or I hold no verified log of it yet
        fetched = [
            verify.statement(w, "roster", genesis.network_id)
            for w in api.parse_roster(await self._call(api.group_roster(cell_id)))
        ]
        state = extend_log(record.events, fetched, rules=GroupRules.of(genesis))
        hidden = set(state.members) - set(report.cell.members) - set(revoked)
        if hidden:
            raise verify.fail(
                f"the server's list of your cell leaves out {len(hidden)} member(s) that its "
                "signed roster log shows, so a vetting would be counted against too few"
            )

    def _check_newcomer(self, report: verify.MemberReport) -> verify.Newcomer:
        """A newcomer of my cell, invited by a member of my cell."""
        _, cell_id = self._network()
        newcomer = report.newcomer
        if newcomer is None:
            raise ClientError(
                "not_a_newcomer", "This member founded the network; there is nothing to vet."
            )
        if report.cell.group.group_id != cell_id:
            raise verify.fail("the server shows a newcomer of another cell")
        if newcomer.inviter not in report.cell.members:
            raise verify.fail("the newcomer's inviter is not a member of your cell")
        return newcomer

    async def pending(self) -> list[PendingNewcomer]:
        genesis, _ = self._network()
        me = self.state.identity.public_key()
        result = []
        for evidence in api.parse_pending(await self._call(api.pending_admissions())):
            report = verify.evaluate_member(genesis, evidence, self._clock())
            newcomer = self._check_newcomer(report)
            stage = "awaiting-admission" if report.outcome is None else report.outcome.status
            result.append(
                PendingNewcomer(
                    member_id=member_id_text(report.member_id),
                    safety_number=safety_number(me, newcomer.key),
                    invited_by=member_id_text(newcomer.inviter),
                    joined_at=newcomer.join.statement.time,
                    status=report.status,
                    stage=stage,
                    vouches=report.vouches,
                    needed=report.needed,
                    invited_by_me=newcomer.inviter == self.state.member_id,
                )
            )
        return result

    async def admit(self, member_text: str, typed_safety_number: str) -> dict[str, str]:
        """Sign the admission certificate, only if the safety number matches."""
        genesis, _ = self._network()
        report = await self._evidence(member_text)
        newcomer = self._check_newcomer(report)
        me = self.state.identity
        if newcomer.inviter != me.member_id:
            raise ClientError(
                "not_inviter",
                "Only the member who invited this newcomer can admit them; "
                "you can vouch for them once their inviter has.",
            )
        if report.admission is not None:
            raise ClientError(
                "already_admitted", "This newcomer already has an admission certificate."
            )
        expected = safety_number(me.public_key(), newcomer.key)
        if normalize_safety_number(typed_safety_number) != normalize_safety_number(expected):
            raise ClientError(
                "safety_number_mismatch",
                "The safety number you typed is not this newcomer's; nothing was signed. "
                "Compare it again in person: if it still differs, the invite code reached "
                "someone else, so do not admit them.",
            )
        admission = make_admission(
            me,
            genesis.network_id,
            newcomer.key,
            newcomer.invite.cell,
            newcomer.invite.lookup_id,
            newcomer.join.statement.id,
            self._clock(),
        )
        await self._call(api.post_admission(admission.statement))
        return await self._status_after(member_text)

    async def vouch(self, member_text: str) -> dict[str, str]:
        return await self._verdict("vouch", member_text)

    async def block(self, member_text: str) -> dict[str, str]:
        return await self._verdict("block", member_text)

    async def _verdict(self, kind: Literal["vouch", "block"], member_text: str) -> dict[str, str]:
        genesis, _ = self._network()
        report = await self._evidence(member_text)
        self._check_newcomer(report)
        if report.admission is None:
            raise ClientError(
                "no_admission",
                "This newcomer has no admission certificate yet: their inviter must confirm "
                "their safety number and admit them first.",
            )
        if self.state.member_id not in report.cell.members:
            raise ClientError(
                "not_in_cell", "Only admitted members of the newcomer's cell can vouch or block."
            )
        verdict = make_verdict(
            kind, self.state.identity, genesis.network_id, report.admission, self._clock()
        )
        await self._call(api.post_verdict(verdict.statement))
        if kind == "block":
            blocked = {**self.state.blocked, report.admission.statement.id: verdict.statement.time}
            self._save(replace(self.state, blocked=blocked))
        return await self._status_after(member_text)

    async def _status_after(self, member_text: str) -> dict[str, str]:
        report = await self._evidence(member_text)
        return {"member_id": member_id_text(report.member_id), "status": report.status}

    # Status.

    async def status(self, member_text: str | None = None) -> MemberStatusView:
        genesis, _ = self._network()
        me = self.state.member_id
        if member_text is None or _parse_member(member_text) == me:
            evidence = api.parse_evidence(await self._call(api.member_evidence(me)))
            if evidence.cell_group is None:
                own = verify.own_pending(genesis, evidence, me)
                return MemberStatusView(
                    member_id=member_id_text(me),
                    status="pending",
                    cell_id=b32e(own.cell_id),
                    network_id=b32e(genesis.network_id),
                    admitted_at=None,
                    probation_ends_at=None,
                    vouches=None,
                    needed=None,
                    verified=True,
                    limited=True,
                    certified=own.admission is not None,
                    server_status=evidence.server_status,
                )
            if evidence.member_id.lower() != member_id_text(me):
                raise verify.fail("the server sent evidence about another member")
            report = verify.evaluate_member(genesis, evidence, self._clock())
        else:
            report = await self._evidence(member_text)
        return MemberStatusView(
            member_id=member_id_text(report.member_id),
            status=report.status,
            cell_id=b32e(report.cell.group.group_id),
            network_id=b32e(genesis.network_id),
            admitted_at=report.admitted_at,
            probation_ends_at=report.probation_ends_at,
            vouches=report.vouches,
            needed=report.needed,
            verified=True,
        )


def _server_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ClientError(
            "invalid_server", f"{text!r} is not a server address; give one like https://host:port."
        )
    return url


def _parse_member(text: str) -> bytes:
    try:
        return parse_member_id(text)
    except InvalidStatement:
        raise ClientError(
            "invalid_member_id",
            f"{text!r} is not a member id (52 letters and digits); copy it from `spokes pending`.",
        ) from None


def _open_invite(code: InviteCode, sealed: bytes, now: int) -> tuple[Genesis, str, Invite]:
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
