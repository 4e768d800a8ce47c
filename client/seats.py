"""What my group's verified log shows a council: the seat evidence this client builds.

The rule it keeps: every election, roster and departure a council is shown
comes from a roster log this client replayed itself (crypto/roster.py). The
roster an election commits to is the group's members when its event was
applied, each proof is made over exactly that roster (crypto/rostertree.py),
and a departure is one of the group's own events between two elections. The
council checks it all again (crypto/delegations.py); this module sees to it
that nothing is handed over that the group's own log does not hold, and that
a council learns no more of the group than the proofs it needs
(docs/THREAT_MODEL.md, "What a council member learns").

No I/O here: client/councils.py fetches and posts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from client import api
from client.errors import ClientError
from client.groups import GroupRecord, lying
from crypto import councils, roster
from crypto.councils import COUNCIL
from crypto.delegations import MAX_LINKS, leaving, parse_link
from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.network import KeyBundle
from crypto.roster import GroupRules, RosterMember, RosterState
from crypto.statements import Statement, pack


def council_level(record: GroupRecord | None) -> int | None:
    """The level of a council whose verified log this record holds; None for anything else."""
    if record is None or not record.events:
        return None
    fields = record.events[0].fields
    level = fields.get("level")
    if fields.get("kind") != councils.COUNCIL or not isinstance(level, int):
        return None
    return level


@dataclass(frozen=True)
class LinkAt:
    """One election or recall of a group's verified log, and the roster it committed to."""

    link_id: bytes  # how the rule book names it (the group's `last_link` once applied)
    event: Statement
    seq: int
    members: tuple[RosterMember, ...]  # the group's members when the event was applied
    signers: frozenset[bytes]  # the opener and every signature's author
    names: bytes  # the member it elects or recalls
    elects: bytes | None  # the member elected; None for a recall

    @property
    def member_ids(self) -> frozenset[bytes]:
        return frozenset(m.member_id for m in self.members)


@dataclass(frozen=True)
class Departure:
    """An event of the group that took members off its roster in a way a council accepts."""

    event: Statement
    seq: int
    members: frozenset[bytes]


@dataclass(frozen=True)
class Delegations:
    """A group's elections and recalls, in order, and the departures between them."""

    links: tuple[LinkAt, ...]
    departures: tuple[Departure, ...]

    def index(self, link_id: bytes) -> int | None:
        return next((i for i, link in enumerate(self.links) if link.link_id == link_id), None)

    @property
    def link_ids(self) -> frozenset[bytes]:
        return frozenset(link.link_id for link in self.links)


def delegations(events: Sequence[Statement], rules: GroupRules) -> Delegations:
    """Replay a verified log and note each link (an event that made itself the group's
    `last_link`, as the rule book names it) with the roster before it, and each departure."""
    links: list[LinkAt] = []
    departures: list[Departure] = []
    state: RosterState | None = None
    for seq, event in enumerate(events):
        after = roster.apply(state, event, rules=rules)
        if state is not None and after.last_link is not None and after.last_link != state.last_link:
            link = parse_link(pack(event), after.group, event.network or b"", rules)
            elects = link.member if link.motion.kind == "elect" else None
            members = tuple(state.members.values())
            links.append(
                LinkAt(after.last_link, event, seq, members, link.signers, link.member, elects)
            )
        if state is not None and set(state.members) - set(after.members):
            try:
                gone = leaving(event, rules)
            except RuleViolation:
                gone = frozenset()  # not one a council counts (a council's own seat change)
            if gone:
                departures.append(Departure(event, seq, gone))
        state = after
    return Delegations(tuple(links), tuple(departures))


def my_delegation(found: Delegations, state: RosterState, me: bytes) -> LinkAt:
    """The group's last link, which must be my election: what a seat of mine rests on."""
    last = found.links[-1] if found.links else None
    if (
        last is None
        or state.spokesperson != me
        or state.last_link != last.link_id
        or last.elects != me
    ):
        raise ClientError(
            "not_spokesperson",
            "You are not this group's spokesperson on its latest election, so no council "
            "would seat you for it (`spokes cells` shows who is; `spokes elect` opens an "
            "election). Nothing was signed.",
        )
    return last


def first_seat(link: LinkAt, bundle: KeyBundle) -> dict[str, Value]:
    """A seat's first evidence: the election, its signers and holder proven on its roster."""
    wanted = set(link.signers) | ({link.elects} if link.elects is not None else set())
    proofs = councils.link_proofs(list(link.members), wanted)
    return councils.seat_evidence(link.event, proofs, bundle)


@dataclass(frozen=True)
class SeatChange:
    """The links one `seat` event carries (ending at an election or at the last recall)."""

    links: tuple[dict[str, Value], ...]
    holder: bytes | None  # whom the last link seats; None for a recall (the seat stands empty)
    last: bytes  # the id of the last link carried


def seat_changes(found: Delegations, anchor: bytes) -> list[SeatChange] | None:
    """The seat events that bring a seat anchored at `anchor` up to the group's last link.

    One event carries every link since the anchor (up to MAX_LINKS each),
    elections and recalls alike: the council seats only the last one's holder,
    with their keys, and an honest server takes a seat change only when it
    lands on the group's latest link. None if `anchor` is not a link of this
    log: the council's seat rests on something this group never recorded,
    and nothing can follow it.
    """
    start = found.index(anchor)
    if start is None:
        return None
    changes: list[SeatChange] = []
    pending: list[dict[str, Value]] = []
    previous = found.links[start]
    for link in found.links[start + 1 :]:
        pending.append(_link_value(previous, link, found.departures))
        previous = link
        if len(pending) == MAX_LINKS:
            changes.append(SeatChange(tuple(pending), link.elects, link.link_id))
            pending = []
    if pending:
        changes.append(SeatChange(tuple(pending), previous.elects, previous.link_id))
    return changes


def _link_value(
    previous: LinkAt, link: LinkAt, departures: Sequence[Departure]
) -> dict[str, Value]:
    """One link of a seat change: proofs on its own roster (signers and the elected), on
    the previous link's roster (those of its signers who were there), and the departures
    in between whose members were all on the previous roster."""
    wanted = set(link.signers) | ({link.elects} if link.elects is not None else set())
    new = councils.link_proofs(list(link.members), wanted)
    before = previous.member_ids
    old = councils.link_proofs(list(previous.members), set(link.signers & before))
    gone = [
        (d.event, councils.link_proofs(list(previous.members), set(d.members)))
        for d in departures
        if previous.seq < d.seq < link.seq and d.members <= before
    ]
    return councils.seat_link_value(link.event, new, old, gone)


def council_position(council: bytes, seat: api.SeatWire) -> RosterState:
    """Where the council's log stands by the seats answer: enough to sign the next event on
    (crypto.roster.sign_event reads only the group, seq and head). A wrong hint only gets
    the event refused (stale_head); the council's rule book judges the rest."""
    if seat.council_head is None:
        raise lying("the server's seats answer gives a council with no log")
    return RosterState(
        council, COUNCIL, 0, None, seat.council_seq, seat.council_head, {}, 0, None, None
    )
