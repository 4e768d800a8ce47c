"""services/roster_ops.py: one table of what the server does for each roster operation."""

from __future__ import annotations

import re

from server.services.roster_ops import EFFECTS
from server.store.db import Pool


async def test_every_operation_a_log_may_hold_has_one_effect(pool: Pool) -> None:
    # The operations roster_events accepts (its CHECK, set by the migrations)
    # are exactly those the table knows: adding one means both.
    check = await pool.fetchval(
        """SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
           JOIN pg_class t ON t.oid = c.conrelid
           WHERE t.relname = 'roster_events' AND c.contype = 'c'
             AND pg_get_constraintdef(c.oid) LIKE '%op%'"""
    )
    accepted = set(re.findall(r"'([a-z_]+)'", check))
    assert accepted == set(EFFECTS) == {
        *("create", "add", "remove", "epoch", "split"),
        *("elect", "recall", "link", "seat"),
        *("freeze", "unfreeze", "review", "clear", "suspend", "restore"),
    }
