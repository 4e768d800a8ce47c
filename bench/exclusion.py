"""How fast an expulsion cuts a member off, and how fast their groups go on without them.

    .venv/bin/python bench/exclusion.py [--cells 100] [--size 10] [--fanout 10] [--runs 20]
                                        [--keep DIR]

Starts ``spokes-server serve --port 0`` on its own embedded PostgreSQL and
builds (or, with --keep DIR, loads: the same DIR as bench/alerts.py's) the
network of bench/network.py: CELLS cells of SIZE members, councils of FANOUT
seats up to one at the top. Then RUNS times, each in another cell: the
subject (every other run the cell's spokesperson, who also holds a council
seat) keeps a socket open on their groups; a cellmate moves to expel them
and cellmates sign, through the member SDK as `spokes expel` and `spokes
sign` do. From the start of the last signature the quorum needs it takes
(a) the time until the server closed the subject's socket, and (b) the time
until the first sender of each group the subject was in has sent a message
there (their client takes the subject off the roster if nobody has yet and
commits a key period without them: a rekey). Prints p50, p99 and max of
each. Loopback only; every wait is bounded. The runs expel members for
good: a network kept with --keep is changed (measure alerts on it first).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.messages import percentile  # noqa: E402
from bench.network import (  # noqa: E402
    Group,
    Member,
    Network,
    add_network_options,
    built,
    say,
    serve_network,
)
from client.errors import FeedClosed  # noqa: E402
from client.exclusion import Exclusion  # noqa: E402
from client.messages import Messages  # noqa: E402
from client.motions import Motions  # noqa: E402
from client.rosters import Rosters  # noqa: E402
from client.sdk import Client  # noqa: E402
from crypto.encoding import b32e  # noqa: E402

WAIT_S = 30.0  # the longest a socket may stay open after the expulsion before the run fails


async def hold_socket(member: Member, ready: asyncio.Event) -> float:
    """A socket of `member`'s on their groups; the monotonic time the server closed it."""
    async with member.client.fresh():
        groups = await Rosters(member.client).sync_groups()
        cursors = {b32e(g): member.client.state.record(g).cursor for g in groups}
        feed = await member.client.open_feed()
    try:
        await feed.send({"type": "subscribe", "cursors": cursors})
        ready.set()
        while True:
            try:
                event = await feed.receive(WAIT_S * 4)
            except FeedClosed:
                return time.monotonic()
            if event is None:
                return time.monotonic()
    finally:
        await feed.close()


def council_of(network: Network, member: Member) -> Group | None:
    """The council where `member` holds a seat, if any."""
    for level in network.levels[1:]:
        for group in level:
            if member in group.members:
                return group
    return None


async def expel_once(network: Network, cell: Group, spokesperson: bool) -> tuple[float, float]:
    """Expel one member of `cell`: seconds to (a) their socket closed, (b) the last rekey."""
    subject = cell.spokesperson if spokesperson else cell.members[-1]
    assert subject is not None
    others = [m for m in cell.members if m is not subject]
    council = council_of(network, subject) if spokesperson else None
    ready = asyncio.Event()
    socket = asyncio.create_task(hold_socket(subject, ready))
    await asyncio.wait_for(ready.wait(), WAIT_S)
    opener, *signers = others
    opened = await opener.do(lambda c: Exclusion(c).expel(subject.id, "bench", cell.id))
    needed = int(opened["needed"])
    for signer in signers[: needed - 2]:
        await signer.do(lambda c: Motions(c).sign(opened["motion_id"]))
    last = signers[needed - 2]
    started = time.monotonic()
    done = await last.do(lambda c: Motions(c).sign(opened["motion_id"]))
    assert done["status"] == "done", done
    closed = await asyncio.wait_for(socket, WAIT_S)
    # The first sender of each group the subject was in: the cell, and their council.
    senders = [(others[0], cell.id)]
    if council is not None:
        holder = next(m for m in council.members if m is not subject)
        senders.append((holder, council.id))
    for sender, group in senders:

        async def send(c: Client, g: str = group) -> object:
            return await Messages(c).send(g, "after the expulsion")

        await sender.do(send)
    rekeyed = time.monotonic()
    return closed - started, rekeyed - started


async def run(url: str, root: Path, args: argparse.Namespace) -> None:
    network = await built(root, url, args)
    closed: list[float] = []
    rekeyed: list[float] = []
    try:
        for n in range(min(args.runs, len(network.cells))):
            cell = network.cells[n]
            took = await expel_once(network, cell, spokesperson=n % 2 == 1)
            closed.append(took[0])
            rekeyed.append(took[1])
            say(f"  run {n + 1}: socket closed {took[0]:.3f} s, groups rekeyed {took[1]:.3f} s")
    finally:
        await network.close()
    print(
        f"{len(network.members)} members; {len(closed)} expulsions (every other one of a "
        f"spokesperson); {platform.machine()}, {os.cpu_count()} cores"
    )
    print(f"{'from the last signature to':<44}{'p50':>8}{'p99':>8}{'max':>8}  (s)")
    for label, values in (
        ("(a) the member's socket closed", closed),
        ("(b) every group of theirs rekeyed and sent", rekeyed),
    ):
        cells = "".join(f"{percentile(values, p):>8.3f}" for p in (50, 99))
        print(f"{label:<44}{cells}{max(values):>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_network_options(parser, "keep the network built in DIR, or measure the one kept there")
    parser.add_argument("--runs", type=int, default=20, help="expulsions (default 20)")
    args = parser.parse_args()
    serve_network(run, args, "spokes-expel-")


if __name__ == "__main__":
    main()
