"""End to end: alerts in a cell through `spokes`: raise, confirm, acknowledge, retract, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_cells import cell_of_three, member_id
from tests.e2e.test_member_flow import run


def alert_of(home: Path, alert_id: str) -> dict[str, Any]:
    (found,) = [a for a in run(home, "alerts")["alerts"] if a["alert_id"] == alert_id]
    return found


def test_an_alert_in_a_cell_is_acknowledged_confirmed_and_retracted(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    founder, b, c = cell_of_three(tmp_path, served[0])
    raised = run(founder, "alert", "cell", "police at the north entrance", "--scope", "up")
    assert set(raised) == {"alert_id", "group", "seq"}
    alert_id = raised["alert_id"]
    seen = alert_of(b, alert_id)
    assert (seen["text"], seen["scope"], seen["confirmed"]) == (
        "police at the north entrance",
        "up",
        False,
    )
    assert (seen["reached"], seen["acknowledged"], seen["raised_by"]) == (3, 0, member_id(founder))
    # The raiser can't confirm their own; a second member can, once.
    run(founder, "alert", "confirm", alert_id, expect="not_confirmable")
    run(b, "alert", "confirm", alert_id)
    run(b, "alert", "confirm", alert_id, expect="already_confirmed")
    run(b, "ack", alert_id)
    run(c, "ack", alert_id)
    run(c, "ack", alert_id, expect="already_acknowledged")
    for home in (founder, b, c):
        found = alert_of(home, alert_id)
        assert (found["confirmed"], found["acknowledged"], found["retracted"]) == (True, 2, False)
    # Only the raiser retracts; everyone sees it.
    run(b, "alert", "retract", alert_id, expect="not_raiser")
    run(founder, "alert", "retract", alert_id)
    assert all(alert_of(home, alert_id)["retracted"] for home in (founder, b, c))
    run(b, "ack", "nonsense", expect="invalid_alert_id")
    # read and watch show the records, ids as the text commands take.
    shown = [m["alert"] for m in run(c, "read", "cell", "--since", "0")["messages"]]
    assert {"kind": "alert", "id": alert_id, "scope": "up"} in shown
    assert {"kind": "alert_ack", "id": alert_id} in shown


def test_wide_alerts_are_limited_per_member_and_day(
    tmp_path: Path, served: tuple[str, str]
) -> None:
    founder, b, _ = cell_of_three(tmp_path, served[0])
    for n in range(3):  # the policy's default: 3 wide alerts a day
        run(founder, "alert", "cell", f"wide {n}", "--scope", "network")
    run(founder, "alert", "cell", "one too many", "--scope", "network", expect="alert_limit")
    run(founder, "alert", "cell", "for the cell only")  # scope group is not limited
    run(b, "alert", "cell", "another member's own", "--scope", "up")
    texts = [a["text"] for a in run(b, "alerts")["alerts"]]
    assert "one too many" not in texts and "for the cell only" in texts
    assert not any(a["over_limit"] for a in run(b, "alerts")["alerts"])
