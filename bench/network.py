"""A network of cells and councils built through the member SDK, as members would.

Used by bench/alerts.py and tests/e2e/test_alert_tree.py. Every step is the
one a member's `spokes` command takes (client/invites.py, vetting.py,
motions.py, elections.py, councils.py), each member with a home and
keystore of their own and their own in-memory `Client`; only the
passphrase hash is the insecure test one, so a thousand keystores are
quick to write.

The shape: cells of `size` members (a cell grows to 2 x size and splits,
each cell twice), every cell elects a spokesperson; the
spokespeople of `fanout` neighbouring groups form a council, which elects
its own spokesperson; councils of councils likewise, until one group is at
the top.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from client import invites
from client.cli.common import INSECURE_TEST_KDF, run_duties
from client.councils import Councils
from client.elections import Elections
from client.founding import create_network
from client.invites import Invites
from client.motions import Motions
from client.sdk import Client
from client.state import StateFile
from client.vetting import Vetting
from crypto.encoding import b32e
from crypto.keys import member_id_text
from crypto.network import DAY, Policy

PASSPHRASE = "correct horse battery staple"  # noqa: S105 - bench keystores only
T = TypeVar("T")


def policy_for(size: int) -> Policy:
    """Cells of `size` that grow to twice it and split; quick vetting, no probation."""
    return Policy(
        cell_min=max(2, size // 2),
        cell_max=2 * size,
        vouches=1,
        probation_seconds=0,
        vetting_seconds=0,
        invite_quota=100,
        epoch_seconds=DAY,
        epoch_messages=100_000,
        wide_alerts_per_day=100,
    )


@dataclass
class Member:
    """One member: a home folder, and their client opened on it."""

    name: str
    home: Path
    client: Client

    @property
    def id(self) -> str:
        return member_id_text(self.client.me)

    async def do(self, step: Callable[[Client], Awaitable[T]]) -> T:
        """One unit of work, as one command would do it: under the home's lock, re-read first."""
        async with self.client.fresh():
            return await step(self.client)


@dataclass
class Group:
    """A cell or a council: its id, level, members, and spokesperson once elected."""

    id: str
    level: int
    members: list[Member]
    spokesperson: Member | None = None
    linked: list[Group] = field(default_factory=list)  # for a council: the groups below


@dataclass
class Network:
    """What was built: every cell, every council by level, and the one at the top."""

    url: str
    members: list[Member]
    cells: list[Group]
    levels: list[list[Group]]  # levels[0] is the cells; levels[-1] holds the top alone

    @property
    def top(self) -> Group:
        (top,) = self.levels[-1]
        return top

    def spokespeople(self) -> list[Member]:
        """Everyone who speaks for some group (the ones whose daemons relay)."""
        seen: dict[str, Member] = {}
        for level in self.levels[:-1]:
            for group in level:
                assert group.spokesperson is not None
                seen[group.spokesperson.id] = group.spokesperson
        return list(seen.values())

    async def close(self) -> None:
        for member in self.members:
            await member.client.close()

    def save(self, path: Path) -> None:
        """Write what was built (names and ids; the homes and the database hold the rest)."""

        def group(g: Group) -> dict[str, Any]:
            return {
                "id": g.id,
                "level": g.level,
                "members": [m.name for m in g.members],
                "spokesperson": None if g.spokesperson is None else g.spokesperson.name,
                "linked": [below.id for below in g.linked],
            }

        shape = {
            "members": [m.name for m in self.members],
            "levels": [[group(g) for g in level] for level in self.levels],
        }
        path.write_text(json.dumps(shape))


def move_to_server(home: Path, url: str, passphrase: str) -> None:
    """Point the keystore in `home` at the server now at `url` (a copy of a network
    served again listens on another port). `spokes` has no command to move a home
    to another server, so this rewrites the keystore's server field through
    client.state, under the home's lock."""
    store = StateFile(home)
    with store.lock():
        state = store.read(passphrase)
        store.write(replace(state, server=url), passphrase)


