"""What the server does for each roster operation: one table, ``EFFECTS``, consulted for every event.

crypto/roster.py decides whether an event may extend a log, the same way for
the server and every client. This module holds what only the server adds,
in the transaction that holds the group row's lock: an ``add`` must bring in
a newcomer whose vetting the server recorded as complete, an ``epoch``
comes with one sealed box per member, a ``split`` founds its new cell.
Every event, whatever its operation, is then stored the same way
(:func:`record_event`): the statement, the log entry, the group's head, and
the ``roster`` event that announces it.

A new operation (elect, recall, seat, expel …) is its rule in crypto/, one
entry in ``EFFECTS`` here, and its name in ``roster_events``' CHECK (a
migration); nothing else dispatches on an operation's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crypto.encoding import b32d, b64d, encode
from crypto.exclusion import check_grounds
from crypto.motions import parse_motion, split_terms
from crypto.network import Genesis
from crypto.roster import (
    GroupCreation,
    GroupRules,
    RosterState,
    parse_group_creation,
)
from crypto.roster_state import SeatAnchor
from crypto.splits import check_split_creation
from crypto.statements import Statement, get_bytes, statement_id, unpack
from server.errors import ErrorCode
from server.services import notices, revocations
from server.services.common import (
    api_error,
    crypto_errors,
    from_seconds,
    load_genesis,
    statement_from,
)
from server.services.revocations import record_revocation
from server.store import admissions as admission_store
from server.store import councils as council_store
from server.store import events as event_store
from server.store import groups as group_store
from server.store import members as member_store
from server.store import motions as motion_store
from server.store import roster as roster_store
from server.store import sessions as session_store
from server.store.db import Connection
from server.store.statements import insert_statement

MAX_SEALED_BOX = 4096


@dataclass(frozen=True)
class RosterChange:
    """One roster event on its way into a log: the state before it (None for a create) and after."""

    genesis: Genesis
    before: RosterState | None
    after: RosterState
    event: Statement
    request: Mapping[str, Any]  # the request's other fields (an epoch's secrets, a split's create)
    now: datetime

    @property
    def op(self) -> str:
        return str(self.event.fields["op"])

    @property
    def rules(self) -> GroupRules:
        return GroupRules.of(self.genesis)

    @property
    def extended(self) -> RosterState:
        """The state the event extends (every operation but create has one)."""
        if self.before is None:
            raise ValueError(f"a {self.op} extends a log")
        return self.before


Effect = Callable[[Connection, RosterChange], Awaitable[None]]


async def record_event(conn: Connection, change: RosterChange) -> None:
    """Store an event the rule book accepted: its statement, its op's effects, its place in the log.

    For an event that extends a log, the group's member index follows the
    roster too: whoever the event removed (a split moving them, a leave, a
    revocation) keeps reading the group up to and including this event, and
    no further (PROTOCOL §11, "History after a split"). A new group's
    founding members are indexed by :func:`add_founding_members`, once their
    member rows exist.
    """
    state, event, now = change.after, change.event, change.now
    await insert_statement(conn, event, group_id=state.group)
    await EFFECTS[change.op](conn, change)
    await roster_store.insert_roster_event(conn, state.group, state.seq, event.id, change.op)
    await group_store.set_roster_head(
        conn, state.group, state.seq, state.head, state.epoch, state.needs_rekey, now
    )
    seq = await event_store.append_event(
        conn, state.group, "roster", event.author, wire_bytes(event), now
    )
    if change.before is not None:
        for member in set(state.members) - set(change.before.members):
            await group_store.add_group_member(conn, state.group, member, now)
        for member in set(change.before.members) - set(state.members):
            await group_store.remove_group_member(conn, state.group, member)
            await group_store.add_former_member(conn, state.group, member, seq, state.seq)


async def record_creation(
    conn: Connection, network: bytes, creation: GroupCreation, now: datetime
) -> None:
    """Store a new group's create event and its row (members: see add_founding_members)."""
    genesis = await load_genesis(conn, network)
    await record_event(
        conn, RosterChange(genesis, None, creation.state, creation.statement, {}, now)
    )


async def add_founding_members(conn: Connection, creation: GroupCreation, now: datetime) -> None:
    for member in creation.state.members:
        await group_store.add_group_member(conn, creation.group_id, member, now)


def wire_bytes(statement: Statement) -> bytes:
    """A statement as a group event's body carries it."""
    return encode({"body": statement.body, "sig": statement.signature})


# --- The effects, one per operation ---------------------------------------------------


async def _create(conn: Connection, change: RosterChange) -> None:
    state = change.after
    await group_store.insert_group(
        conn,
        state.group,
        change.genesis.network_id,
        state.kind,
        state.level,
        state.parent,
        change.event.id,
    )
    await _seats_changed(conn, change)


