"""Councils: groups whose members are seats, one per linked group, each held by its spokesperson.

A council of level n >= 1 links groups of level n - 1. The rule this module
keeps: a council's members are exactly the holders of its seats, and a seat
changes hands only by a roster event of the council that carries the
linked group's own delegation, checked by crypto/delegations.py against
the seat's last accepted link:

- `create` (kind `council`): a spokesperson founds it with their own seat,
  shown by their group's election (the delegation's first link);
- `link`: a council motion signed by the council's quorum, the acceptance
  signed by the linked group's spokesperson, and that group's election
  (posted by a council member or by that spokesperson);
- `seat`: the linked group's next elections or recalls, following the
  seat's anchor; the old holder leaves the council, the new one joins.
  Anyone may post it (the links prove it), the new holder first of all.

Every change of holder changes the council's members, so the rekey
invariant applies: nothing can be sent in the council that a recalled
holder could read, until the next epoch is committed. Councils admit no
`add` and no `split`; cells have no `link` and no `seat`.
"""

from __future__ import annotations

import os
from dataclasses import replace

from crypto.delegations import (
    Entry,
    Link,
    entry_value,
    first_link,
    next_link,
    parse_entries,
    parse_link,
)
from crypto.elections import carried_signatures
from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.motion_rules import quorum_for, signed_by
from crypto.motions import Motion, make_motion, parse_motion
from crypto.network import GROUP_ID_BYTES, KeyBundle, parse_key_bundle
from crypto.roster_state import (
    GroupRules,
    RosterMember,
    RosterState,
    SeatAnchor,
    member_from_bundle,
)
from crypto.rostertree import prove
from crypto.statements import Statement, get_bytes, get_int, pack, sign_statement, unpack

COUNCIL = "council"


# --- What a seat's evidence looks like on the wire --------------------------------------


def link_proofs(members: list[RosterMember], wanted: set[bytes]) -> list[Value]:
    """Proofs on the roster `members` (the one a link commits to) for the ids in `wanted`."""
    return [entry_value(m, prove(members, m.member_id)) for m in members if m.member_id in wanted]


def seat_evidence(
    link_event: Statement, proofs: list[Value], bundle: KeyBundle | None
) -> dict[str, Value]:
    """A first link: the linked group's election, proofs of its signers and holder, the holder's keys."""
    return {
        "link": pack(link_event),
        "proofs": proofs,
        "bundle": None if bundle is None else pack(bundle.statement),
    }


def _bundle_member(value: Value, network: bytes, now: int | None) -> RosterMember | None:
    if value is None:
        return None
    return member_from_bundle(parse_key_bundle(unpack(value, "key-bundle", network), now))


def _first_seat(
    value: Value, group: bytes, level: int, network: bytes, rules: GroupRules, now: int | None
) -> tuple[SeatAnchor, RosterMember]:
    if not isinstance(value, dict):
        raise RuleViolation("invalid_delegation", "a seat comes with its group's election")
    link = parse_link(value.get("link"), group, network, rules)
    entries = parse_entries(value.get("proofs"), rules.policy.cell_max + rules.policy.council_max)
    holder = _bundle_member(value.get("bundle"), network, now)
    anchor = first_link(link, entries, holder, level - 1, rules)
    if holder is None or anchor.holder != holder.member_id:
        raise RuleViolation("invalid_delegation", "a seat is taken by the member elected to it")
    return anchor, holder


# --- create ------------------------------------------------------------------------------


def make_council(
    key: IdentityKey,
    network: bytes,
    time: int,
    level: int,
    bundle: KeyBundle,
    seat_group: bytes,
    seat: dict[str, Value],
    *,
    rules: GroupRules,
    group: bytes | None = None,
) -> tuple[Statement, RosterState]:
    """Sign the create event of a council with my own seat; the event and the council's state."""
    from crypto.roster import apply, sign_event  # noqa: PLC0415 - roster.py imports this module

    council = group if group is not None else os.urandom(GROUP_ID_BYTES)
    fields = council_create_fields(level, bundle, seat_group, seat)
    event = sign_event(key, network, None, "create", time, fields, group=council)
    return event, apply(None, event, rules=rules)


