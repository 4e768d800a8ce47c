"""Roster logs, epochs, messages and profiles: the server's side of §7.

The rules themselves are crypto.roster's; this module adds what only the
server can know (is this newcomer's vetting complete? which member ids have
which boxes?) and keeps its index tables in step, all in the transaction that
holds the group row's lock. The rekey invariant lives here: while a group's
current epoch does not cover its current members, every message is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from crypto.encoding import b32d, b64d, decode, encode
from crypto.errors import InvalidStatement
from crypto.keys import IdentityPublicKey
from crypto.messages import SealedMessage, verify_profile
from crypto.motions import parse_motion, split_terms
from crypto.network import Genesis
from crypto.roster import (
    GroupCreation,
    GroupRules,
    RosterState,
    apply,
    check_split_creation,
    parse_group_creation,
    verify_log,
)
from crypto.statements import Statement, get_bytes, statement_id, unpack
from server.services.auth import Session
from server.services.common import (
    api_error,
    check_fresh,
    crypto_errors,
    parse_stored,
    seconds,
    statement_from,
)
from server.store import events as event_store
from server.store import groups as store
from server.store import membership as members_store
from server.store.db import Connection

MAX_SEALED_BOX = 4096


async def record_creation(
    conn: Connection, network: bytes, creation: GroupCreation, now: datetime
) -> None:
    """Index a new group's create event: its row and its log (members: see add_founding_members)."""
    statement = creation.statement
    state = creation.state
    await members_store.insert_statement(
        conn,
        statement.id,
        network,
        "roster",
        statement.author,
        statement.body,
        statement.signature,
        group_id=state.group,
    )
    await members_store.insert_group(
        conn, state.group, network, state.kind, state.level, state.parent, statement.id
    )
    await _after_event(conn, state, statement, "create", now)


async def add_founding_members(conn: Connection, creation: GroupCreation, now: datetime) -> None:
    for member in creation.state.members:
        await event_store.add_group_member(conn, creation.group_id, member, now)


async def _after_event(
    conn: Connection, state: RosterState, event: Statement, op: str, now: datetime
) -> None:
    await store.insert_roster_event(conn, state.group, state.seq, event.id, op)
    await store.set_roster_head(
        conn, state.group, state.seq, state.head, state.epoch, state.needs_rekey, now
    )
    await event_store.append_event(
        conn, state.group, "roster", event.author, _wire_bytes(event), now
    )


def _wire_bytes(statement: Statement) -> bytes:
    return encode({"body": statement.body, "sig": statement.signature})


async def locked_group_for(conn: Connection, session: Session, group_id: bytes) -> store.GroupRow:
    group = await store.lock_group(conn, group_id)
    # Not there and not yours answer alike.
    if group is None or not await event_store.is_group_member(conn, group_id, session.member_id):
        raise api_error(404, "not_found", "no such group")
    return group


async def load_state(conn: Connection, genesis: Genesis, group_id: bytes) -> RosterState:
    events = [
        parse_stored(s, "roster", genesis.network_id)
        for s in await store.roster_log(conn, group_id)
    ]
    with crypto_errors():
        return verify_log(events, rules=GroupRules.of(genesis))


async def roster(
    conn: Connection, session: Session, group_id: bytes
) -> list[store.StoredStatement]:
    await locked_group_for(conn, session, group_id)
    return await store.roster_log(conn, group_id)


async def append_roster_event(
    conn: Connection,
    genesis: Genesis,
    session: Session,
    group_id: bytes,
    body: dict[str, Any],
    now: datetime,
) -> tuple[RosterState, frozenset[bytes]]:
    await locked_group_for(conn, session, group_id)
    state = await load_state(conn, genesis, group_id)
    event = statement_from(body, "event", "roster", genesis.network_id)
    check_fresh(event, now)
    if event.author != session.member_id:
        raise api_error(400, "invalid_statement", "sign roster events with your own key")
    with crypto_errors():
        after = apply(state, event, rules=GroupRules.of(genesis), now=seconds(now))
    op = str(event.fields["op"])
    await members_store.insert_statement(
        conn,
        event.id,
        genesis.network_id,
        "roster",
        event.author,
        event.body,
        event.signature,
        group_id=group_id,
    )
    if op == "add":
        await _check_vetted(conn, state, after, event)
    elif op == "epoch":
        await _store_boxes(conn, after, body.get("secrets"))
    elif op == "split":
        await _split(conn, genesis, state, after, event, body, now)
    await _after_event(conn, after, event, op, now)
    added = set(after.members) - set(state.members)
    for member in added:
        await event_store.add_group_member(conn, group_id, member, now)
    removed = frozenset(state.members) - frozenset(after.members)
    for member in removed:
        await event_store.remove_group_member(conn, group_id, member)
    return after, removed


