"""Tests of the revocation chain (crypto.chains.verify_revocation_list, RevocationList).

The list is one hash chain per network: seq 0, 1, 2, … each naming the one
before it, each by a steward, one subject each. A list that breaks any of
that is refused; a list compared with a head someone has seen is "holds",
"missing" (shorter: withheld or rolled back) or "forked".
"""

from __future__ import annotations

import pytest

from crypto.chains import (
    NO_PREVIOUS,
    Revocation,
    RevocationHead,
    make_revocation,
    parse_revocation,
    verify_revocation_list,
)
from crypto.errors import ChainError, InvalidStatement
from crypto.network import DAY
from crypto.statements import Statement, sign_statement
from tests.crypto.helpers import T0, World, reverify

T1 = T0 + DAY


@pytest.fixture
def world() -> World:
    w = World(extra_stewards=("S",))
    for name in ("A", "B", "C"):
        w.admit("F", name, T1)
    return w


def chain(world: World, *names: str, steward: str = "F") -> list[Revocation]:
    """A well-formed chain revoking `names` in order."""
    made: list[Revocation] = []
    prev = NO_PREVIOUS
    for seq, name in enumerate(names):
        revocation = make_revocation(
            world.members[steward].key,
            world.network,
            world.members[name].id,
            T1 + 10 + seq,
            seq=seq,
            prev=prev,
        )
        made.append(revocation)
        prev = revocation.statement.id
    return made


def statements(revocations: list[Revocation]) -> list[Statement]:
    return [r.statement for r in revocations]


def test_a_chain_verifies_and_names_its_head_and_the_revoked(world: World) -> None:
    made = chain(world, "A", "B")
    listed = verify_revocation_list(world.genesis, statements(made))
    assert listed.head == RevocationHead(1, made[1].statement.id)
    assert listed.revoked == {world.members["A"].id: T1 + 10, world.members["B"].id: T1 + 11}
    assert listed.next_position() == (2, made[1].statement.id)
    assert set(listed.by_subject) == {world.members["A"].id, world.members["B"].id}


def test_the_empty_list_has_no_head(world: World) -> None:
    listed = verify_revocation_list(world.genesis, [])
    assert listed.head is None and listed.revoked == {}
    assert listed.next_position() == (0, NO_PREVIOUS)


def test_fields_survive_the_wire(world: World) -> None:
    made = chain(world, "A", "B")[1]
    again = parse_revocation(reverify(made.statement, "revocation", world.network), world.genesis)
    assert (again.seq, again.prev, again.subject) == (1, made.prev, world.members["B"].id)


def test_stewards_may_take_turns(world: World) -> None:
    first = chain(world, "A")[0]
    second = make_revocation(
        world.members["S"].key,
        world.network,
        world.members["B"].id,
        T1 + 20,
        seq=1,
        prev=first.statement.id,
    )
    listed = verify_revocation_list(world.genesis, [first.statement, second.statement])
    assert listed.head is not None and listed.head.seq == 1


# Negative cases: every broken rule is refused.


def test_a_gap_is_refused(world: World) -> None:
    made = chain(world, "A", "B", "C")
    with pytest.raises(ChainError, match="gap"):
        verify_revocation_list(world.genesis, statements([made[0], made[2]]))


def test_a_list_not_starting_at_zero_is_refused(world: World) -> None:
    made = chain(world, "A", "B")
    with pytest.raises(ChainError, match="gap"):
        verify_revocation_list(world.genesis, statements(made[1:]))


def test_a_replayed_revocation_is_refused(world: World) -> None:
    made = chain(world, "A", "B")
    with pytest.raises(ChainError, match="gap or a repeat"):
        verify_revocation_list(world.genesis, statements([made[0], made[0], made[1]]))


def test_a_wrong_prev_is_refused(world: World) -> None:
    first = chain(world, "A")[0]
    for prev in (NO_PREVIOUS, bytes(31) + b"\x01"):
        second = make_revocation(
            world.members["F"].key, world.network, world.members["B"].id, T1, seq=1, prev=prev
        )
        with pytest.raises(ChainError, match="does not follow"):
            verify_revocation_list(world.genesis, [first.statement, second.statement])


