"""Tests of crypto.quorum: how many vouches admit, and which splits are big enough.

Who must sign a motion is tested with the motions themselves (test_motions.py).
"""

from __future__ import annotations

import pytest

from crypto.errors import InvalidStatement, RuleViolation
from crypto.network import Policy
from crypto.quorum import check_split_sizes, required_vouches
from crypto.roster_state import GroupRules


@pytest.mark.parametrize(("cell_size", "needed"), [(0, 1), (1, 1), (2, 2), (3, 3), (12, 3)])
def test_required_vouches_is_capped_by_a_small_founding_cell(cell_size: int, needed: int) -> None:
    assert required_vouches(Policy(vouches=3), cell_size, founding=True) == needed


@pytest.mark.parametrize("cell_size", [1, 2, 12])
def test_a_cell_made_by_a_split_always_needs_the_policys_count(cell_size: int) -> None:
    assert required_vouches(Policy(vouches=3), cell_size, founding=False) == 3


def test_a_split_leaving_either_side_below_the_minimum_is_refused() -> None:
    rules = GroupRules(Policy(cell_min=2, cell_max=12), frozenset())
    check_split_sizes(rules, 2, 2)
    for staying, moving in ((1, 3), (3, 1)):
        with pytest.raises(RuleViolation) as caught:
            check_split_sizes(rules, staying, moving)
        assert caught.value.code == "below_minimum"


def test_every_policy_a_genesis_may_carry_lets_a_full_cell_split() -> None:
    # The policy's bounds and the split rule agree: whatever cell bounds a
    # genesis passes with, a cell at cell_max splits in two that both keep
    # cell_min; the bounds refused are exactly those where it could not.
    for cell_min in range(2, 51):
        for cell_max in range(cell_min, 101):
            half = cell_max // 2
            try:
                rules = GroupRules(Policy(cell_min=cell_min, cell_max=cell_max), frozenset())
            except InvalidStatement:
                assert half < cell_min, (cell_min, cell_max)
                continue
            check_split_sizes(rules, cell_max - half, half)
