"""A bounded flood against the real `spokes-server` process (issue 12, flood safety).

Junk and hostile requests and socket connects from two load processes
(bench/flood.py, which runs the same flood at full size: 20,000 requests and
2,000 sockets), while three members go on working. The server never answers
500, every member gets their answers, the server's RSS stays under its
documented bound, and after the flood it is back near the level a first,
identical flood left it at: what a flood takes, it gives back.
"""

from __future__ import annotations

import re
from typing import Any

from bench.flood import RSS_BOUND_KIB, FloodPlan, measure, report

# Smaller than the bench's, for a suite that shares two cores with other tests.
PLAN = FloodPlan(requests=5_000, sockets=1_000, request_tasks=16, socket_tasks=8, recovery_s=15)
# The issue asks for every answer within 1 s, and bench/flood.py shows it on a quiet
# machine. Here the two cores are shared with the rest of the suite: 99 answers in a
# hundred within 1 s, and none later than 2.5 s.
P99_S = 1.0
MAX_S = 2.5


async def test_a_flood_is_refused_cleanly_members_are_answered_and_memory_comes_back(
    spawn_server: Any, database_url: str
) -> None:
    # Behind the proxy (deploy/) each flood request can claim an address of its own.
    running = spawn_server("--database-url", database_url, env={"SPOKES_TRUST_FORWARDED_FOR": "1"})
    figures = await measure(running.url, running.process.pid, PLAN)
    print("\n".join(report(figures, PLAN)))

    assert figures.server_errors() == {}
    assert sum(figures.answers.values()) == PLAN.requests
    assert sum(figures.sockets.values()) == PLAN.sockets
    assert any(key.endswith(" 429") for key in figures.answers)  # the limits did their part
    assert figures.legit_failures == []
    assert figures.undelivered == 0
    every = sorted(figures.every_answer())
    assert len(every) > 20
    assert every[int(0.99 * len(every))] < P99_S
    assert every[-1] < MAX_S
    assert figures.peak_kib < RSS_BOUND_KIB
    assert figures.recovered_s is not None, (figures.baseline_kib, figures.after_kib)
    logged = running.stderr()
    assert "Traceback" not in logged
    assert set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", logged)) <= {"127.0.0.1"}
