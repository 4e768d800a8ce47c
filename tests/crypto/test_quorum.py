"""Tests of crypto.quorum: how many vouches admit, and which splits are big enough.

Who must sign a motion is tested with the motions themselves (test_motions.py).
"""

from __future__ import annotations

import pytest

from crypto.errors import RuleViolation
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
