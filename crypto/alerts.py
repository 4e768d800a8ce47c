"""Alerts: urgent messages with a scope, confirmed, acknowledged and retracted by signed messages.

An alert is a group message whose sealed content also carries
{"alert": {"id": 16 random bytes, "scope": "group" | "up" | "network"}};
its raiser is the message's signed sender. Other sealed records name it by id:

    {"alert_confirm": {"id"}}   a second member of the raiser's group confirms it
    {"alert_retract": {"id"}}   the raiser takes it back
    {"alert_ack": {"id"}}       a member has seen it
    {"alert_count": {"id", "reached", "acked", "dir"}}   how many members the alert
                         reached and how many acknowledged it on one side of a link
                         (counts, never names); see `total` below

The rules this module keeps, applied by every client to the messages of one
group it verified: a wide alert (scope up or network) leaves its group only
once a member other than its raiser confirmed it (two-person rule); a member
raises at most the policy's `wide_alerts_per_day` wide alerts in any 24
hours, and a client refuses to relay or show as wide any beyond that; only
the raiser retracts; a member's acknowledgement counts once.

Counts flow back along the path the alert took, toward the group where it
was raised. The holder of a link (a group's seat in its council) sends
across it the total of the side away from the alert's origin: `dir` "up"
into the council (the group below and everything beyond it) when the alert
came down to that group, and "down" into the group (the council and
everything beyond it) when the alert came up from it. A reader takes a
count only from whoever holds that link: "up" only in a council, from a
seat holder; "down" only from the group's own spokesperson; the latest of
each (sender, dir) stands. So the group where the alert was raised totals
the whole tree ("38 of 45 reached, 31 acknowledged"), and every group on
the way totals itself and what lies beyond it. A
spokesperson can still lie about their side's numbers: a count is their
word, signed, never a proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crypto.encoding import Value
from crypto.errors import RuleViolation

ALERT_ID_BYTES = 16
SCOPES = ("group", "up", "network")
WIDE = ("up", "network")
DAY = 86400
KINDS = ("alert", "alert_confirm", "alert_retract", "alert_ack", "alert_count")
DIRECTIONS = ("up", "down")


@dataclass(frozen=True)
class AlertRecord:
    """One alert record a message carries: its kind, the alert it names, and what it says."""

    kind: str
    alert: bytes
    scope: str | None = None  # an alert's
    reached: int | None = None  # a count's
    acked: int | None = None
    dir: str | None = None


def parse_alert_record(kind: str, value: Value) -> AlertRecord:
    """A sealed alert record of `kind` (one of KINDS); RuleViolation if malformed."""
    if kind not in KINDS or not isinstance(value, dict):
        raise RuleViolation("invalid_alert", "an alert record is malformed")
    alert = value.get("id")
    if not isinstance(alert, bytes) or len(alert) != ALERT_ID_BYTES:
        raise RuleViolation("invalid_alert", "an alert is named by its 16-byte id")
    if kind == "alert":
        scope = value.get("scope")
        if set(value) != {"id", "scope"} or scope not in SCOPES or not isinstance(scope, str):
            raise RuleViolation("invalid_alert", "an alert has an id and a scope")
        return AlertRecord(kind, alert, scope=scope)
    if kind == "alert_count":
        reached, acked, direction = value.get("reached"), value.get("acked"), value.get("dir")
        if (
            set(value) != {"id", "reached", "acked", "dir"}
            or direction not in DIRECTIONS
            or not isinstance(direction, str)
            or not isinstance(reached, int)
            or not isinstance(acked, int)
            or isinstance(reached, bool)
            or isinstance(acked, bool)
            or not 0 <= acked <= reached <= 1_000_000
        ):
            raise RuleViolation("invalid_alert", "a count has 0 <= acknowledged <= reached")
        return AlertRecord(kind, alert, reached=reached, acked=acked, dir=direction)
    if set(value) != {"id"}:
        raise RuleViolation("invalid_alert", "an alert record names only the alert")
    return AlertRecord(kind, alert)


def record_value(record: AlertRecord) -> dict[str, Value]:
    value: dict[str, Value] = {"id": record.alert}
    if record.kind == "alert":
        value["scope"] = record.scope
    elif record.kind == "alert_count":
        value["reached"], value["acked"] = record.reached, record.acked
        value["dir"] = record.dir
    return value


def within_daily_limit(raised_at: Iterable[int], at: int, limit: int) -> bool:
    """Whether one more wide alert at `at` keeps a member within `limit` per 24 hours."""
    return sum(1 for t in raised_at if at - DAY < t <= at) < limit


@dataclass(frozen=True)
class Count:
    """How many members an alert reached and how many acknowledged it."""

    reached: int
    acked: int


@dataclass(frozen=True)
class CountRecord:
    """One `alert_count` message of a group, as its reader opened it."""

    sender: str
    dir: str
    count: Count


def accepted_counts(
    counts: Iterable[CountRecord],
    *,
    council: bool,
    seat_holders: Iterable[str],
    spokesperson: str | None,
) -> dict[tuple[str, str], Count]:
    """The counts a group's reader takes, by (sender, dir), the latest of each standing.

    `counts` in the group's order. "up" only in a council, from one of its seat
    holders; "down" only from the group's spokesperson. Anything else is one
    member's claim about numbers they do not hold, and counts for nothing.
    """
    holders = set(seat_holders)
    taken: dict[tuple[str, str], Count] = {}
    for record in counts:
        if record.dir == "up" and council and record.sender in holders:
            taken[(record.sender, "up")] = record.count
        elif record.dir == "down" and spokesperson is not None and record.sender == spokesperson:
            taken[(record.sender, "down")] = record.count
    return taken


def total(
    *,
    council: bool,
    members: Iterable[str],
    ackers: Iterable[str],
    counts: Mapping[tuple[str, str], Count],
    came_up_from: str | None = None,
    exclude: tuple[str, str] | None = None,
) -> Count:
    """An alert's reach as one group sees it: its own members plus the counts it took.

    A cell's own are its members. A council's members are counted in the
    groups below them, so its own are only the seat holders whose group is
    in no count yet: neither one who sent an "up" count nor `came_up_from`,
    the holder who relayed the alert up into it. `exclude` leaves out the
    count that came across the link a total is about to be sent over.
    """
    own = set(members)
    if council:
        own -= {sender for sender, direction in counts if direction == "up"}
        if came_up_from is not None:
            own.discard(came_up_from)
    reached = len(own)
    acked = len(own & set(ackers))
    for key, count in counts.items():
        if key != exclude:
            reached += count.reached
            acked += count.acked
    return Count(reached, acked)
