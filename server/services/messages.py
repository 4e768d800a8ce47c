"""Accepting messages: the rules one message must pass, applied to a batch at once.

The rule this module keeps: a message is appended only if, under its group's
row lock, its sender's session is live, the sender is in the group's roster
index, the group's current epoch covers its current members and has not
been retired by policy, the header names that epoch, the counter is unused
and the signature verifies under the sender's identity key. Each message of
a batch passes or fails on its own; a refused one writes nothing and gets
the same 4xx it would get alone.

Messages are the hot path, so an instance commits them in groups
(:class:`MessageWriter`): whatever arrives while one batch commits goes into
the next, and a batch costs one transaction, one append statement and one
NOTIFY however many messages it holds. Within an instance, messages are
appended in the order they were submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from crypto.encoding import b32e, encode
from crypto.keys import IdentityPublicKey
from crypto.messages import Header, SealedMessage, message_id, verify_message
from crypto.network import Policy
from server.clock import Clock
from server.errors import ApiError
from server.services.auth import check_expiry, not_logged_in, token_hash
from server.services.common import api_error, crypto_errors, load_genesis, seconds
from server.store import events as event_store
from server.store import messages as store
from server.store.db import Pool, transaction

log = logging.getLogger("spokes.messages")

MAX_BATCH = 256
KEY_CACHE_SIZE = 100_000
VERIFY_THREADS = 2

# Parsed identity keys by their bytes. Only keys that verified a session's
# member are ever put here, and a key's bytes fully determine it.
_KEYS: dict[bytes, IdentityPublicKey] = {}


@dataclass(frozen=True)
class Submission:
    """One message as received: whose session sent it, to which group, and the message."""

    token_hash: bytes
    group_id: bytes
    message: SealedMessage
    header: Header


@dataclass(frozen=True)
class Accepted:
    message_id: bytes
    seq: int


def submission(token: str | bytes, group_id: bytes, message: SealedMessage) -> Submission:
    """Check what needs no database (the header parses and names this group).

    ``token`` is the bearer token, or its hash when the caller holds only that.
    """
    with crypto_errors():
        header = Header.decode(message.header)
    if header.group != group_id:
        raise api_error(400, "invalid_statement", "the header names another group or sender")
    digest = token if isinstance(token, bytes) else token_hash(token)
    return Submission(digest, group_id, message, header)


class MessageWriter:
    """Group commit for one instance: one batch in flight, the next one filling.

    ``submit`` returns a future that ends with :class:`Accepted` or with the
    ApiError the message was refused with (or the database error that failed
    its whole batch, which rolled back every message in it).
    """

    def __init__(self, pool: Pool, clock: Clock, *, max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._clock = clock
        self._max_batch = max_batch
        self._queue: deque[tuple[Submission, asyncio.Future[Accepted]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._verifier = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="verify")
        self.batches = 0
        self.messages = 0

    def submit(self, item: Submission) -> asyncio.Future[Accepted]:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return future

    async def close(self) -> None:
        """Finish what was submitted (shutdown)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        self._verifier.shutdown(wait=False)

    async def _drain(self) -> None:
        while self._queue:
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                results = await commit_batch(
                    self._pool, [item for item, _ in batch], self._clock(), self._verifier
                )
            except Exception as exc:  # the whole batch rolled back: each request says so
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # the request went away; its message stands (or not) all the same
                if isinstance(result, Accepted):
                    self.messages += 1
                    future.set_result(result)
                else:
                    future.set_exception(result)