def load(path: Path, root: Path, url: str) -> Network:
    """A network `Network.save` wrote, its members' homes under `root`, now served at `url`.

    Each keystore is pointed at `url` (the server listens on another port
    than when it was built), through client.state under the home's lock.
    """
    shape = json.loads(path.read_text())
    members = {}
    for name in shape["members"]:
        move_to_server(root / name, url, PASSPHRASE)
        client = Client.open(StateFile(root / name), PASSPHRASE)
        members[name] = Member(name, root / name, client)
    levels: list[list[Group]] = []
    by_id: dict[str, Group] = {}
    for level in shape["levels"]:
        groups = []
        for raw in level:
            speaker = raw["spokesperson"]
            found = Group(raw["id"], raw["level"], [members[n] for n in raw["members"]])
            found.spokesperson = None if speaker is None else members[speaker]
            found.linked = [by_id[below] for below in raw["linked"]]
            by_id[found.id] = found
            groups.append(found)
        levels.append(groups)
    return Network(url, list(members.values()), levels[0], levels)


def add_network_options(parser: argparse.ArgumentParser, keep_help: str) -> None:
    """The options every bench on this network takes: its shape, and --keep DIR."""
    parser.add_argument("--cells", type=int, default=100, help="cells (default 100)")
    parser.add_argument("--size", type=int, default=10, help="members per cell (default 10)")
    parser.add_argument("--fanout", type=int, default=10, help="seats per council (default 10)")
    parser.add_argument("--keep", type=Path, help=keep_help)


def serve_network(
    run: Callable[[str, Path, Any], Coroutine[Any, Any, None]], args: Any, prefix: str
) -> None:
    """`run(url, homes, args)` against `spokes-server serve` on its own PostgreSQL: the one
    kept in `args.keep` (its server and homes), or a temporary one removed afterwards."""
    from bench.messages import running_server  # noqa: PLC0415 - the server only when run

    if args.keep is not None:
        with running_server(keep=args.keep / "server") as server:
            asyncio.run(run(server.url, args.keep / "homes", args))
        return
    with running_server() as server, tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        asyncio.run(run(server.url, Path(tmp), args))


async def built(root: Path, url: str, args: Any) -> Network:
    """The network kept in `root` (network.json), or a new one of `args.cells` cells of
    `args.size`, councils of `args.fanout`; kept there for next time when `args.keep` is set."""
    shape = root / "network.json"
    started = time.monotonic()
    if shape.exists():
        network = load(shape, root, url)
        say(f"loaded {len(network.members)} members from {root}")
        return network
    network = await build(root, url, args.cells, args.size, args.fanout)
    say(f"built {len(network.members)} members in {time.monotonic() - started:.0f} s")
    if args.keep is not None:
        network.save(shape)
    return network


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def found(root: Path, url: str, size: int) -> Member:
    home = root / "m0"
    store = StateFile(home)
    with store.lock(create=True):
        client = Client.init(store, PASSPHRASE, url, INSECURE_TEST_KDF)
    founder = Member("m0", home, client)
    await founder.do(lambda c: create_network(c, "Bench", policy_for(size)))
    return founder


async def bring_in(root: Path, url: str, name: str, inviter: Member, voucher: Member) -> Member:
    """Invite, join, admit, vouch: a newcomer on their cell's roster."""
    created = await inviter.do(lambda c: Invites(c).create("", None))
    home = root / name
    store = StateFile(home)
    with store.lock(create=True):
        client, joined = await invites.join(store, PASSPHRASE, created.code, url, INSECURE_TEST_KDF)
    newcomer = Member(name, home, client)

    async def admit(c: Client) -> None:
        await Vetting(c).admit(joined.member_id, joined.safety_number)
        await run_duties(c)

    await inviter.do(admit)
    if voucher is not inviter:

        async def vouch(c: Client) -> None:
            status = await Vetting(c).status(joined.member_id)
            if status.status == "pending":
                await Vetting(c).vouch(joined.member_id)
            await run_duties(c)

        await voucher.do(vouch)
    await newcomer.do(run_duties)
    return newcomer


