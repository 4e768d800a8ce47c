"""Tests of client.seats: the seat evidence a client builds from its own verified log.

Each built event is judged by the council's rule book (crypto/councils.py),
as the server and every council member's client judge it.
"""

from __future__ import annotations

import pytest

from client import seats
from client.errors import ClientError
from client.groups import GroupRecord
from crypto import councils
from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.roster import apply, sign_event
from crypto.statements import Statement
from tests.crypto.test_councils import (
    NETWORK,
    RULES,
    A,
    Cell,
    D,
    E,
    F,
    G,
    _create_of,
    bundle,
    tracked,
    two_seats,
)


def log_of(cell: Cell) -> list[Statement]:
    return [_create_of(cell), *cell.events]


def leaves(cell: Cell, who: IdentityKey) -> Statement:
    return cell.post(who, "remove", {"member": who.member_id, "reason": "left"})


def seat_event(cell: Cell, council, change: seats.SeatChange, holder: IdentityKey | None):  # type: ignore[no-untyped-def]
    fields = councils.seat_fields(
        cell.state.group, list(change.links), None if holder is None else bundle(holder)
    )
    return sign_event(A, NETWORK, council, "seat", cell.tick(), fields)


def test_a_recall_and_the_next_election_move_the_seat_in_one_event() -> None:
    _, two, council = two_seats()  # cell two (D, E, F) elected D, who holds its seat
    two.recall(E, E, F)
    two.elect(E, F, F, E)
    found = seats.delegations(log_of(two), RULES)
    assert [link.elects for link in found.links] == [D.member_id, None, E.member_id]
    assert [link.link_id for link in found.links][-1] == two.state.last_link

    (change,) = seats.seat_changes(found, council.seats[two.state.group].link) or []
    assert (len(change.links), change.holder) == (2, E.member_id)
    after = apply(council, seat_event(two, council, change, E), rules=RULES)
    assert set(after.members) == {A.member_id, E.member_id}
    assert after.seats[two.state.group].link == two.state.last_link
    assert seats.seat_changes(found, two.state.last_link) == []  # up to date


def test_a_seat_that_missed_two_elections_catches_up_in_one_event() -> None:
    _, two, council = two_seats()  # D holds cell two's seat
    two.recall(E, E, F)
    two.elect(E, F, F, E)  # E elected: never shown to the council
    two.recall(F, F, D)
    two.elect(F, D, D, F)  # then F
    found = seats.delegations(log_of(two), RULES)
    (change,) = seats.seat_changes(found, council.seats[two.state.group].link) or []
    assert (len(change.links), change.holder) == (4, F.member_id)
    after = apply(council, seat_event(two, council, change, F), rules=RULES)
    assert set(after.members) == {A.member_id, F.member_id}
    assert after.seats[two.state.group].link == two.state.last_link


def test_a_recall_alone_empties_the_seat() -> None:
    _, two, council = two_seats()
    two.recall(E, E, F)
    found = seats.delegations(log_of(two), RULES)
    (change,) = seats.seat_changes(found, council.seats[two.state.group].link) or []
    assert change.holder is None
    after = apply(council, seat_event(two, council, change, None), rules=RULES)
    assert set(after.members) == {A.member_id}
    assert after.seats[two.state.group].holder is None


def council_on(cell: Cell, holder: IdentityKey):  # type: ignore[no-untyped-def]
    """A council founded on the cell's last election, of `holder`: its create event and state."""
    link = seats.my_delegation(seats.delegations(log_of(cell), RULES), cell.state, holder.member_id)
    return councils.make_council(
        holder, NETWORK, cell.tick(), 1, bundle(holder), cell.state.group,
        seats.first_seat(link, bundle(holder)), rules=RULES,
    )  # fmt: skip


def test_members_who_left_since_the_last_election_are_shown_as_departures() -> None:
    one = tracked(A, D, E, F, G, name="five")
    one.elect(D, E, E, F, G)
    _, council = council_on(one, D)
    # F and G leave; D and E recall D: two of the five the election counted,
    # a quorum only of the three shown to have stayed.
    leaves(one, F)
    leaves(one, G)
    one.recall(D, D, E)
    found = seats.delegations(log_of(one), RULES)
    assert [set(d.members) for d in found.departures] == [{F.member_id}, {G.member_id}]
    (change,) = seats.seat_changes(found, council.seats[one.state.group].link) or []
    (link,) = change.links
    assert isinstance(link["departures"], list) and len(link["departures"]) == 2
    after = apply(council, seat_event(one, council, change, None), rules=RULES)
    assert after.seats[one.state.group].holder is None

    # Without the departures, too few of the election's members signed.
    bare = councils.seat_fields(one.state.group, [dict(link, departures=[])], None)
    with pytest.raises(RuleViolation) as refused:
        apply(council, sign_event(A, NETWORK, council, "seat", one.tick(), bare), rules=RULES)
    assert refused.value.code == "quorum_not_reached"


def test_a_seat_anchored_on_an_election_the_log_lacks_can_not_be_followed() -> None:
    _, two, _ = two_seats()
    found = seats.delegations(log_of(two), RULES)
    assert seats.seat_changes(found, bytes(32)) is None


def test_only_the_member_the_last_election_made_spokesperson_has_a_delegation() -> None:
    _, two, _ = two_seats()
    found = seats.delegations(log_of(two), RULES)
    assert seats.my_delegation(found, two.state, D.member_id).elects == D.member_id
    with pytest.raises(ClientError) as refused:
        seats.my_delegation(found, two.state, E.member_id)
    assert refused.value.code == "not_spokesperson"
    two.recall(E, E, F)
    after = seats.delegations(log_of(two), RULES)
    with pytest.raises(ClientError):
        seats.my_delegation(after, two.state, D.member_id)


def test_a_council_record_says_its_level_and_a_cell_record_none() -> None:
    one = tracked(A, D, E, name="levels")
    one.elect(D, E, E, D)
    create, council = council_on(one, D)
    assert seats.council_level(GroupRecord(council.group, events=[create])) == 1
    assert seats.council_level(GroupRecord(one.state.group, events=log_of(one))) is None
    assert seats.council_level(GroupRecord(council.group)) is None
    assert seats.council_level(None) is None
