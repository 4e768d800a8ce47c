"""Cells made by splits: a split-made cell is believed only through its split.

A create event with an `origin` is only a claim (anyone can sign one); the
rule this module keeps: the cell is the one that split event made, as the
log of the cell it split from shows it, with exactly the moved members, the
keys and invite lines the old roster had for them, and its kind and level.
Server and client both run it (crypto/roster.py holds the per-event rules).
"""

from __future__ import annotations

from collections.abc import Sequence

from crypto.errors import RuleViolation
from crypto.motions import parse_motion, split_terms
from crypto.roster import GroupCreation, GroupRules, RosterState, apply
from crypto.statements import Statement, unpack


def check_split_creation(
    before: RosterState, split: Statement, creation: GroupCreation, *, rules: GroupRules
) -> None:
    """Raise RuleViolation unless `creation` founds exactly the cell `split` made.

    `before` is the splitting group's state just before the `split` event
    (which must extend it). The new cell holds the moved members, with the
    keys the old roster had for them, is of the same kind and level, names
    the split event as its origin and the motion's new group as its id.
    """
    after = apply(before, split, rules=rules)
    if split.fields.get("op") != "split":
        raise RuleViolation("invalid_origin", "the origin of a cell must be a split event")
    network = split.network or b""
    moved, new_group = split_terms(
        parse_motion(unpack(split.fields.get("motion"), "motion", network))
    )
    state = creation.state
    if (
        creation.statement.fields.get("origin") != split.id
        or state.group != new_group
        or set(state.members) != set(moved)
        or any(state.members[m] != before.members[m] for m in moved)
        or any(state.lines.get(m) != before.lines.get(m) for m in moved)
        # Probation carries over; a later `since` only lengthens it.
        or any(state.since[m] < before.since.get(m, 0) for m in moved)
        or creation.statement.author not in moved
        or (state.kind, state.level, state.parent) != (before.kind, before.level, before.parent)
        or after.seq != split.fields.get("seq")
    ):
        raise RuleViolation(
            "invalid_origin",
            "the new cell is not the split's: its id, members, keys or kind differ",
        )


def find_split_creation(
    log: Sequence[Statement], creation: GroupCreation, *, rules: GroupRules
) -> RosterState:
    """Check `creation` against the split event in `log` it names; return the log's state."""
    origin = creation.statement.fields.get("origin")
    state: RosterState | None = None
    found = False
    for event in log:
        if state is not None and event.id == origin:
            check_split_creation(state, event, creation, rules=rules)
            found = True
        state = apply(state, event, rules=rules)
    if state is None or not found:
        raise RuleViolation("invalid_origin", "no split in the cell's log created this cell")
    return state
