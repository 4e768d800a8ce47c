"""Motions: roster changes that need several members' signatures.

One mechanism for every such change (a split now; elections, recalls and
expulsions later): a member signs a `motion` naming the group, its kind, its
terms and the roster head they saw; members sign `motion-sign` statements
for it; when the signatures reach the kind's quorum, one roster event
carries the motion and its signatures. The rule this module keeps: the
quorum is computed here, from the roster state, and nowhere else.

Quorum by kind:
- `split`: every member who moves to the new cell signs (no one is moved
  without consent); at least one member stays and at least one moves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.keys import IdentityKey
from crypto.network import GROUP_ID_BYTES
from crypto.roster import RosterState
from crypto.statements import Statement, get_bytes, get_str, pack, sign_statement, unpack

MOTION_KINDS = ("split",)


@dataclass(frozen=True)
class Motion:
    statement: Statement
    group: bytes
    kind: str
    terms: dict[str, Value]

    @property
    def id(self) -> bytes:
        return self.statement.id


def make_split_motion(
    key: IdentityKey, network: bytes, state: RosterState, moved: Sequence[bytes], time: int
) -> Motion:
    moved_ids: list[Value] = list(sorted(moved))
    terms: dict[str, Value] = {"moved": moved_ids, "new_group": os.urandom(GROUP_ID_BYTES)}
    statement = sign_statement(
        key,
        "motion",
        network,
        time,
        {"group": state.group, "kind": "split", "terms": terms, "head": state.head},
    )
    return parse_motion(statement)


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
    as_set = frozenset(m for m in moved if isinstance(m, bytes))
    if len(as_set) != len(moved):
        raise RuleViolation("invalid_motion", "a member is named twice")
    return as_set, new_group


def sign_motion(key: IdentityKey, network: bytes, motion: Motion, time: int) -> Statement:
    return sign_statement(
        key, "motion-sign", network, time, {"motion": motion.id, "group": motion.group}
    )


def required_signers(state: RosterState, motion: Motion) -> frozenset[bytes]:
    """Who must sign before the motion may take effect."""
    if motion.group != state.group:
        raise RuleViolation("wrong_group", "this motion is for another group")
    moved, _ = split_terms(motion)
    if not moved or not moved < frozenset(state.members):
        raise RuleViolation(
            "invalid_motion", "a split moves some, but not all, current members of the group"
        )
    return moved


def valid_signers(
    motion: Motion, signatures: Sequence[Statement], state: RosterState
) -> frozenset[bytes]:
    """The current members whose signatures on this motion verify."""
    signers = set()
    for signature in signatures:
        if (
            signature.type != "motion-sign"
            or get_bytes(signature.fields, "motion", 32) != motion.id
        ):
            raise RuleViolation("invalid_motion", "a signature is for another motion")
        if signature.author not in state.members:
            raise RuleViolation("not_in_group", "a signer is not a member of the group")
        signers.add(signature.author)
    if motion.statement.author in state.members:
        signers.add(motion.statement.author)  # opening a motion is signing it
    return frozenset(signers)


def split_event_fields(motion: Motion, signatures: Sequence[Statement]) -> dict[str, Value]:
    return {"motion": pack(motion.statement), "signatures": [pack(s) for s in signatures]}


def check_split(
    state: RosterState, event: Statement, network: bytes
) -> tuple[bytes, frozenset[bytes]]:
    """Check a `split` roster event; return the motion's id and the members it moves."""
    motion = parse_motion(unpack(event.fields.get("motion"), "motion", network))
    raw = event.fields.get("signatures")
    if not isinstance(raw, list):
        raise RuleViolation("invalid_motion", "a split carries its signatures")
    signatures = [unpack(s, "motion-sign", network) for s in raw]
    needed = required_signers(state, motion)
    missing = needed - valid_signers(motion, signatures, state)
    if missing:
        raise RuleViolation("quorum_not_reached", f"{len(missing)} member(s) still have to sign")
    moved, _ = split_terms(motion)
    return motion.id, moved