def council_create_fields(
    level: int, bundle: KeyBundle, seat_group: bytes, seat: dict[str, Value]
) -> dict[str, Value]:
    return {
        "kind": COUNCIL,
        "level": level,
        "parent": None,
        "members": [pack(bundle.statement)],
        "origin": None,
        "seat_group": seat_group,
        "seat": seat,
    }


def create_council(
    event: Statement, group: bytes, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    fields = event.fields
    level = get_int(fields, "level")
    if level < 1 or fields.get("parent") is not None or fields.get("origin") is not None:
        raise RuleViolation(
            "invalid_event", "a council has a level of 1 or more, no parent, no origin"
        )
    raw = fields.get("members")
    if not isinstance(raw, list) or len(raw) != 1:
        raise RuleViolation("invalid_event", "a council is founded by one spokesperson")
    seat_group = get_bytes(fields, "seat_group", GROUP_ID_BYTES)
    anchor, holder = _first_seat(fields.get("seat"), seat_group, level, network, rules, now)
    if member_from_bundle(parse_key_bundle(unpack(raw[0], "key-bundle", network), now)) != holder:
        raise RuleViolation("invalid_event", "the founder's keys are the seat holder's")
    if event.author != holder.member_id:
        raise RuleViolation(
            "not_in_group", "a council is founded by the spokesperson who sits in it"
        )
    return RosterState(
        group,
        COUNCIL,
        level,
        None,
        0,
        event.id,
        {holder.member_id: holder},
        0,
        None,
        None,
        since={holder.member_id: 0},
        seats={seat_group: anchor},
    )


# --- link --------------------------------------------------------------------------------


def make_link_motion(
    key: IdentityKey, network: bytes, state: RosterState, group: bytes, time: int
) -> Motion:
    """A council motion to link `group` (a group one level below) to the council."""
    return make_motion(key, network, state, "link", {"group": group}, time)


def link_terms(motion: Motion) -> bytes:
    group = motion.terms.get("group")
    if (
        motion.kind != "link"
        or set(motion.terms) != {"group"}
        or not isinstance(group, bytes)
        or len(group) != GROUP_ID_BYTES
    ):
        raise RuleViolation("invalid_motion", "a link names the group it links")
    return group


def make_acceptance(
    key: IdentityKey, network: bytes, council: bytes, group: bytes, time: int
) -> Statement:
    """The linked group's spokesperson accepts the seat in `council` for `group`."""
    return sign_statement(key, "link-accept", network, time, {"council": council, "group": group})


def link_fields(
    motion: Motion, signatures: list[Statement], acceptance: Statement, seat: dict[str, Value]
) -> dict[str, Value]:
    return {
        "motion": pack(motion.statement),
        "signatures": [pack(s) for s in signatures],
        "accept": pack(acceptance),
        "seat": seat,
    }


def apply_link(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    if state.kind != COUNCIL:
        raise RuleViolation("invalid_event", "only a council links groups")
    motion = parse_motion(unpack(event.fields.get("motion"), "motion", network))
    group = link_terms(motion)
    signatures = carried_signatures(state, event, motion, network, "link")
    authors = [s.author for s in signatures]
    quorum = quorum_for(state, motion, rules)
    if not quorum.reached(signed_by(motion, signatures, state)) or any(
        a not in state.members for a in authors
    ):
        raise RuleViolation("quorum_not_reached", "the council's quorum did not sign this link")
    if group in state.seats:
        raise RuleViolation("already_in_group", "this group already has a seat in the council")
    if len(state.seats) >= rules.policy.council_max:
        raise RuleViolation("group_full", "the council has all the seats its policy allows")
    anchor, holder = _first_seat(event.fields.get("seat"), group, state.level, network, rules, now)
    acceptance = unpack(event.fields.get("accept"), "link-accept", network)
    if (
        acceptance.author != holder.member_id
        or get_bytes(acceptance.fields, "council", GROUP_ID_BYTES) != state.group
        or get_bytes(acceptance.fields, "group", GROUP_ID_BYTES) != group
    ):
        raise RuleViolation(
            "invalid_delegation", "the linked group's spokesperson did not accept this seat"
        )
    if holder.member_id in state.members:
        raise RuleViolation("already_in_group", "one member holds one seat of a council")
    if event.author not in state.members and event.author != holder.member_id:
        raise RuleViolation("not_in_group", "a link is posted by a council member or the new holder")
    return replace(
        state,
        members={**state.members, holder.member_id: holder},
        seats={**state.seats, group: anchor},
        since={**state.since, holder.member_id: 0},  # probation served below
        changed_since_epoch=True,
        motions_done=state.motions_done | {motion.id},
    )


# --- seat --------------------------------------------------------------------------------


def seat_link_value(
    link_event: Statement,
    new: list[Value],
    old: list[Value],
    departures: list[tuple[Statement, list[Value]]],
) -> dict[str, Value]:
    """One link of a seat change: the event, its signers' (and holder's) proofs on its own
    roster and on the seat's anchor roster, and the departures in between with proofs."""
    return {
        "link": pack(link_event),
        "new": new,
        "old": old,
        "departures": [[pack(e), proofs] for e, proofs in departures],
    }


def seat_fields(
    group: bytes, links: list[dict[str, Value]], bundle: KeyBundle | None
) -> dict[str, Value]:
    return {
        "seat_group": group,
        "links": list[Value](links),
        "bundle": None if bundle is None else pack(bundle.statement),
    }


def seat_change(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> tuple[SeatAnchor, RosterMember | None]:
    """The seat's anchor after the links an event carries, and its new holder's keys."""
    if state.kind != COUNCIL:
        raise RuleViolation("invalid_event", "only a council has seats")
    group = get_bytes(event.fields, "seat_group", GROUP_ID_BYTES)
    anchor = state.seats.get(group)
    if anchor is None:
        raise RuleViolation("not_in_group", "this group has no seat in the council")
    raw = event.fields.get("links")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 16:
        raise RuleViolation("invalid_delegation", "a seat change carries the group's elections")
    bundle = _bundle_member(event.fields.get("bundle"), network, now)
    limit = rules.policy.cell_max + rules.policy.council_max
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise RuleViolation("invalid_delegation", "a link is a record")
        link: Link = parse_link(item.get("link"), group, network, rules)
        new = parse_entries(item.get("new"), limit)
        old = parse_entries(item.get("old"), limit)
        departures = _departures(item.get("departures"), network, limit)
        last = position == len(raw) - 1
        anchor = next_link(
            anchor, link, new, old, departures, bundle if last else None, rules, last=last
        )
    return anchor, (bundle if anchor.holder is not None else None)


def _departures(
    value: Value, network: bytes, limit: int
) -> list[tuple[Statement, dict[bytes, Entry]]]:
    if not isinstance(value, list):
        raise RuleViolation("invalid_delegation", "departures are a list")
    found = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise RuleViolation("invalid_delegation", "a departure is [event, proofs]")
        found.append((unpack(item[0], "roster", network), parse_entries(item[1], limit)))
    return found


def apply_seat(
    state: RosterState, event: Statement, network: bytes, rules: GroupRules, now: int | None
) -> RosterState:
    before = state.seats.get(get_bytes(event.fields, "seat_group", GROUP_ID_BYTES))
    # Anyone may post it: the links prove it (the server takes it from the council's
    # members and the seated group's).
    anchor, holder = seat_change(state, event, network, rules, now)
    if holder is not None and any(
        s.holder == holder.member_id and s.group != anchor.group for s in state.seats.values()
    ):
        raise RuleViolation("already_in_group", "one member holds one seat of a council")
    members = dict(state.members)
    if before is not None and before.holder is not None and before.holder != anchor.holder:
        members.pop(before.holder, None)
    since = dict(state.since)
    if holder is not None and holder.member_id not in members:
        members[holder.member_id] = holder
        since[holder.member_id] = 0  # probation was served in the group that elected them
    spokesperson = state.spokesperson if state.spokesperson in members else None
    return replace(
        state,
        members=members,
        seats={**state.seats, anchor.group: anchor},
        since=since,
        spokesperson=spokesperson,
        anchor=state.anchor & set(members),
        changed_since_epoch=True,
    )


def vacate(state: RosterState) -> RosterState:
    """Seats whose holder left the council (removed, revoked) stand empty until the group elects."""
    seats = {
        g: (s if s.holder is None or s.holder in state.members else replace(s, holder=None))
        for g, s in state.seats.items()
    }
    return replace(state, seats=seats)
