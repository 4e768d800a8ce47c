"""Alerts: urgent messages with a scope, confirmed, acknowledged and retracted by signed messages.

An alert is a group message whose sealed content also carries
{"alert": {"id": 16 random bytes, "scope": "group" | "up" | "network"}};
its raiser is the message's signed sender. Other sealed records name it by id:

    {"alert_confirm": {"id"}}   a second member of the raiser's group confirms it
    {"alert_retract": {"id"}}   the raiser takes it back
    {"alert_ack": {"id"}}       a member has seen it
    {"alert_count": {"id", "reached", "acked"}}   a spokesperson's count for the group
                                                  below it (relayed up; counts, never names)

The rules this module keeps, applied by every client to the messages of one
group it verified: a wide alert (scope up or network) leaves its group only
once a member other than its raiser confirmed it (two-person rule); a member
raises at most the policy's `wide_alerts_per_day` wide alerts in any 24
hours, and a client refuses to relay or show as wide any beyond that; only
the raiser retracts; a member's acknowledgement counts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crypto.encoding import Value
from crypto.errors import RuleViolation

ALERT_ID_BYTES = 16
SCOPES = ("group", "up", "network")
WIDE = ("up", "network")
DAY = 86400
KINDS = ("alert", "alert_confirm", "alert_retract", "alert_ack", "alert_count")


@dataclass(frozen=True)
class AlertRecord:
    """One alert record a message carries: its kind, the alert it names, and what it says."""

    kind: str
    alert: bytes
    scope: str | None = None  # an alert's
    reached: int | None = None  # a count's
    acked: int | None = None


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
        reached, acked = value.get("reached"), value.get("acked")
        if (
            set(value) != {"id", "reached", "acked"}
            or not isinstance(reached, int)
            or not isinstance(acked, int)
            or isinstance(reached, bool)
            or isinstance(acked, bool)
            or not 0 <= acked <= reached <= 1_000_000
        ):
            raise RuleViolation("invalid_alert", "a count has 0 <= acknowledged <= reached")
        return AlertRecord(kind, alert, reached=reached, acked=acked)
    if set(value) != {"id"}:
        raise RuleViolation("invalid_alert", "an alert record names only the alert")
    return AlertRecord(kind, alert)


def record_value(record: AlertRecord) -> dict[str, Value]:
    value: dict[str, Value] = {"id": record.alert}
    if record.kind == "alert":
        value["scope"] = record.scope
    elif record.kind == "alert_count":
        value["reached"], value["acked"] = record.reached, record.acked
    return value


def within_daily_limit(raised_at: Iterable[int], at: int, limit: int) -> bool:
    """Whether one more wide alert at `at` keeps a member within `limit` per 24 hours."""
    return sum(1 for t in raised_at if at - DAY < t <= at) < limit