async def _check_vetted(
    conn: Connection, before: RosterState, after: RosterState, event: Statement
) -> None:
    (newcomer,) = set(after.members) - set(before.members)
    member = await members_store.get_member(conn, newcomer)
    certificate = await members_store.admission_of(conn, newcomer)
    if (
        member is None
        or member.admitted_at is None
        or member.revoked_at is not None
        or member.cell_id != after.group
        or certificate is None
    ):
        raise api_error(
            403, "not_admitted", "only a member whose vetting is complete joins the roster"
        )
    carried = unpack(event.fields.get("certificate"), "admission", event.network)
    if carried.id != statement_id(certificate.body):
        raise api_error(
            400, "invalid_statement", "the add event carries another admission certificate"
        )
    if after.members[newcomer].key.raw != member.identity_key:
        raise api_error(400, "key_mismatch", "the add event carries another key than the member's")


async def _store_boxes(conn: Connection, after: RosterState, raw: Any) -> None:
    if not isinstance(raw, dict):
        raise api_error(400, "bad_request", "an epoch comes with one sealed secret per member")
    boxes: dict[bytes, bytes] = {}
    try:
        for member, box in raw.items():
            boxes[b32d(member)] = b64d(box)
    except (ValueError, TypeError):
        raise api_error(400, "bad_request", "secrets map member ids to base64 boxes") from None
    if set(boxes) != set(after.members) or any(len(b) > MAX_SEALED_BOX for b in boxes.values()):
        raise api_error(
            400, "bad_request", "an epoch needs exactly one sealed secret for each member"
        )
    await store.insert_epoch_secrets(conn, after.group, after.epoch, boxes)


async def _split(
    conn: Connection,
    genesis: Genesis,
    before: RosterState,
    after: RosterState,
    event: Statement,
    body: dict[str, Any],
    now: datetime,
) -> None:
    with crypto_errors():
        motion = parse_motion(unpack(event.fields.get("motion"), "motion", genesis.network_id))
        moved, new_group = split_terms(motion)
    create = statement_from(body, "create", "roster", genesis.network_id)
    with crypto_errors():
        creation = parse_group_creation(create, rules=GroupRules.of(genesis))
        check_split_creation(before, event, creation, rules=GroupRules.of(genesis))
    await record_creation(conn, genesis.network_id, creation, now)
    await store.set_member_cell(conn, list(moved), new_group)
    await add_founding_members(conn, creation, now)
    await conn.execute("UPDATE motions SET status = 'done' WHERE motion_id = $1", motion.id)


async def my_epoch_secret(conn: Connection, session: Session, group_id: bytes, epoch: int) -> bytes:
    await locked_group_for(conn, session, group_id)
    sealed = await store.epoch_secret(conn, group_id, epoch, session.member_id)
    if sealed is None:
        raise api_error(404, "not_found", "no secret of that epoch for you")
    return sealed


def parse_event_message(body: bytes) -> SealedMessage:
    fields = decode(body)
    if not isinstance(fields, dict):
        raise InvalidStatement("a message event is a record")
    return SealedMessage(
        get_bytes(fields, "header"), get_bytes(fields, "ciphertext"), get_bytes(fields, "signature")
    )


async def put_profile(
    conn: Connection, session: Session, group_id: bytes, epoch: int, sealed: bytes, now: datetime
) -> None:
    group = await locked_group_for(conn, session, group_id)
    if epoch != group.epoch or group.rekey_needed:
        raise api_error(409, "stale_epoch", "profiles are sealed under the group's current epoch")
    raw_key = await store.identity_key(conn, session.member_id)
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


async def group_profiles(
    conn: Connection, session: Session, group_id: bytes
) -> list[store.ProfileRow]:
    await locked_group_for(conn, session, group_id)
    return await store.profiles(conn, group_id)