async def _seats_changed(conn: Connection, change: RosterChange) -> None:
    """A council's seats as the event leaves them, indexed; each carried link is in its group's log.

    The rule book checked the links' signatures and proofs; an honest server
    also holds every carried link (and departure) in the linked group's own
    log, so it never seats anyone on an election that group did not record.
    """
    before = {} if change.before is None else change.before.seats
    for group, anchor in change.after.seats.items():
        if before.get(group) == anchor:
            continue
        for event_id in _carried_links(change.event):
            if await roster_store.group_of_roster_event(conn, event_id) != group:
                raise api_error(
                    400,
                    ErrorCode.INVALID_DELEGATION,
                    "a delegation names an election its group's log does not hold",
                )
        if change.op != "remove":  # a holder leaving the council only empties the seat
            await _is_latest(conn, change, group, anchor)
        await council_store.put_seat(
            conn,
            council_store.SeatRow(change.after.group, group, anchor.holder, anchor.link, anchor.seq),
        )


async def _is_latest(
    conn: Connection, change: RosterChange, group: bytes, anchor: SeatAnchor
) -> None:
    """A seat follows its group's latest election or recall, to the group's spokesperson."""
    from server.services.groups import load_state  # noqa: PLC0415 - groups.py imports this module

    linked = await load_state(conn, change.genesis, group)
    if linked.last_link != anchor.link or linked.spokesperson != anchor.holder:
        raise api_error(
            409,
            ErrorCode.STALE_MOTION,
            "the seat must follow its group's latest election or recall, to its current "
            "spokesperson",
        )


def _carried_links(event: Statement) -> list[bytes]:
    """The ids of the linked group's events a council event carries (links and departures)."""
    fields, network = event.fields, event.network or b""
    found = []
    seat = fields.get("seat")
    if isinstance(seat, dict):
        found.append(unpack(seat.get("link"), "roster", network).id)
    links = fields.get("links")
    for item in links if isinstance(links, list) else []:
        if isinstance(item, dict):
            found.append(unpack(item.get("link"), "roster", network).id)
            departures = item.get("departures")
            for departure in departures if isinstance(departures, list) else []:
                if isinstance(departure, list) and departure:
                    found.append(unpack(departure[0], "roster", network).id)
    return found


async def _link(conn: Connection, change: RosterChange) -> None:
    """A group linked to the council: its seat indexed, the council's motion closed."""
    await _motion_carried(conn, change)
    await _seats_changed(conn, change)


async def _add(conn: Connection, change: RosterChange) -> None:
    """The newcomer's vetting is complete by the server's record, under the carried certificate."""
    (newcomer,) = set(change.after.members) - set(change.extended.members)
    member = await member_store.get_member(conn, newcomer)
    certificate = await admission_store.admission_of(conn, newcomer)
    if (
        member is None
        or member.admitted_at is None
        or member.revoked_at is not None
        or member.cell_id != change.after.group
        or certificate is None
    ):
        raise api_error(
            403,
            ErrorCode.NOT_ADMITTED,
            "only a member whose vetting is complete joins the roster",
        )
    event = change.event
    carried = unpack(event.fields.get("certificate"), "admission", event.network)
    if carried.id != statement_id(certificate.body):
        raise api_error(
            400,
            ErrorCode.INVALID_STATEMENT,
            "the add event carries another admission certificate",
        )
    if change.after.members[newcomer].key.raw != member.identity_key:
        raise api_error(
            400, ErrorCode.KEY_MISMATCH, "the add event carries another key than the member's"
        )


async def _removed(conn: Connection, change: RosterChange) -> None:
    """Beyond the member index (record_event's): a council seat its holder left is empty.

    A removal that carries a revocation: where an expulsion passed in this
    very group, its revocation joins the network's chain in this transaction
    (the member's sessions and sockets end with it); elsewhere, the chain
    must already hold the revocation carried.
    """
    event = change.event
    if event.fields.get("reason") in ("revoked", "expelled"):
        with crypto_errors():
            carried = unpack(event.fields.get("revocation"), "revocation", event.network)
            grounds = check_grounds(
                carried, get_bytes(event.fields, "member", 32), change.rules
            )
        if grounds.motion is not None and grounds.motion.group == change.after.group:
            await record_revocation(conn, change.genesis, carried, change.now)
            await motion_store.mark_done(conn, grounds.motion.id)
        elif not await revocations.in_chain(conn, carried):
            raise api_error(
                409,
                ErrorCode.NOT_REVOKED,
                "the network's revocation list does not hold this revocation",
            )
    await _seats_changed(conn, change)


