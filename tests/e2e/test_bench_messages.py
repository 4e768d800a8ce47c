"""bench/messages.py still runs, end to end, at a size the suite can afford.

The bench is how the message targets are checked (README, "Messages"); it
drives a real server with real limits, so a new bound on the server (as the
32 sockets a member may hold) can break it without any test noticing. This
runs it as documented, small and short, and reads its table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RATE, SECONDS = 200, 2
# The default --idle (1,000) is more than 20 members may hold: 31 more each.
IDLE = 20 * 31

# | phase | accepted msg/s | p50 | p95 | p99 | accepted | refused | late | rekeys | CPU | CPU |
ROW = re.compile(
    r"^\| (?P<phase>[^|]+?) \| [\d,]+ \|(?: [\d.]+ \|){3} (?P<accepted>[\d,]+) \| "
    r"(?P<refused>[^|]+?) \| (?P<late>\d+) \|",
    re.MULTILINE,
)


def test_the_message_bench_runs_small_and_every_message_is_accepted_and_delivered() -> None:
    done = subprocess.run(  # noqa: S603
        [
            sys.executable,
            str(ROOT / "bench" / "messages.py"),
            *("--members", "20", "--rate", str(RATE), "--duration", str(SECONDS)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {m["phase"]: m for m in ROW.finditer(done.stdout)}
    assert set(rows) == {f"{RATE}/s offered", "flat out"}, done.stdout
    assert int(rows[f"{RATE}/s offered"]["accepted"].replace(",", "")) == RATE * SECONDS
    assert int(rows["flat out"]["accepted"].replace(",", "")) > 0
    for row in rows.values():
        assert (row["refused"], row["late"]) == ("0", "0"), done.stdout
    assert f"| {IDLE} idle sockets, extra server RSS |" in done.stdout
