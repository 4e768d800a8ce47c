"""Reading group events: who may read which group, and the events' wire shape.

The rule: a member reads a group while the server's roster index lists them
in it, and a member a roster event removed reads it up to and including that
event (services/groups.py ``readable_group``); every refusal looks exactly
like a group that does not exist, so nothing here tells a member which other
groups there are. The live feed streams only the groups one is in now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from crypto.encoding import b32e, b64e
from server.errors import ApiError, ErrorCode
from server.services import auth
from server.services.common import seconds
from server.services.groups import readable_group
from server.store import events as store
from server.store import groups as group_store
from server.store import sessions as session_store
from server.store.db import Pool, transaction
from server.store.events import EventRow
from server.store.groups import GroupSummary

MAX_PAGE = 500


@dataclass(frozen=True)
class FeedSession:
    """An authenticated session, with what a long-lived socket must re-check."""

    member_id: bytes
    network_id: bytes
    token_hash: bytes
    expires_at: datetime


async def open_feed_session(pool: Pool, token: str, now: datetime) -> FeedSession:
    """Authenticate ``token`` (401 as for any endpoint) and note when it expires."""
    async with transaction(pool) as conn:
        session = await auth.session_of(conn, token, now)
        digest = auth.token_hash(token)
        found = await session_store.get_session(conn, digest)
    if found is None:  # session_of just read it in this transaction; never happens
        raise ApiError(401, ErrorCode.UNAUTHORIZED, "not logged in: log in again")
    return FeedSession(session.member_id, session.network_id, digest, found.expires_at)


async def read_events(
    pool: Pool, member_id: bytes, group_id: bytes, since: int, limit: int
) -> list[EventRow]:
    """Events of a group the caller is in, or was in up to their removal, after ``since``;
    404 otherwise."""
    async with transaction(pool) as conn:
        reach = await readable_group(conn, member_id, group_id)
        return await store.events_since(conn, group_id, since, min(limit, MAX_PAGE), reach.last_seq)


async def my_groups(pool: Pool, member_id: bytes) -> list[GroupSummary]:
    async with transaction(pool) as conn:
        return await group_store.group_summaries(conn, member_id)


async def accept_cursors(
    pool: Pool, member_id: bytes, cursors: Mapping[bytes, int]
) -> dict[bytes, int]:
    """The requested groups the member may stream, each with its starting cursor.

    Groups they are not in are simply absent (the caller answers not_found
    for each). A cursor past the group's newest event is brought back to it:
    a client can only have seen events that exist, and a cursor from the
    future would otherwise skip events still to come.
    """
    async with transaction(pool) as conn:
        summaries = await group_store.group_summaries(conn, member_id)
    newest = {g.group_id: g.last_seq for g in summaries}
    return {g: min(c, newest[g]) for g, c in cursors.items() if g in newest}


# The text of a member or group id, remembered: every event a socket is sent names its
# sender, and a busy group's senders are few (ids are public, so keeping them is safe).
_id_text = lru_cache(maxsize=16_384)(b32e)


def event_wire(row: EventRow, group_text: str | None = None) -> dict[str, Any]:
    """The JSON shape of one event, shared by GET .../events and the WebSocket."""
    return {
        "group": group_text or _id_text(row.group_id),
        "seq": row.seq,
        "kind": row.kind,
        "sender": None if row.sender is None else _id_text(row.sender),
        "body": b64e(row.body),
        "created_at": seconds(row.created_at),
    }


def group_wire(summary: GroupSummary) -> dict[str, Any]:
    return {
        "group_id": b32e(summary.group_id),
        "kind": summary.kind,
        "level": summary.level,
        "members": summary.members,
        "last_seq": summary.last_seq,
    }
