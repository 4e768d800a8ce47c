"""Accepting messages: the rules one message must pass, applied to a batch at once.

The rule this module keeps: a message is appended only if, under its group's
row lock, its sender's session is live, the sender is in the group's roster
index, the group's current epoch covers its current members and has not
been retired by policy, the header names that epoch, the counter is unused
and the signature verifies under the sender's identity key. A message whose
counter is used by the byte-identical message (a resend after a lost answer)
is answered with what was stored, its id and seq, and nothing is written;
any other message under a used counter is refused. Each message of
a batch passes or fails on its own; a refused one writes nothing and gets
the same 4xx it would get alone.

Messages are the hot path, so they are checked and appended a batch at a
time: a batch costs one transaction, one append statement, one statement
for mail notices (services/notices.py) and one NOTIFY however many messages
it holds. services/message_writer.py gathers the
batches (group commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crypto.encoding import b32e, encode
from crypto.messages import Header, SealedMessage, message_id
from crypto.network import Policy
from server.errors import ApiError, ErrorCode
from server.services import notices
from server.services.auth import check_expiry, not_logged_in, token_hash
from server.services.common import api_error, crypto_errors, load_genesis, seconds
from server.store import events as event_store
from server.store import messages as store
from server.store import sessions as session_store
from server.store.db import Pool, transaction
from server.verifier import Verifier, verify_batch

MAX_BATCH = 256
CACHE_SIZE = 100_000

# Each session's member and identity key by token hash: a session never
# changes hands, and a member id names one key for good.
_SENDERS: dict[bytes, tuple[bytes, bytes]] = {}


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
        raise api_error(
            400, ErrorCode.INVALID_STATEMENT, "the header names another group or sender"
        )
    digest = token if isinstance(token, bytes) else token_hash(token)
    return Submission(digest, group_id, message, header)


@dataclass
class Prepared:
    """A batch whose senders are known and whose signatures verified (or not)."""

    items: list[Submission]
    senders: list[bytes | None]  # member id; None once the message is refused
    results: list[Accepted | ApiError | None]
    futures: list[asyncio.Future[Accepted]] = field(default_factory=list)

    @staticmethod
    def join(batches: list[Prepared]) -> Prepared:
        if len(batches) == 1:
            return batches[0]
        joined = Prepared([], [], [], [])
        for b in batches:
            joined.items += b.items
            joined.senders += b.senders
            joined.results += b.results
            joined.futures += b.futures
        return joined


async def commit_batch(
    pool: Pool, items: Sequence[Submission], now: datetime
) -> list[Accepted | ApiError]:
    """Check and append a batch; one result per item, in order (both stages at once)."""
    batch = await prepare(pool, items)
    await commit(pool, batch, now)
    return [
        r if r is not None else api_error(500, ErrorCode.INTERNAL, "unchecked")
        for r in batch.results
    ]


async def prepare(
    pool: Pool, items: Sequence[Submission], verifier: Verifier | None = None
) -> Prepared:
    """Who sent each message (by session), and does its signature verify? No locks taken.

    A session's member and key never change, so they are remembered; whether
    the session is still live is checked again under the lock, in commit.
    """
    senders = {i.token_hash: _SENDERS[i.token_hash] for i in items if i.token_hash in _SENDERS}
    unknown = [i.token_hash for i in items if i.token_hash not in senders]
    if unknown:
        async with pool.acquire() as conn:
            found = await session_store.session_members(conn, unknown)
        for digest, session in found.items():
            senders[digest] = (session.member_id, session.identity_key)
            if len(_SENDERS) >= CACHE_SIZE:
                _SENDERS.clear()
            _SENDERS[digest] = senders[digest]
    batch = Prepared(list(items), [None] * len(items), [None] * len(items))
    signed: list[int] = []
    for n, item in enumerate(items):
        try:
            batch.senders[n] = _check_sender(item, senders.get(item.token_hash))
            signed.append(n)
        except ApiError as exc:
            batch.results[n] = exc
    request = [(items[n].message, senders[items[n].token_hash][1]) for n in signed]
    answers = await verifier.verify(request) if verifier is not None else verify_batch(request)
    for n, answer in zip(signed, answers, strict=True):
        if answer is not None:
            code, reason = answer
            batch.results[n] = api_error(400, code, reason)
            batch.senders[n] = None
    return batch


async def commit(pool: Pool, batch: Prepared, now: datetime) -> list[event_store.EventRow]:
    """Under the groups' locks: the rest of the rules, then one append; sets batch.results."""
    items = batch.items
    pending = [n for n, sender in enumerate(batch.senders) if sender is not None]
    appended: list[store.NewMessage] = []
    async with transaction(pool) as conn:
        groups = await store.lock_groups(conn, [items[n].group_id for n in pending])
        checks = await store.check_senders(
            conn,
            [
                (
                    items[n].token_hash,
                    items[n].group_id,
                    items[n].header.sender,
                    items[n].header.epoch,
                    items[n].header.counter,
                )
                for n in pending
            ],
        )
        taken: dict[bytes, int] = {}  # group -> messages accepted in this batch
        # (group, epoch, sender, counter) -> (seq, body) of those accepted in this batch
        used: dict[tuple[bytes, int, bytes, int], tuple[int, bytes]] = {}
        for n, check in zip(pending, checks, strict=True):
            item = items[n]
            group = groups.get(item.group_id)
            key = (item.group_id, item.header.epoch, item.header.sender, item.header.counter)
            body = _body(item.message)
            try:
                if not check.live or check.expires_at is None:
                    raise not_logged_in()
                check_expiry(check.expires_at, now)
                if group is None or not check.in_group:
                    raise api_error(
                        404, ErrorCode.NOT_FOUND, "no such group"
                    )  # not there ≡ not yours
                stored = used.get(key) if key in used else _stored(check)
                if stored is not None or check.used:
                    batch.results[n] = _resent(item, body, stored)
                    continue
                genesis = await load_genesis(conn, group.network_id)
                count = taken.get(item.group_id, 0)
                _check_epoch(item.header, group, count, genesis.policy, now)
            except ApiError as exc:
                batch.results[n] = exc
                continue
            taken[item.group_id] = count + 1
            seq = group.last_seq + count + 1
            used[key] = (seq, body)
            appended.append(
                store.NewMessage(
                    item.group_id,
                    seq,
                    item.header.epoch,
                    item.header.sender,
                    item.header.counter,
                    body,
                )
            )
            batch.results[n] = Accepted(message_id(item.message.header), seq)
        entries = [f"{b32e(g)}:{groups[g].last_seq + count}" for g, count in taken.items()]
        await store.append_messages(
            conn, appended, now, event_store.CHANNEL, store.notify_payloads(entries)
        )
        # One statement for the whole batch, in its transaction (services/notices.py).
        await notices.enqueue_activity(conn, [(m.group_id, m.sender) for m in appended], now)
    return [
        event_store.EventRow(m.group_id, m.seq, "message", m.sender, m.body, now) for m in appended
    ]


