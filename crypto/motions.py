"""Motions: roster changes that need several members' signatures.

One mechanism for every such change (splits, elections and recalls of a
spokesperson (crypto/elections.py); expulsions later): a member signs a `motion` naming the group, its kind, its
terms and the roster head they saw; members sign `motion-sign` statements
for it; when the signatures reach the kind's quorum, one roster event
carries the motion and its signatures. This module makes and parses the
statements; who must sign, and whether they have, is crypto/quorum.py's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.network import GROUP_ID_BYTES
from crypto.roster_state import RosterState
from crypto.statements import Statement, get_bytes, get_str, pack, sign_statement

MOTION_KINDS = ("split", "elect", "recall", "link", "expel", "freeze", "unfreeze", "restore", "clear")


@dataclass(frozen=True)
class Motion:
    statement: Statement
    group: bytes
    kind: str
    terms: dict[str, Value]

    @property
    def id(self) -> bytes:
        return self.statement.id


def make_motion(
    key: IdentityKey,
    network: bytes,
    state: RosterState,
    kind: str,
    terms: dict[str, Value],
    time: int,
) -> Motion:
    """Open a motion of `kind` in the group of `state` (opening it is signing it)."""
    statement = sign_statement(
        key,
        "motion",
        network,
        time,
        {"group": state.group, "kind": kind, "terms": terms, "head": state.head},
    )
    return parse_motion(statement)


def make_split_motion(
    key: IdentityKey, network: bytes, state: RosterState, moved: Sequence[bytes], time: int
) -> Motion:
    moved_ids: list[Value] = list(sorted(moved))
    terms: dict[str, Value] = {"moved": moved_ids, "new_group": os.urandom(GROUP_ID_BYTES)}
    return make_motion(key, network, state, "split", terms, time)


def parse_motion(statement: Statement) -> Motion:
    if statement.type != "motion":
        raise RuleViolation("invalid_motion", "not a motion")
    kind = get_str(statement.fields, "kind", 16)
    if kind not in MOTION_KINDS:
        raise RuleViolation("invalid_motion", f"unknown motion kind {kind!r}")
    terms = statement.fields.get("terms")
    if not isinstance(terms, dict):
        raise RuleViolation("invalid_motion", "a motion states its terms")
    get_bytes(statement.fields, "head", 32)
    return Motion(statement, get_bytes(statement.fields, "group", GROUP_ID_BYTES), kind, terms)


def split_terms(motion: Motion) -> tuple[frozenset[bytes], bytes]:
    moved = motion.terms.get("moved")
    if not isinstance(moved, list) or not all(isinstance(m, bytes) and len(m) == 32 for m in moved):
        raise RuleViolation("invalid_motion", "a split names the members who move")
    new_group = motion.terms.get("new_group")
    if not isinstance(new_group, bytes) or len(new_group) != GROUP_ID_BYTES:
        raise RuleViolation("invalid_motion", "a split names the new group")
    if new_group == motion.group:
        raise RuleViolation("invalid_motion", "a split names a new group, not the one it splits")
    as_set = frozenset(m for m in moved if isinstance(m, bytes))
    if len(as_set) != len(moved):
        raise RuleViolation("invalid_motion", "a member is named twice")
    return as_set, new_group


@dataclass(frozen=True)
class ElectionTerms:
    """What an `elect` or `recall` motion says (crypto/elections.py).

    `member` is whom it elects or recalls; `size` and `root` commit to the
    group's roster when it was opened (crypto/rostertree.py); `prev_link`
    is the motion id of the group's last election or recall (None before the first),
    and `level` the group's level: the chain a council follows.
    """

    member: bytes
    size: int
    root: bytes
    prev_link: bytes | None
    level: int


ELECTION_TERMS = {"member", "roster", "prev_link", "level"}


def election_terms(motion: Motion) -> ElectionTerms:
    if motion.kind not in ("elect", "recall"):
        raise RuleViolation("invalid_motion", "not an election or a recall")
    terms = motion.terms
    if set(terms) != ELECTION_TERMS:
        raise RuleViolation(
            "invalid_motion", "an election names a member, the roster and the chain"
        )
    member, roster, prev, level = (terms[k] for k in ("member", "roster", "prev_link", "level"))
    if (
        not isinstance(member, bytes)
        or len(member) != 32
        or not isinstance(roster, list)
        or len(roster) != 2
        or not isinstance(roster[0], int)
        or not isinstance(roster[1], bytes)
        or len(roster[1]) != 32
        or not (prev is None or (isinstance(prev, bytes) and len(prev) == 32))
        or not isinstance(level, int)
    ):
        raise RuleViolation("invalid_motion", "an election's terms are malformed")
    return ElectionTerms(member, roster[0], roster[1], prev, level)


def election_terms_for(state: RosterState, member: bytes, root: bytes) -> dict[str, Value]:
    """The terms of an election or recall of `member` opened in `state` (`root`: its roster tree)."""
    return {
        "member": member,
        "roster": [len(state.members), root],
        "prev_link": state.last_link,
        "level": state.level,
    }


def sign_motion(key: IdentityKey, network: bytes, motion: Motion, time: int) -> Statement:
    return sign_statement(
        key, "motion-sign", network, time, {"motion": motion.id, "group": motion.group}
    )


def split_event_fields(motion: Motion, signatures: Sequence[Statement]) -> dict[str, Value]:
    return {"motion": pack(motion.statement), "signatures": [pack(s) for s in signatures]}