async def motion_passes(opener: Member, opened: dict[str, Any], signers: Sequence[Member]) -> None:
    """Members sign an open motion until it is carried out (or, a link, waits for acceptance)."""

    def passed(answer: dict[str, Any]) -> bool:
        return answer.get("status") == "done" or answer.get("waiting_for") == "acceptance"

    answer = opened
    for signer in signers:
        if passed(answer):
            return
        if signer is not opener:
            answer = await signer.do(lambda c: Motions(c).sign(opened["motion_id"]))
    if not passed(answer):
        raise AssertionError(f"the motion {opened['motion_id']} did not pass: {answer}")


async def build(root: Path, url: str, cells: int, size: int, fanout: int) -> Network:
    """A network of `cells` cells of `size`, councils of `fanout` seats, level upon level."""
    founder = await found(root, url, size)
    everyone = [founder]
    counter = iter(range(1, 10**9))

    async def newcomer(cell: list[Member]) -> Member:
        # Invites go round the cell (each member's quota is the policy's); a
        # cellmate other than the inviter vouches.
        number = next(counter)
        inviter = cell[number % len(cell)]
        voucher = cell[(number + 1) % len(cell)]
        member = await bring_in(root, url, f"m{number}", inviter, voucher)
        everyone.append(member)
        return member

    first = [founder]
    while len(first) < size:
        first.append(await newcomer(first))
    member_lists = [first]
    while len(member_lists) < cells:
        # A cell grows to twice its size and the newcomers split off as a cell;
        # each cell does so twice (cell n comes from cell (n - 1) // 2), so no
        # cell's log, and no invite line, grows with the size of the network.
        source = member_lists[(len(member_lists) - 1) // 2]
        grown = [await newcomer(source) for _ in range(size)]
        opened = await grown[0].do(
            lambda c, g=grown: Motions(c).split("cell", [m.id for m in g])  # type: ignore[misc]
        )
        await motion_passes(grown[0], {**opened, "status": "open"}, grown)
        for member in [*source, *grown]:
            await member.do(run_duties)
        member_lists.append(grown)
        say(f"  {len(member_lists)} cells, {len(everyone)} members")
    groups = []
    for members in member_lists:
        cell_id = members[0].client.state.cell_id
        assert cell_id is not None
        groups.append(Group(b32e(cell_id), 0, members))
    for group in groups:
        await elect(group, group.members[0])
    levels = [groups]
    while len(levels[-1]) > 1:
        below = levels[-1]
        councils = []
        for start in range(0, len(below), fanout):
            councils.append(await council_of(below[start : start + fanout], len(levels)))
        for council in councils:
            await elect(council, council.members[0])
        levels.append(councils)
        say(f"  level {len(levels) - 1}: {len(councils)} councils")
    return Network(url, everyone, groups, levels)


async def elect(group: Group, who: Member) -> None:
    """The group elects `who` as its spokesperson (a majority signs)."""
    opened = await who.do(lambda c: Elections(c).elect(group.id, who.id))
    await motion_passes(who, opened, group.members)
    for member in group.members:
        await member.do(run_duties)
    group.spokesperson = who


async def council_of(groups: Sequence[Group], level: int) -> Group:
    """The first group's spokesperson founds a council; the others are linked and accept."""
    founder = groups[0].spokesperson
    assert founder is not None
    created = await founder.do(lambda c: Councils(c).create(groups[0].id))
    council = Group(created["group_id"], level, [founder], linked=[groups[0]])
    for group in groups[1:]:
        speaker = group.spokesperson
        assert speaker is not None
        opened = await founder.do(lambda c, g=group: Councils(c).link(council.id, g.id))  # type: ignore[misc]
        await motion_passes(founder, opened, council.members)
        await speaker.do(lambda c: Councils(c).accept(council.id))
        council.members.append(speaker)
        council.linked.append(group)
        for member in council.members:
            await member.do(run_duties)
    return council
