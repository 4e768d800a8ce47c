"""The member SDK's core: one `Client` per keystore, and the small interface
every concern of the client is written against.

The rule it keeps: a concern module (client/rosters.py, client/epochs.py,
client/messages.py, client/profiles.py, client/feed.py, client/motions.py,
client/vetting.py, client/invites.py, client/founding.py,
client/revocations.py) holds a `Client` and uses only its public members:
`call` (a request built by client/api.py, sent with automatic login),
`save`/`reread`/`fresh` (the keystore under the home's lock), `network`,
`network_id` and `rules` (the pinned genesis, the current cell and the
roster rules it fixes), `now` (the clock), `me`, `state`, `login`,
`open_feed` and `key_bundle`. No module reaches into another class's
`_private` members; a new concern (councils) is a new module beside them.

Before signing anything, the client verifies what it is about to sign and
everything the server handed over for it, with crypto/, against the genesis
it pinned; what it reports (status, safety numbers) is computed from signed
statements, never copied from the server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from client import api
from client.api import Request
from client.errors import ClientError, ServerError
from client.state import Secret, Session, State, StateFile
from client.transport import Feed, Transport
from crypto.chains import Revocation
from crypto.encoding import b32e
from crypto.errors import InvalidStatement
from crypto.keys import IdentityKey, fingerprint, member_id_text, parse_member_id
from crypto.keystore import KdfParams
from crypto.network import DAY, Genesis, KeyBundle, make_key_bundle
from crypto.roster import GroupRules, RosterState
from crypto.sealing import KemPrivateKey

Clock = Callable[[], int]
KEY_BUNDLE_LIFETIME = 365 * DAY
# Log in again this long before the cached session would run out.
SESSION_MARGIN = 30
FEED_PATH = "/v1/ws"


def system_clock() -> int:
    return int(time.time())


class Client:
    """One member's client: their keystore, their server, their pinned network."""

    def __init__(
        self,
        store: StateFile,
        secret: Secret,
        state: State,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.state = state
        self._secret = secret
        self._clock = clock
        self._transport = Transport(state.server)
        # Groups whose membership this process verified from signed events
        # (client/rosters.py): the only ones it seals to, reads or lists.
        self.verified_groups: set[bytes] = set()
        self._one_unit = asyncio.Lock()  # see fresh()
        # Kept by a long-running follower (the relay daemon, client/daemon.py):
        # the roster state of each group it verified, by group, reused by
        # client/rosters.py `sync_roster` while the log it verified is the one
        # held. Its own live feed brings each event of its groups in turn (the
        # seqs must follow one by one), so a group's log changes only by a
        # roster event the feed absorbs, which drops the kept state first;
        # any refusal from the server drops them all. None (every command):
        # each sync fetches the log.
        self.following: dict[bytes, RosterState] | None = None
        self.followed: frozenset[bytes] = frozenset()  # the groups that feed is subscribed to
        # A follower's groups caught up (client/messages.py) in this unit of work
        # (fresh()): within one hold of the lock they are not fetched again.
        self.caught_up: set[bytes] = set()
        self.cell_checked_at = float("-inf")  # when a follower last ran sync_cell in full
        # The network's revocations by subject, as last verified (client/revocations.py):
        # a council of mine removes a revoked holder as my cell does (client/rosters.py).
        self.revoked: dict[bytes, Revocation] = {}
        # Where a slow step says what it is doing (the CLI: stderr in plain mode).
        self.progress: Callable[[str], None] = lambda text: None

    # Opening and closing.

    @classmethod
    def open(cls, store: StateFile, secret: Secret, *, clock: Clock = system_clock) -> Client:
        """Open the keystore with its passphrase, or with the key an unlocked agent holds."""
        return cls(store, secret, store.read(secret), clock=clock)

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
        state = State(IdentityKey.generate(), KemPrivateKey.generate(), server_url(server))
        store.write(state, passphrase, params)
        return cls(store, passphrase, state, clock=clock)

    async def close(self) -> None:
        await self._transport.close()

    # The keystore (the caller holds the home's lock).

    def save(self, state: State | None = None, *, params: KdfParams | None = None) -> None:
        """Write `state` (default: the current one) to the keystore and make it current.

        `params` seals a keystore written for the first time (joining).
        """
        state = self.state if state is None else state
        self.store.write(state, self._secret, params)
        self.state = state

    def reread(self) -> None:
        """Take the keystore as it is on disk now (under the lock, before changing it)."""
        self.state = self.store.read(self._secret)

    @asynccontextmanager
    async def fresh(self) -> AsyncIterator[None]:
        """Take the home's lock and re-read the keystore: a unit of work for a long command.

        Tasks of one process (the daemon's feed and its relays) take turns: the
        file lock is held once per process.
        """
        async with self._one_unit:
            async with self.store.lock_async():
                self.reread()
                self.caught_up.clear()
                yield

    # Sending, with automatic login.

    async def call(self, request: Request) -> Any:
        """Send a request built by client/api.py; log in first (or again) when it needs it."""
        if self.following is not None and request.method != "GET":
            if not request.path.endswith("/messages"):
                self.following.clear()  # a change I make to some log: look at each again
        if not request.auth:
            return await self._transport.send(request)
        token = await self._token()
        try:
            return await self._transport.send(request, token)
        except ServerError as exc:
            if self.following is not None:
                self.following.clear()  # whatever was refused, look at every log again
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
        challenge = api.parse_challenge(await self.call(api.login_challenge(member_id)))
        signature = self.state.identity.sign(
            api.LOGIN_CONTEXT, api.login_message(challenge, member_id)
        )
        answer = await self.call(api.login_session(member_id, challenge, signature))
        session = api.parse_session(answer)
        self.save(replace(self.state, session=Session(session.token, session.expires_at)))
        return session.token

    async def open_feed(self) -> Feed:
        """The live socket, logged in (once more if the cached session was refused)."""
        try:
            return await self._transport.open_feed(FEED_PATH, await self._token())
        except ServerError as exc:
            if exc.status != 401:
                raise
        return await self._transport.open_feed(FEED_PATH, await self.login())

    # Local facts.

    def now(self) -> int:
        return self._clock()

    @property
    def me(self) -> bytes:
        """This member's id."""
        return self.state.member_id

    def network(self) -> tuple[Genesis, bytes]:
        """The pinned genesis and my current cell's id; refused before joining or founding."""
        if self.state.genesis is None or self.state.cell_id is None:
            raise ClientError(
                "not_in_network",
                "This keystore belongs to no network yet. Run `spokes network create --name NAME` "
                "to found one, or `spokes join CODE --server URL` with an invite code.",
            )
        return self.state.genesis, self.state.cell_id

    def network_id(self) -> bytes:
        genesis, _ = self.network()
        return genesis.network_id

    def rules(self) -> GroupRules:
        """What the pinned genesis fixes for every group's roster log."""
        genesis, _ = self.network()
        return GroupRules.of(genesis)

    def key_bundle(self, network: bytes, now: int) -> KeyBundle:
        """A new signed key bundle for this member in `network`."""
        kem_public = self.state.kem.public_key()
        return make_key_bundle(
            self.state.identity,
            network,
            kem_public.suite.value,
            kem_public.public_bytes(),
            now,
            now + KEY_BUNDLE_LIFETIME,
        )

    def whoami(self) -> dict[str, Any]:
        state = self.state
        return {
            "member_id": member_id_text(state.member_id),
            # Your own key's fingerprint; a safety number is of two keys (the
            # inviter's and the newcomer's), compared at admission.
            "fingerprint": fingerprint(state.identity.public_key()),
            "server": state.server,
            "network_id": None if state.network_id is None else b32e(state.network_id),
            "network_name": state.network_name,
            "cell_id": None if state.cell_id is None else b32e(state.cell_id),
        }


def server_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ClientError(
            "invalid_server", f"{text!r} is not a server address; give one like https://host:port."
        )
    return url


def parse_member(text: str) -> bytes:
    """A member id as typed; refused with what to copy instead."""
    try:
        return parse_member_id(text)
    except InvalidStatement:
        raise ClientError(
            "invalid_member_id",
            f"{text!r} is not a member id (52 letters and digits); copy it from `spokes pending`.",
        ) from None
