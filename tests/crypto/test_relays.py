"""Tests of crypto.relays: who may relay into a group, and what a provenance must hold."""

from __future__ import annotations

import pytest

from crypto.errors import RuleViolation
from crypto.relays import Provenance, check_relayer, original_hash, parse_provenance
from tests.crypto.test_councils import A, B, C, D, E, two_seats

GOOD = Provenance("a cell", "up", bytes(32), 1_700_000_000)


def test_a_provenance_round_trips_and_bad_ones_are_refused() -> None:
    assert parse_provenance(GOOD.to_value()) == GOOD
    value = GOOD.to_value()
    for broken in (
        {**value, "alias": ""},
        {**value, "alias": "x" * 65},
        {**value, "direction": "sideways"},
        {**value, "original": bytes(31)},
        {**value, "sent_at": -1},
        {**value, "sent_at": True},
        {**value, "sender": b"the original writer"},  # never carried
        {k: v for k, v in value.items() if k != "alias"},
        [value],
    ):
        with pytest.raises(RuleViolation):
            parse_provenance(broken)  # type: ignore[arg-type]


def test_the_original_is_named_by_its_group_and_id() -> None:
    one = original_hash(bytes(16), bytes(32))
    assert one != original_hash(b"\x01" + bytes(15), bytes(32))
    assert one != original_hash(bytes(16), b"\x01" + bytes(31))
    assert len(one) == 32


def test_up_into_a_council_only_from_a_seat_holder() -> None:
    one, two, council = two_seats()  # seats held by A (cell one) and D (cell two)
    check_relayer(council, A.member_id, GOOD)
    check_relayer(council, D.member_id, GOOD)
    for outsider in (B, C, E):
        with pytest.raises(RuleViolation):
            check_relayer(council, outsider.member_id, GOOD)
    # "Up" into a cell is no relay at all.
    with pytest.raises(RuleViolation):
        check_relayer(one.state, A.member_id, GOOD)


def test_down_into_a_group_only_from_its_spokesperson() -> None:
    one, two, _ = two_seats()
    down = Provenance("the council", "down", bytes(32), 1)
    check_relayer(one.state, A.member_id, down)  # A is cell one's spokesperson
    check_relayer(two.state, D.member_id, down)
    for other in (B, C):
        with pytest.raises(RuleViolation):
            check_relayer(one.state, other.member_id, down)
    recalled = one.recall(B, B, C)  # A recalled: no longer relays down
    assert recalled.fields["op"] == "recall"
    with pytest.raises(RuleViolation):
        check_relayer(one.state, A.member_id, down)
