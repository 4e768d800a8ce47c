"""Profiles: each member's profile in a group, sealed under the group's current epoch.

The server checks the seal's signature and that it names the current epoch
(under the group row's lock, so no epoch can slip in between), keeps the
latest per member, and announces each change as a ``profile`` event.
"""

from __future__ import annotations

from datetime import datetime

from crypto.encoding import encode
from crypto.keys import IdentityPublicKey
from crypto.messages import verify_profile
from server.errors import ErrorCode
from server.services.auth import Session
from server.services.common import api_error, crypto_errors
from server.services.groups import locked_group_for
from server.store import events as event_store
from server.store import members as member_store
from server.store import profiles as store
from server.store.db import Pool, transaction
from server.store.profiles import ProfileRow


async def put_profile(
    pool: Pool, session: Session, group_id: bytes, epoch: int, sealed: bytes, now: datetime
) -> None:
    async with transaction(pool) as conn:
        group = await locked_group_for(conn, session, group_id)
        if epoch != group.epoch or group.rekey_needed:
            raise api_error(
                409,
                ErrorCode.STALE_EPOCH,
                "profiles are sealed under the group's current epoch",
            )
        raw_key = await member_store.identity_key(conn, session.member_id)
        with crypto_errors():
            verify_profile(group_id, epoch, IdentityPublicKey(raw_key or b""), sealed)
        await store.upsert_profile(conn, group_id, session.member_id, epoch, sealed, now)
        await event_store.append_event(
            conn,
            group_id,
            "profile",
            session.member_id,
            encode({"epoch": epoch, "sealed": sealed}),
            now,
        )


async def group_profiles(pool: Pool, session: Session, group_id: bytes) -> list[ProfileRow]:
    async with transaction(pool) as conn:
        await locked_group_for(conn, session, group_id)
        return await store.profiles(conn, group_id)