async def commit_batch(
    pool: Pool, items: Sequence[Submission], now: datetime, executor: Executor | None = None
) -> list[Accepted | ApiError]:
    """Check and append a batch in one transaction; one result per item, in order."""
    results: list[Accepted | ApiError | None] = [None] * len(items)
    async with transaction(pool) as conn:
        sessions = await store.sessions(conn, [i.token_hash for i in items])
        senders: dict[int, store.SenderSession] = {}
        for n, item in enumerate(items):
            try:
                senders[n] = _check_sender(item, sessions.get(item.token_hash), now)
            except ApiError as exc:
                results[n] = exc
        # Signatures are checked off the event loop (the library releases the
        # GIL while it verifies), before any group is locked.
        signed = list(senders)
        failures = await asyncio.get_running_loop().run_in_executor(
            executor,
            verify_all,
            [(items[n].message, senders[n].identity_key) for n in signed],
        )
        for n, failure in zip(signed, failures, strict=True):
            if failure is not None:
                results[n] = failure
                del senders[n]
        groups = await store.lock_groups(conn, [items[n].group_id for n in senders])
        pending = list(senders)
        checks = await store.check_senders(
            conn,
            [
                (
                    items[n].group_id,
                    senders[n].member_id,
                    items[n].header.epoch,
                    items[n].header.counter,
                )
                for n in pending
            ],
        )
        taken: dict[bytes, int] = {}  # group -> messages accepted in this batch
        used: set[tuple[bytes, int, bytes, int]] = set()
        appended: list[store.NewMessage] = []
        for n, check in zip(pending, checks, strict=True):
            item = items[n]
            group = groups.get(item.group_id)
            try:
                if group is None or not check.in_group:
                    raise api_error(404, "not_found", "no such group")  # not there ≡ not yours
                genesis = await load_genesis(conn, group.network_id)
                count = taken.get(item.group_id, 0)
                _check_epoch(item.header, group, count, genesis.policy, now)
                key = (item.group_id, item.header.epoch, item.header.sender, item.header.counter)
                if check.used or key in used:
                    raise api_error(
                        409, "replayed_counter", "this message counter was already used"
                    )
            except ApiError as exc:
                results[n] = exc
                continue
            used.add(key)
            taken[item.group_id] = count + 1
            seq = group.last_seq + count + 1
            appended.append(
                store.NewMessage(
                    item.group_id,
                    seq,
                    item.header.epoch,
                    item.header.sender,
                    item.header.counter,
                    _body(item.message),
                )
            )
            results[n] = Accepted(message_id(item.message.header), seq)
        entries = [f"{b32e(g)}:{groups[g].last_seq + count}" for g, count in taken.items()]
        await store.append_messages(
            conn, appended, now, event_store.CHANNEL, store.notify_payloads(entries)
        )
    return [r if r is not None else api_error(500, "internal", "unchecked") for r in results]


def _check_sender(
    item: Submission, session: store.SenderSession | None, now: datetime
) -> store.SenderSession:
    """Session, sender and signature: all that needs no lock."""
    if session is None or session.revoked:
        raise not_logged_in()
    check_expiry(session.expires_at, now)
    if item.header.sender != session.member_id:
        raise api_error(400, "invalid_statement", "the header names another group or sender")
    return session


def verify_all(signed: Sequence[tuple[SealedMessage, bytes]]) -> list[ApiError | None]:
    """Each message's signature under its sender's identity key: None, or why not."""
    failures: list[ApiError | None] = []
    for message, raw_key in signed:
        try:
            with crypto_errors():
                verify_message(message, _public_key(raw_key))
        except ApiError as exc:
            failures.append(exc)
        else:
            failures.append(None)
    return failures


def _public_key(raw: bytes) -> IdentityPublicKey:
    """A sender's key, parsed once: a member id names exactly one key, for good."""
    key = _KEYS.get(raw)
    if key is None:
        if len(_KEYS) >= KEY_CACHE_SIZE:
            _KEYS.clear()
        key = _KEYS[raw] = IdentityPublicKey(raw)
    return key


def _check_epoch(
    header: Header, group: store.LockedGroup, taken: int, policy: Policy, now: datetime
) -> None:
    if group.rekey_needed:
        raise api_error(
            409,
            "rekey_required",
            "the group's members changed: commit a new epoch before sending (your client does it)",
        )
    if _retired(group, taken, policy, now):
        raise api_error(
            409,
            "rekey_required",
            "this epoch has reached the policy's age or message limit: commit a new epoch (your client does it)",
        )
    if header.epoch != group.epoch:
        raise api_error(
            409, "stale_epoch", "this message is for another epoch than the group's current one"
        )


def _retired(group: store.LockedGroup, taken: int, policy: Policy, now: datetime) -> bool:
    if group.epoch_messages + taken >= policy.epoch_messages:
        return True
    started = group.epoch_started_at
    return started is not None and seconds(now) - seconds(started) >= policy.epoch_seconds


def _body(message: SealedMessage) -> bytes:
    return encode(
        {"header": message.header, "ciphertext": message.ciphertext, "signature": message.signature}
    )