def _stored(check: store.SenderCheck) -> tuple[int, bytes] | None:
    if not check.used or check.stored_seq is None or check.stored_body is None:
        return None
    return check.stored_seq, check.stored_body


def _resent(item: Submission, body: bytes, stored: tuple[int, bytes] | None) -> Accepted:
    """A used counter: the same message again is answered as stored; another is refused.

    A client whose answer was lost resends the same bytes (its outbox), so
    it learns the message id and cursor without the cell reading it twice.
    """
    if stored is None or stored[1] != body:
        raise api_error(409, ErrorCode.REPLAYED_COUNTER, "this message counter was already used")
    return Accepted(message_id(item.message.header), stored[0])


def _check_sender(item: Submission, sender: tuple[bytes, bytes] | None) -> bytes:
    """The session's member is the header's sender: the signature is checked next."""
    if sender is None:
        raise not_logged_in()
    member_id, _ = sender
    if item.header.sender != member_id:
        raise api_error(
            400, ErrorCode.INVALID_STATEMENT, "the header names another group or sender"
        )
    return member_id


def _check_epoch(
    header: Header, group: store.LockedGroup, taken: int, policy: Policy, now: datetime
) -> None:
    if group.rekey_needed:
        raise api_error(
            409,
            ErrorCode.REKEY_REQUIRED,
            "the group's members changed: commit a new epoch before sending (your client does it)",
        )
    if _retired(group, taken, policy, now):
        raise api_error(
            409,
            ErrorCode.REKEY_REQUIRED,
            "this epoch has reached the policy's age or message limit: commit a new epoch (your client does it)",
        )
    if header.epoch != group.epoch:
        raise api_error(
            409,
            ErrorCode.STALE_EPOCH,
            "this message is for another epoch than the group's current one",
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
