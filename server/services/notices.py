"""Mail notices: a member's opt-in (a sealed address) and the notices other services enqueue.

The rules: a member opts in for themself only, with a plain address the
server seals under its mail key (server/mail.py) before anything is
written; without a key and a mail server, opting in is refused and nothing
is written. ``enqueue`` and its kin run inside the caller's transaction, so a
notice exists if and only if the action it tells of committed, and write
nothing for members who did not opt in. A notice carries a member and a
kind, nothing more; its text is fixed per kind. A member gets at most one
``activity`` notice an hour, however many messages arrive.

Sending is services/mailer.py's, in the background; nothing here waits for
a mail server.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from server.errors import ErrorCode
from server.mail import NoticeKind, seal_address, valid_address
from server.services.auth import Session
from server.services.common import api_error
from server.store import notices as store
from server.store.db import Connection, Pool, transaction

__all__ = [
    "ACTIVITY_EVERY",
    "NoticeKind",
    "clear_address",
    "enqueue",
    "enqueue_activity",
    "enqueue_group",
    "set_address",
]

ACTIVITY_EVERY = timedelta(hours=1)


async def set_address(
    pool: Pool, session: Session, address: str, key: bytes | None, now: datetime
) -> None:
    """Opt the caller in: their address, sealed. ``key`` None: mail is off here."""
    if key is None:
        raise api_error(
            409,
            ErrorCode.MAIL_OFF,
            "this server sends no mail notices; nothing was stored (ask its operator)",
        )
    if not valid_address(address):
        raise api_error(
            400,
            ErrorCode.INVALID_ADDRESS,
            "that is not a mail address this server can write to: give a plain "
            "name@example.org (no display name, no spaces)",
        )
    sealed = seal_address(key, session.member_id, address)
    async with transaction(pool) as conn:
        await store.put_address(conn, session.member_id, sealed, now)


async def clear_address(pool: Pool, session: Session) -> bool:
    """Opt the caller out: their address and pending notices go; False if none was set."""
    async with transaction(pool) as conn:
        return await store.delete_address(conn, session.member_id)


async def enqueue(
    conn: Connection, member_id: bytes, kind: NoticeKind, now: datetime | None = None
) -> bool:
    """A notice of ``kind`` for ``member_id`` if they opted in, in the caller's
    transaction; whether one was written. ``now`` None: the transaction's time."""
    return await store.insert_notices(conn, [member_id], NoticeKind(kind).value, now) == 1


async def enqueue_group(
    conn: Connection,
    group_id: bytes,
    kind: NoticeKind,
    now: datetime | None = None,
    *,
    besides: Sequence[bytes] = (),
) -> int:
    """A notice of ``kind`` for every current member of the group who opted in
    (but those ``besides``: the member who acted, an expulsion's subject), in
    the caller's transaction."""
    return await store.insert_group_notices(conn, group_id, besides, NoticeKind(kind).value, now)


async def enqueue_activity(
    conn: Connection, messages: Sequence[tuple[bytes, bytes]], now: datetime
) -> int:
    """``activity`` notices for messages (group, sender) committed in the caller's
    transaction: to the groups' other members who opted in, at most one per
    member per ``ACTIVITY_EVERY``. One statement however many messages."""
    pairs = set(messages)
    if not pairs:
        return 0
    groups = [group for group, _ in pairs]
    senders = [sender for _, sender in pairs]
    return await store.insert_activity(conn, groups, senders, now, now - ACTIVITY_EVERY)


async def enqueue_sponsor(conn: Connection, subject: bytes, kind: NoticeKind) -> bool:
    """A notice of ``kind`` for whoever admitted ``subject`` (their certificate's
    issuer), if they opted in: sponsors learn when their vetting is questioned."""
    from server.store.admissions import issuer_of  # noqa: PLC0415 - keeps this module's imports few

    sponsor = await issuer_of(conn, subject)
    return sponsor is not None and await enqueue(conn, sponsor, kind)
