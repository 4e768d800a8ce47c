"""How fast an alert reaches every member of a network of cells and councils.

    .venv/bin/python bench/alerts.py [--cells 100] [--size 10] [--fanout 10] [--alerts 20]

Starts ``spokes-server serve --port 0`` on its own embedded PostgreSQL in a
temporary folder and builds, through the member SDK (bench/network.py), a
network of CELLS cells of SIZE members, councils of FANOUT seats level upon
level up to one at the top. Every spokesperson runs the relay daemon
(client/daemon.py) and every member a live feed (client/feed.py), all in
this process. Then, one after the other: ALERTS alerts raised in the top
council with scope `network`, and ALERTS raised in a cell (confirmed by a
cellmate) with scope `network`. For each it takes the time from raising it
to the moment the last member's client has it opened and verified, and
prints p50, p95 and p99 of those times, and the acknowledgement count the
raiser saw once every member acknowledged it (the second set only).
Loopback only; every wait is bounded, and the command stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.messages import percentile, running_server  # noqa: E402
from bench.network import Member, Network, build, say  # noqa: E402
from client.alerts import Alerts  # noqa: E402
from client.daemon import Daemon  # noqa: E402
from client.feed import LiveFeed  # noqa: E402
from client.groups import ReadMessage  # noqa: E402

WAIT_S = 60.0  # the longest one alert may take to reach everyone before the run fails


@dataclass
class Reach:
    """When each member first had one alert, opened and verified."""

    alert_id: str = ""
    raised_at: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)
    everyone: asyncio.Event = field(default_factory=asyncio.Event)


class Watchers:
    """Every member's live feed, and every spokesperson's daemon, in this process."""

    def __init__(self, network: Network, seconds: float) -> None:
        self.network = network
        self.seconds = seconds
        self.current = Reach()
        self.tasks: list[asyncio.Task[object]] = []
        self.relays = 0

    def start(self) -> None:
        for member in self.network.members:
            feed = LiveFeed(member.client, view="watch")
            self.tasks.append(
                asyncio.create_task(feed.watch(None, self.seconds, self._seen_by(member)))
            )
        for speaker in self.network.spokespeople():
            daemon = Daemon(speaker.client)
            self.tasks.append(asyncio.create_task(daemon.run(self.seconds, None, self._relayed)))

    def _relayed(self, _: object) -> None:
        self.relays += 1

    def _seen_by(self, member: Member) -> Callable[[str, ReadMessage], None]:
        def seen(_group: str, message: ReadMessage) -> None:
            reach = self.current
            alert = message.alert or {}
            if alert.get("kind") != "alert" or member.id in reach.seen:
                return
            from crypto.encoding import b32e

            if b32e(alert.get("id") or b"") != reach.alert_id:  # type: ignore[arg-type]
                return
            reach.seen[member.id] = time.monotonic()
            if len(reach.seen) == len(self.network.members):
                reach.everyone.set()

        return seen

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        failed = [t for t in self.tasks if not t.cancelled() and t.exception() is not None]
        for task in failed:
            say(f"a watcher failed: {task.exception()!r}")

    async def alert(self, raiser: Member, confirmer: Member | None, group: str, text: str) -> float:
        """Raise one network alert; seconds until the last member had it."""
        reach = self.current = Reach()
        # Who raises it has it at once (it is their own).
        reach.raised_at = time.monotonic()
        raised = await raiser.do(lambda c: Alerts(c).raise_alert(group, text, "network"))
        reach.alert_id = str(raised["alert_id"])
        reach.seen.setdefault(raiser.id, time.monotonic())
        if confirmer is not None:
            await confirmer.do(lambda c: Alerts(c).confirm(reach.alert_id))
        try:
            await asyncio.wait_for(reach.everyone.wait(), WAIT_S)
        except TimeoutError:
            say(f"  after {WAIT_S:.0f} s only {len(reach.seen)} of {len(self.network.members)} had it")
            raise
        took = max(reach.seen.values()) - reach.raised_at
        say(f"  {text}: the last of {len(reach.seen)} had it after {took:.2f} s")
        return took


async def measure(network: Network, alerts: int, settle_s: float = 2.0) -> dict[str, list[float]]:
    """Top-raised and cell-raised network alerts: seconds to the last member, each."""
    watchers = Watchers(network, seconds=3600)
    watchers.start()
    await asyncio.sleep(settle_s)  # every feed and daemon subscribed
    top, times = network.top, {"top": [], "cell": []}
    try:
        for n in range(alerts):
            raiser = top.members[n % len(top.members)]
            times["top"].append(await watchers.alert(raiser, None, top.id, f"top alert {n}"))
        for n in range(alerts):
            cell = network.cells[n % len(network.cells)]
            raiser, confirmer = cell.members[1 + n % (len(cell.members) - 1)], cell.members[0]
            took = await watchers.alert(raiser, confirmer, cell.id, f"cell alert {n}")
            times["cell"].append(took)
    finally:
        await watchers.stop()
    return times


def table(times: dict[str, list[float]], members: int) -> list[str]:
    lines = [
        f"{'alert raised in':<28}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}  (s to the last of {members})"
    ]
    for name, label in (("top", "the top council"), ("cell", "a cell (scope network)")):
        values = times[name]
        lines.append(
            f"{label:<28}"
            + "".join(f"{percentile(values, p):>8.2f}" for p in (50, 95, 99))
            + f"{max(values):>8.2f}"
        )
    return lines


async def run(url: str, root: Path, args: argparse.Namespace) -> None:
    started = time.monotonic()
    network = await build(root, url, args.cells, args.size, args.fanout)
    built = time.monotonic() - started
    say(f"built {len(network.members)} members in {built:.0f} s")
    try:
        times = await measure(network, args.alerts)
    finally:
        await network.close()
    levels = " / ".join(str(len(level)) for level in network.levels)
    print(
        f"{len(network.members)} members; groups per level (cells first): {levels}; "
        f"{len(network.spokespeople())} daemons; {args.alerts} alerts each; "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    for line in table(times, len(network.members)):
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=100, help="cells (default 100)")
    parser.add_argument("--size", type=int, default=10, help="members per cell (default 10)")
    parser.add_argument("--fanout", type=int, default=10, help="seats per council (default 10)")
    parser.add_argument("--alerts", type=int, default=20, help="alerts of each kind (default 20)")
    args = parser.parse_args()
    with running_server() as server, tempfile.TemporaryDirectory(prefix="spokes-alerts-") as tmp:
        asyncio.run(run(server.url, Path(tmp), args))


if __name__ == "__main__":
    main()
