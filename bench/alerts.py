"""How fast an alert reaches every member of a network of cells and councils.

    .venv/bin/python bench/alerts.py [--cells 100] [--size 10] [--fanout 10] [--alerts 20]
                                     [--full 10] [--keep DIR]

Starts ``spokes-server serve --port 0`` on its own embedded PostgreSQL in a
temporary folder and builds, through the member SDK (bench/network.py), a
network of CELLS cells of SIZE members, councils of FANOUT seats level upon
level up to one at the top. Every spokesperson runs `spokes daemon` as a
process of its own, as members run it; every member has a socket on which
the server delivers what their groups receive, and FULL members (one per
cell) run their whole client's live feed here, which opens and verifies each
alert. Then, one after the other: ALERTS alerts raised in the top council
with scope `network`, and ALERTS raised in a cell (confirmed by a cellmate)
with scope `network`. For each it takes the time from raising it until the
last member had it, and prints p50, p95, p99 and the worst. Loopback only;
every wait is bounded, and the command stops the server and the daemons.

Building 1,000 members takes a while (each one invited, vetted and admitted
as members do it): with --keep DIR the database, the homes and the network's
shape stay in DIR, and a later run with the same --keep measures that
network again without building it (the other shape options are then ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.messages import percentile  # noqa: E402
from bench.network import (  # noqa: E402
    PASSPHRASE,
    Member,
    Network,
    add_network_options,
    built,
    say,
    serve_network,
)
from client.alerts import Alerts  # noqa: E402
from client.daemon import Daemon  # noqa: E402
from client.feed import LiveFeed  # noqa: E402
from client.groups import ReadMessage  # noqa: E402
from client.rosters import Rosters  # noqa: E402
from crypto.encoding import b32e  # noqa: E402

WAIT_S = 60.0  # the longest one alert may take to reach everyone before the run fails
SETUP_S = 900.0  # the longest every member's socket may take to subscribe (not measured)
SETUP_AT_ONCE = 8
DAEMON_GAP_S = 0.4  # between starting one daemon process and the next


@dataclass
class Reach:
    """When each member first had one alert: delivered to their socket, and opened."""

    alert_id: str = ""
    text: str = ""
    raised_at: float = 0.0
    baseline: dict[str, int] = field(default_factory=dict)  # group -> last seq before it
    delivered: dict[str, float] = field(default_factory=dict)  # on the member's socket
    everyone: asyncio.Event = field(default_factory=asyncio.Event)


class Watchers:
    """Who receives alerts, and who relays them.

    Relays: every spokesperson's daemon, in this process (`in_process`) or as a
    `spokes daemon` process of its own, as members run it. Receipt: the
    members in `full` run their client's live feed here (the alert opened and
    verified, client/feed.py); every other member a bare socket on which the
    server delivers the relayed message (it is the first message in their
    groups after the alert was raised). An alert has reached everyone when
    each member has it one way or the other.
    """

    def __init__(
        self,
        network: Network,
        seconds: float,
        *,
        full: list[Member] | None = None,
        in_process: bool = True,
    ) -> None:
        self.network = network
        self.seconds = seconds
        self.full = network.members if full is None else full
        self.in_process = in_process
        self.current = Reach()
        self.tasks: list[asyncio.Task[object]] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.relays = 0
        self.last_seq: dict[str, int] = {}
        self.opened: dict[str, dict[str, float]] = {}  # alert id -> member id -> when
        self.subscribed = 0
        self.sockets = 0  # bare sockets started
        self.ready = asyncio.Event()  # every bare socket subscribed
        # Sockets set up a few at a time (each logs in and looks at its groups),
        # as members come online, not a thousand in the same instant.
        self.setting_up = asyncio.Semaphore(SETUP_AT_ONCE)
        self.failed: BaseException | None = None  # a socket that could not be set up

    async def start(self) -> None:
        """Start the daemons (processes one at a time: a hundred Python processes starting
        together starve the server for half a minute), then every member's socket."""
        for speaker in self.network.spokespeople():
            if self.in_process:
                daemon = Daemon(speaker.client).run(self.seconds, None, self._relayed)
                self.tasks.append(asyncio.create_task(daemon))
            else:
                self.processes.append(spawn_daemon(speaker.home, self.seconds))
                await asyncio.sleep(DAEMON_GAP_S)
        full = {m.id for m in self.full}
        for member in self.network.members:
            if member.id in full:
                feed = LiveFeed(member.client, view="watch")
                watch = feed.watch(None, self.seconds, self._seen_by(member))
                self.tasks.append(asyncio.create_task(watch))
            else:
                self.sockets += 1
                self.tasks.append(asyncio.create_task(self._socket(member)))
        if not self.sockets:
            self.ready.set()

    def _relayed(self, _: object) -> None:
        self.relays += 1

    def _seen_by(self, member: Member) -> Callable[[str, ReadMessage], None]:
        def seen(_group: str, message: ReadMessage) -> None:
            alert = message.alert or {}
            raw = alert.get("id")
            if alert.get("kind") != "alert" or not isinstance(raw, bytes):
                return
            # Kept by id: a cellmate's client may open it before the raise has returned it.
            self.opened.setdefault(b32e(raw), {}).setdefault(member.id, time.monotonic())
            self._check()

        return seen

    async def _socket(self, member: Member) -> None:
        """A bare socket on the member's groups: when the server delivers each message."""
        try:
            async with self.setting_up, member.client.fresh():
                groups = await Rosters(member.client).sync_groups()
                cursors = {b32e(g): member.client.state.record(g).cursor for g in groups}
                feed = await member.client.open_feed()
        except Exception as exc:
            self.failed = exc
            self.ready.set()  # the run stops: see measure()
            raise
        for group, cursor in cursors.items():
            self.last_seq[group] = max(cursor, self.last_seq.get(group, 0))
        try:
            await feed.send({"type": "subscribe", "cursors": cursors})
            self.subscribed += 1
            if self.subscribed == self.sockets:
                self.ready.set()
            while True:
                event = await feed.receive(60)
                if event is None or event.get("type") != "event":
                    continue
                group, seq = str(event["group"]), int(event["seq"])
                self.last_seq[group] = max(seq, self.last_seq.get(group, 0))
                reach = self.current
                if (
                    event.get("kind") == "message"
                    and reach.raised_at
                    and seq > reach.baseline.get(group, 1 << 62)
                    and member.id not in reach.delivered
                ):
                    reach.delivered[member.id] = time.monotonic()
                    self._check()
        finally:
            await feed.close()

    def seen(self) -> dict[str, float]:
        """Member id -> when their client opened and verified the current alert."""
        return self.opened.get(self.current.alert_id, {}) if self.current.alert_id else {}

    def had(self) -> dict[str, float]:
        """Member id -> when they first had the current alert, either way."""
        return {**self.current.delivered, **self.seen()}

    def _check(self) -> None:
        if len(self.had()) == len(self.network.members):
            self.current.everyone.set()

    async def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        failed = [t for t in self.tasks if not t.cancelled() and t.exception() is not None]
        for task in failed:
            say(f"a watcher failed: {task.exception()!r}")

    async def alert(self, raiser: Member, confirmer: Member | None, group: str, text: str) -> float:
        """Raise one network alert; seconds until the last member had it."""
        reach = self.current = Reach(text=text, baseline=dict(self.last_seq))
        reach.raised_at = time.monotonic()
        raised = await raiser.do(lambda c: Alerts(c).raise_alert(group, text, "network"))
        reach.alert_id = str(raised["alert_id"])
        self.opened.setdefault(reach.alert_id, {}).setdefault(raiser.id, time.monotonic())
        self._check()
        if confirmer is not None:
            await confirmer.do(lambda c: Alerts(c).confirm(reach.alert_id))
        everyone = len(self.network.members)
        try:
            await asyncio.wait_for(reach.everyone.wait(), WAIT_S)
        except TimeoutError:
            had = self.had()
            missing = [m.name for m in self.network.members if m.id not in had]
            say(f"  after {WAIT_S:.0f} s only {len(had)} of {everyone} had it; not {missing}")
            for speaker in self.network.spokespeople():
                said = (speaker.home / "daemon.err").read_text(errors="replace").strip()
                if said:
                    say(f"  daemon {speaker.name}: {said[-300:]}")
            raise
        took = max(self.had().values()) - reach.raised_at
        opened = [t - reach.raised_at for t in self.seen().values()]
        say(
            f"  {text}: the last of {everyone} had it after {took:.2f} s "
            f"(opened by the last of {len(opened)} full clients after {max(opened):.2f} s)"
        )
        return took


