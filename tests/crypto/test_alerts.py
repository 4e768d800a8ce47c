"""crypto/alerts.py: the records an alert travels with, and how reach is totalled."""

from __future__ import annotations

import pytest

from crypto import alerts
from crypto.alerts import Count, CountRecord
from crypto.errors import RuleViolation

ALERT = bytes(range(16))


def count_value(**changes: object) -> dict[str, object]:
    return {"id": ALERT, "reached": 9, "acked": 4, "dir": "up", **changes}


def test_each_kind_parses_and_round_trips() -> None:
    for kind, value in [
        ("alert", {"id": ALERT, "scope": "network"}),
        ("alert_confirm", {"id": ALERT}),
        ("alert_retract", {"id": ALERT}),
        ("alert_ack", {"id": ALERT}),
        ("alert_count", count_value()),
        ("alert_count", count_value(dir="down", reached=0, acked=0)),
    ]:
        record = alerts.parse_alert_record(kind, value)  # type: ignore[arg-type]
        assert alerts.record_value(record) == value
        assert record.kind == kind and record.alert == ALERT


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("alert", {"id": ALERT}),  # no scope
        ("alert", {"id": ALERT, "scope": "everyone"}),
        ("alert", {"id": ALERT, "scope": "group", "text": "extra field"}),
        ("alert", {"id": ALERT[:15], "scope": "group"}),
        ("alert_ack", {"id": ALERT, "by": "someone"}),
        ("alert_ack", {"id": "not bytes"}),
        ("alert_ack", [ALERT]),
        ("alert_pin", {"id": ALERT}),  # no such kind
        ("alert_count", count_value(dir="sideways")),
        ("alert_count", count_value(dir=None)),
        ("alert_count", {"id": ALERT, "reached": 9, "acked": 4}),  # no direction
        ("alert_count", count_value(acked=10)),  # more acknowledged than reached
        ("alert_count", count_value(reached=-1, acked=-1)),
        ("alert_count", count_value(reached=True)),
        ("alert_count", count_value(reached=2_000_000)),
        ("alert_count", count_value(names=["a"])),
    ],
)
def test_malformed_records_are_refused(kind: str, value: object) -> None:
    with pytest.raises(RuleViolation) as caught:
        alerts.parse_alert_record(kind, value)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_alert"


def test_the_daily_limit_counts_the_last_24_hours_only() -> None:
    day = alerts.DAY
    assert alerts.within_daily_limit([], 1000, 1)
    assert not alerts.within_daily_limit([1000], 1000, 1)
    assert alerts.within_daily_limit([1000 - day], 1000, 1)  # exactly a day ago: gone
    assert not alerts.within_daily_limit([1000 - day + 1, 999], 1000, 2)
    assert not alerts.within_daily_limit([5], 1000, 0)  # a limit of 0 allows none


def test_counts_are_taken_only_from_whoever_holds_the_link() -> None:
    sent = [
        CountRecord("seat-b", "up", Count(5, 1)),
        CountRecord("seat-b", "up", Count(5, 3)),  # the latest of each stands
        CountRecord("informant", "up", Count(500, 500)),  # holds no seat
        CountRecord("seat-c", "down", Count(40, 40)),  # not the spokesperson
        CountRecord("speaker", "down", Count(7, 2)),
    ]
    taken = alerts.accepted_counts(
        sent, council=True, seat_holders=["seat-b", "seat-c"], spokesperson="speaker"
    )
    assert taken == {("seat-b", "up"): Count(5, 3), ("speaker", "down"): Count(7, 2)}
    # In a cell nobody sends "up": a cell has no seats below it.
    in_cell = alerts.accepted_counts(
        sent, council=False, seat_holders=["seat-b"], spokesperson="speaker"
    )
    assert in_cell == {("speaker", "down"): Count(7, 2)}
    assert alerts.accepted_counts(sent, council=False, seat_holders=[], spokesperson=None) == {}


def test_a_cell_totals_its_members_and_what_came_down() -> None:
    counts = {("speaker", "down"): Count(20, 11)}
    seen = alerts.total(
        council=False, members=["a", "b", "speaker"], ackers=["a", "stranger"], counts=counts
    )
    assert seen == Count(23, 12)  # a stranger's acknowledgement counts for nothing
    # Sent up over the link it came down: that link's own count is left out.
    sent_up = alerts.total(
        council=False,
        members=["a", "b", "speaker"],
        ackers=["a"],
        counts=counts,
        exclude=("speaker", "down"),
    )
    assert sent_up == Count(3, 1)


def test_a_council_counts_a_seat_holder_once() -> None:
    # Seat holders a, b, c; a relayed the alert up from cell A, b's cell B counted itself;
    # c's cell has sent nothing yet, so c is counted here, as one.
    counts = {("b", "up"): Count(10, 6), ("a", "down"): Count(30, 2)}
    seen = alerts.total(
        council=True, members=["a", "b", "c"], ackers=["c"], counts=counts, came_up_from="a"
    )
    assert seen == Count(1 + 10 + 30, 1 + 6 + 2)
    # What a sends back down into cell A: everything but what came up from it.
    assert alerts.total(
        council=True,
        members=["a", "b", "c"],
        ackers=["c"],
        counts=counts,
        came_up_from="a",
        exclude=("a", "up"),
    ) == Count(41, 9)
