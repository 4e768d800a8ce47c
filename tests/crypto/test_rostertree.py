"""Tests of crypto.rostertree: the roster's Merkle tree an election commits to.

Known answers: the roots below were computed by crypto/rostertree.py for the
members A..D of tests/crypto/test_roster.py's fixed keys and bundles, and
are checked here against a recomputation written out by hand from the
RFC 6962 shape (so a change to the leaf, the node or the shape fails).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from crypto import labels
from crypto.errors import RuleViolation
from crypto.rostertree import Proof, leaf_hash, prove, roster_root, sorted_members, verify_proof
from tests.crypto.helpers import fixed_key
from tests.crypto.test_roster import found

A, B, C, D = (fixed_key(name) for name in "ABCD")
ROOTS = {
    1: "6a501eae9c8e915593bc893d8a6930e91f8e0d2fbc73c893f01f7ccc92b9d464",
    2: "92470c420743c4847aad958026a5dd9ee88ab4f65e83758522cb0cae2431b818",
    3: "1b889f458e1d2f6494ea190e150dad8a450a035074acf41b2ef144e3dbda9d6d",
    4: "bcbe29df3d8ae5ea27ceace89966451a4ef4f2acaaca1c2bf3d3331b61a6623b",
}


def members(n: int):  # type: ignore[no-untyped-def]
    return list(found(*(A, B, C, D)[:n]).members.values())


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(labels.ROSTER_NODE + left + right).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_known_roots(n: int) -> None:
    assert roster_root(members(n)).hex() == ROOTS[n]


def test_the_shape_is_rfc_6962s() -> None:
    leaves = [leaf_hash(m) for m in sorted_members(members(4))]
    assert roster_root(members(1)) == leaf_hash(members(1)[0])
    assert roster_root(members(3)) == node(node(*leaves_of(3)[:2]), leaves_of(3)[2])
    assert roster_root(members(4)) == node(node(leaves[0], leaves[1]), node(leaves[2], leaves[3]))
    # Order does not matter: members are sorted by id.
    assert roster_root(reversed(members(4))) == roster_root(members(4))


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(m) for m in sorted_members(members(n))]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_member_proves_membership(n: int) -> None:
    roster = members(n)
    root = roster_root(roster)
    for member in roster:
        verify_proof(root, n, member, prove(roster, member.member_id))


def refused(root: bytes, member, proof: Proof, size: int = 4) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuleViolation) as caught:
        verify_proof(root, size, member, proof)
    assert caught.value.code == "invalid_proof"


def test_a_proof_does_not_carry_over_to_another_member_root_or_position() -> None:
    roster = members(4)
    root = roster_root(roster)
    b, c = sorted_members(roster)[1:3]
    proof = prove(roster, b.member_id)
    refused(root, c, proof)  # another member with B's proof
    refused(roster_root(members(3)), b, proof, size=3)  # another roster
    refused(root, b, replace(proof, index=proof.index ^ 1))
    refused(root, b, proof, size=5)  # a path for 4 leaves does not fit 5
    refused(root, b, proof, size=1)
    flipped = bytes([proof.path[0][0] ^ 1]) + proof.path[0][1:]
    refused(root, b, replace(proof, path=(flipped, *proof.path[1:])))
    refused(root, b, replace(proof, path=proof.path[:-1]))
    refused(root, b, replace(proof, path=(*proof.path, proof.path[0])))
    refused(root, b, replace(proof, index=7))
    # Another KEM key for the same member is another leaf.
    refused(root, replace(b, kem_public=bytes(32)), proof)


def test_a_non_member_has_no_proof() -> None:
    with pytest.raises(RuleViolation):
        prove(members(2), C.member_id)
    with pytest.raises(RuleViolation):
        roster_root([])
