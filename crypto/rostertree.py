"""A Merkle tree over a group's roster: what an election commits to, and proofs of membership.

The rule it keeps: an election motion names the size and the root of this
tree over the group's members at that moment, the group's own rule book
checks the claim against its log, and anyone can then be shown that one
member (and no one else) is on that roster by a proof of a few hashes,
without seeing the rest of it (a council checking a delegation).

The tree is RFC 6962's shape (a left subtree of the largest power of two
below n), over the members sorted by id, with its own labels:

    leaf = SHA-256(ROSTER_LEAF ‖ encode([member id, identity key, KEM suite, KEM public key]))
    node = SHA-256(ROSTER_NODE ‖ left ‖ right)

A leaf holds the member's KEM public key, which only the group's members
and the server hold: whoever has only a proof's hashes can't test a guessed
member id against them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crypto import labels
from crypto.encoding import encode
from crypto.errors import RuleViolation
from crypto.roster_state import RosterMember

MAX_PROOF_HASHES = 32


def leaf_hash(member: RosterMember) -> bytes:
    body = encode([member.member_id, member.key.raw, member.kem_suite, member.kem_public])
    return hashlib.sha256(labels.ROSTER_LEAF + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(labels.ROSTER_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def sorted_members(members: Iterable[RosterMember]) -> list[RosterMember]:
    return sorted(members, key=lambda m: m.member_id)


def roster_root(members: Iterable[RosterMember]) -> bytes:
    """The root over these members (at least one)."""
    leaves = [leaf_hash(m) for m in sorted_members(members)]
    if not leaves:
        raise RuleViolation("invalid_event", "a roster tree has at least one member")
    return _root(leaves)


@dataclass(frozen=True)
class Proof:
    """That the member at `index` of a roster is under a root: the sibling hashes.

    The roster's size is not the proof's to say: the verifier takes it from
    the same signed commitment as the root (some paths fit several sizes).
    """

    index: int
    path: tuple[bytes, ...]


def prove(members: Iterable[RosterMember], member_id: bytes) -> Proof:
    ordered = sorted_members(members)
    ids = [m.member_id for m in ordered]
    if member_id not in ids:
        raise RuleViolation("not_in_group", "not a member of this roster")
    index = ids.index(member_id)
    leaves = [leaf_hash(m) for m in ordered]
    return Proof(index, tuple(_path(index, leaves)))


def _path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(index, leaves[:k]), _root(leaves[k:])]
    return [*_path(index - k, leaves[k:]), _root(leaves[:k])]


def verify_proof(root: bytes, size: int, member: RosterMember, proof: Proof) -> None:
    """Raise RuleViolation unless `member` is at `proof.index` of the `size` members under `root`."""
    if not 0 <= proof.index < size or len(proof.path) > MAX_PROOF_HASHES:
        raise RuleViolation("invalid_proof", "a roster proof is out of range")
    if any(len(h) != 32 for h in proof.path):
        raise RuleViolation("invalid_proof", "a roster proof's hashes are 32 bytes")
    computed = _climb(proof.index, size, leaf_hash(member), list(proof.path))
    if computed != root:
        raise RuleViolation("invalid_proof", "the member is not on the committed roster")


def _climb(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root the path leads to from `leaf`, or None if its length does not fit `size`."""
    if size == 1:
        return leaf if not path else None
    if not path:
        return None
    k = _split(size)
    sibling = path[-1]
    if index < k:
        below = _climb(index, k, leaf, path[:-1])
        return None if below is None else _node(below, sibling)
    below = _climb(index - k, size - k, leaf, path[:-1])
    return None if below is None else _node(sibling, below)