def spawn_daemon(home: Path, seconds: float) -> subprocess.Popen[bytes]:
    """`spokes daemon` for one member, as they would run it."""
    env = {**os.environ, "SPOKES_PASSPHRASE": PASSPHRASE, "SPOKES_INSECURE_TEST_KDF": "1"}
    command = [str(Path(sys.executable).parent / "spokes"), "daemon", "--home", str(home)]
    with (home / "daemon.err").open("wb") as stderr:  # read when a run goes wrong
        return subprocess.Popen(  # noqa: S603 - our own command
            [*command, "--timeout", str(int(seconds)), "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


async def measure(
    network: Network, alerts: int, full: int, settle_s: float = 5.0
) -> dict[str, list[float]]:
    """Top-raised and cell-raised network alerts: seconds to the last member, each."""
    sample = [cell.members[-1] for cell in network.cells[:full]]
    for speaker in network.spokespeople():
        # A first daemon starts from now; from then on each resumes where it
        # stopped, so one whose process subscribes late still relays all.
        await Daemon(speaker.client).run(0.1, None, lambda _: None)
    watchers = Watchers(network, seconds=3600, full=sample, in_process=False)
    await watchers.start()
    started = time.monotonic()
    await asyncio.wait_for(watchers.ready.wait(), SETUP_S)  # every bare socket subscribed
    if watchers.failed is not None:
        await watchers.stop()
        raise SystemExit(f"a member's socket could not be set up: {watchers.failed}")
    say(f"  {watchers.sockets} sockets subscribed in {time.monotonic() - started:.0f} s")
    # The daemons' own sockets, and the full clients': each logs in and looks at its groups.
    await asyncio.sleep(max(settle_s, 0.2 * len(network.spokespeople())))
    top = network.top
    times: dict[str, list[float]] = {"top": [], "cell": []}
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
    network = await built(root, url, args)
    try:
        times = await measure(network, args.alerts, args.full)
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
    add_network_options(
        parser, "keep the network built in DIR, or measure the one kept there (see above)"
    )
    parser.add_argument("--alerts", type=int, default=20, help="alerts of each kind (default 20)")
    parser.add_argument(
        "--full",
        type=int,
        default=10,
        help="members (one per cell) whose whole client opens each alert here (default 10)",
    )
    args = parser.parse_args()
    serve_network(run, args, "spokes-alerts-")


if __name__ == "__main__":
    main()