async def _epoch(conn: Connection, change: RosterChange) -> None:
    """One sealed secret for each reader of the new roster (a member not frozen), no more,
    no fewer."""
    raw = change.request.get("secrets")
    if not isinstance(raw, dict):
        raise api_error(
            400, ErrorCode.BAD_REQUEST, "an epoch comes with one sealed secret per member"
        )
    boxes: dict[bytes, bytes] = {}
    try:
        for member, box in raw.items():
            boxes[b32d(member)] = b64d(box)
    except (ValueError, TypeError):
        raise api_error(
            400, ErrorCode.BAD_REQUEST, "secrets map member ids to base64 boxes"
        ) from None
    after = change.after
    if set(boxes) != set(after.readers) or any(len(b) > MAX_SEALED_BOX for b in boxes.values()):
        raise api_error(
            400, ErrorCode.BAD_REQUEST, "an epoch needs exactly one sealed secret for each member"
        )
    await roster_store.insert_epoch_secrets(conn, after.group, after.epoch, boxes)


async def _split(conn: Connection, change: RosterChange) -> None:
    """Found the cell the split's motion names, move its members there, close the motion."""
    network = change.genesis.network_id
    with crypto_errors():
        motion = parse_motion(unpack(change.event.fields.get("motion"), "motion", network))
        moved, new_group = split_terms(motion)
    create = statement_from(dict(change.request), "create", "roster", network)
    with crypto_errors():
        creation = parse_group_creation(create, rules=change.rules)
        check_split_creation(change.extended, change.event, creation, rules=change.rules)
    await record_creation(conn, network, creation, change.now)
    await member_store.set_member_cell(conn, list(moved), new_group)
    await add_founding_members(conn, creation, change.now)
    await motion_store.mark_done(conn, motion.id)


async def _motion_carried(conn: Connection, change: RosterChange) -> None:
    """An election or a recall: the motion it carries is no longer open."""
    network = change.genesis.network_id
    with crypto_errors():
        motion = parse_motion(unpack(change.event.fields.get("motion"), "motion", network))
    await motion_store.mark_done(conn, motion.id)


async def _freeze(conn: Connection, change: RosterChange) -> None:
    """A freeze: the member's sessions and sockets end, and no login until its window ends.

    In a council, a freeze carried from the seat's cell must be one of that cell's own
    events (the rule book checked its signers against the seat's election)."""
    await _carried_from_cell(conn, change)
    (subject,) = set(change.after.frozen) - set(change.extended.frozen)
    since = from_seconds(change.after.frozen[subject])
    until = since + timedelta(seconds=change.rules.policy.freeze_seconds)
    await member_store.set_frozen_until(conn, subject, until)
    await session_store.end_member_sessions(conn, subject, change.now)
    await session_store.announce_member_gone(conn, subject)
    if "motion" in change.event.fields:  # the cell's own freeze, not its copy in a council
        await notices.enqueue_sponsor(conn, subject, notices.NoticeKind.FREEZE)


async def _unfreeze(conn: Connection, change: RosterChange) -> None:
    """A freeze lifted by its motion, or lapsed: the member logs in again."""
    await _carried_from_cell(conn, change)
    (subject,) = set(change.extended.frozen) - set(change.after.frozen)
    await member_store.set_frozen_until(conn, subject, None)


async def _carried_from_cell(conn: Connection, change: RosterChange) -> None:
    """The motion a freeze or unfreeze carries out is closed; one carried into a council
    from a cell must be in that cell's own log."""
    fields, network = change.event.fields, change.genesis.network_id
    if "motion" in fields:
        await _motion_carried(conn, change)
    if "link" in fields:
        with crypto_errors():
            carried = unpack(fields.get("link"), "roster", network)
            group = get_bytes(carried.fields, "group", 16)
        if await roster_store.group_of_roster_event(conn, carried.id) != group:
            raise api_error(
                400,
                ErrorCode.INVALID_DELEGATION,
                "a carried freeze names an event its cell's log does not hold",
            )


async def _review(conn: Connection, change: RosterChange) -> None:
    """A review opened: each reviewed member's sponsor is told (a content-free notice)."""
    for member in set(change.after.review) - set(change.extended.review):
        await notices.enqueue_sponsor(conn, member, notices.NoticeKind.REVIEW)


async def _clear(conn: Connection, change: RosterChange) -> None:
    """A review cleared by fresh vouches: a suspended member logs in again."""
    await _motion_carried(conn, change)
    cleared = list(set(change.extended.suspended) - set(change.after.suspended))
    if cleared:
        await member_store.set_suspended(conn, cleared, False)


async def _suspend(conn: Connection, change: RosterChange) -> None:
    """A review not cleared in time: the member's sessions and sockets end, no login."""
    (member,) = set(change.after.suspended) - set(change.extended.suspended)
    await member_store.set_suspended(conn, [member], True)
    await session_store.end_member_sessions(conn, member, change.now)
    await session_store.announce_member_gone(conn, member)


EFFECTS: Mapping[str, Effect] = {
    "create": _create,
    "add": _add,
    "remove": _removed,
    "epoch": _epoch,
    "split": _split,
    "elect": _motion_carried,
    "recall": _motion_carried,
    "link": _link,
    "seat": _seats_changed,
    "freeze": _freeze,
    "unfreeze": _unfreeze,
    "review": _review,
    "clear": _clear,
    "suspend": _suspend,
    "restore": _motion_carried,
}