def test_a_first_revocation_naming_a_prev_is_refused(world: World) -> None:
    first = make_revocation(
        world.members["F"].key, world.network, world.members["A"].id, T1, prev=b"\x01" * 32
    )
    with pytest.raises(ChainError, match="does not follow"):
        verify_revocation_list(world.genesis, [first.statement])


def test_a_fork_is_refused_when_both_branches_are_shown(world: World) -> None:
    first = chain(world, "A")[0]
    branches = [
        make_revocation(
            world.members["F"].key,
            world.network,
            world.members[name].id,
            T1,
            seq=1,
            prev=first.statement.id,
        )
        for name in ("B", "C")
    ]
    with pytest.raises(ChainError, match="gap or a repeat"):
        verify_revocation_list(world.genesis, statements([first, *branches]))


def test_a_non_steward_revocation_is_refused(world: World) -> None:
    made = make_revocation(world.members["A"].key, world.network, world.members["B"].id, T1)
    with pytest.raises(ChainError, match="steward"):
        verify_revocation_list(world.genesis, [made.statement])


def test_revoking_the_same_member_twice_is_refused(world: World) -> None:
    made = chain(world, "A", "B")
    again = make_revocation(
        world.members["S"].key,
        world.network,
        world.members["A"].id,
        T1,
        seq=2,
        prev=made[1].statement.id,
    )
    with pytest.raises(ChainError, match="already revoked"):
        verify_revocation_list(world.genesis, statements([*made, again]))


def test_a_revocation_without_its_position_is_refused(world: World) -> None:
    steward = world.members["F"].key
    subject = world.members["A"].id
    for fields in (
        {"subject": subject},
        {"subject": subject, "seq": 0},
        {"subject": subject, "prev": NO_PREVIOUS},
        {"subject": subject, "seq": -1, "prev": NO_PREVIOUS},
        {"subject": subject, "seq": 0, "prev": bytes(31)},
        {"subject": subject, "seq": 0, "prev": NO_PREVIOUS, "extra": 1},
    ):
        statement = sign_statement(steward, "revocation", world.network, T1, fields)  # type: ignore[arg-type]
        with pytest.raises(InvalidStatement):
            verify_revocation_list(world.genesis, [statement])


# Comparing a list with a head someone has seen.


def test_a_list_holds_every_head_along_it(world: World) -> None:
    made = chain(world, "A", "B", "C")
    listed = verify_revocation_list(world.genesis, statements(made))
    for seq, revocation in enumerate(made):
        assert listed.check(RevocationHead(seq, revocation.statement.id)) == "holds"
    assert listed.check_known([r.statement.id for r in made[:2]]) == "holds"
    assert listed.check_known([]) == "holds"


def test_a_shorter_list_misses_a_head_seen_elsewhere(world: World) -> None:
    made = chain(world, "A", "B")
    shorter = verify_revocation_list(world.genesis, statements(made[:1]))
    assert shorter.check(RevocationHead(1, made[1].statement.id)) == "missing"
    assert shorter.check_known([r.statement.id for r in made]) == "missing"
    assert (
        verify_revocation_list(world.genesis, []).check(RevocationHead(0, made[0].statement.id))
        == "missing"
    )


def test_another_revocation_at_the_same_seq_is_a_fork(world: World) -> None:
    ours = chain(world, "A", "B")
    theirs = chain(world, "A", "C")
    listed = verify_revocation_list(world.genesis, statements(theirs))
    assert listed.check(RevocationHead(1, ours[1].statement.id)) == "forked"
    assert listed.check_known([r.statement.id for r in ours]) == "forked"
    other_first = chain(world, "C")
    assert listed.check_known([other_first[0].statement.id]) == "forked"


def test_a_head_value_is_checked_for_shape() -> None:
    good = RevocationHead(3, b"\x07" * 32)
    assert RevocationHead.from_value(good.to_value()) == good
    for bad in (
        None,
        [],
        [1],
        [-1, b"\x00" * 32],
        [True, b"\x00" * 32],
        [0, b"\x00" * 31],
        [0, "x"],
    ):
        with pytest.raises(InvalidStatement):
            RevocationHead.from_value(bad)  # type: ignore[arg-type]
