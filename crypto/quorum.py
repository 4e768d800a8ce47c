"""Quorum and signer rules: who must sign a change, and how many vouches admit.

The rule this module keeps: every count of signatures or vouches that a
roster change needs is computed here, from the roster state (or the
policy), and nowhere else; the roster rule book (roster.py), the vetting
rules (vetting.py), the server and the client all ask it.

Quorum by motion kind:
- `split`: every member who moves to the new cell signs (no one is moved
  without consent); at least one member stays and at least one moves, and
  both cells keep at least the policy's `cell_min` members.

- `elect`, `recall`: the policy's `election_quorum` (default a strict
  majority) of the group's current members (`quorum_of`).

Vouches for an admission (the inviter's certificate counts as one): the
policy's count; only a founding cell smaller than it needs every member
instead. A cell made by a split is held to the full count however small.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crypto.errors import RuleViolation
from crypto.motions import Motion, parse_motion, split_terms
from crypto.network import Policy
from crypto.roster_state import GroupRules, RosterState
from crypto.statements import Statement, get_bytes, unpack


def required_vouches(policy: Policy, cell_size: int, *, founding: bool) -> int:
    """Vouches (the certificate counts as one) an admission to a cell of `cell_size` needs."""
    if not founding:
        return max(1, policy.vouches)
    return max(1, min(policy.vouches, cell_size))


def window_start(certified_at: int, outsider_vouches: Iterable[int]) -> int:
    """When a newcomer's vetting window opens.

    At the certificate's time, which its issuer signs and so could date back;
    so where members outside the issuer's invite subtree exist (and one of
    them must vouch), no earlier than the first of their vouches: a time an
    honest member signed. An honest vetting waits the delay of that first
    outside vouch longer; a back-dated certificate gains nothing.
    """
    return max([certified_at, min(outsider_vouches, default=certified_at)])


def quorum_of(rule: str, size: int) -> int:
    """Signatures a quorum rule (`majority`, `two-thirds`, `all`) asks of a group of `size`."""
    if rule == "majority":
        return size // 2 + 1
    if rule == "two-thirds":
        return -(-2 * size // 3)
    if rule == "all":
        return size
    raise RuleViolation("invalid_policy", f"unknown quorum rule {rule!r}")


def check_split_sizes(rules: GroupRules, staying: int, moving: int) -> None:
    """Both cells a split leaves meet the policy's minimum, or the split is refused."""
    cell_min = rules.policy.cell_min
    if staying < cell_min or moving < cell_min:
        raise RuleViolation(
            "below_minimum",
            f"a split leaving {staying} and moving {moving} member(s) is refused: both cells "
            f"need at least {cell_min} members",
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
