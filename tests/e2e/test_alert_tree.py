"""End to end, three levels: alerts cross a network of cells and councils by the daemons.

Built through the member SDK (bench/network.py) against a real
`spokes-server`: 4 cells of 2, 2 councils of 2 seats, 1 council at the top,
each group with its elected spokesperson, and every spokesperson's relay
daemon running (client/daemon.py, in this process, as bench/alerts.py
runs them). An alert raised at the top reaches every member of every cell;
one raised in a cell with scope `network` (and confirmed there) reaches
every other cell, and once everyone acknowledged it the raiser sees every
member counted, through two levels of counts.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from bench.alerts import Watchers
from bench.network import Member, build
from client.alerts import Alerts

UNLIMITED = "1000000/3600"


@pytest.fixture
def served(spawn_server: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in (
        "REDEEM_PER_SOURCE",
        "INVITE_FETCH_PER_SOURCE",
        "LOGIN_PER_SOURCE",
        "SOCKET_PER_SOURCE",
    ):
        monkeypatch.setenv(f"SPOKES_RATE_{name}", UNLIMITED)  # everyone is on 127.0.0.1
    url: str = spawn_server("--database-url", database_url, env=dict(os.environ)).url
    return url


async def counted_by(raiser: Member, alert_id: str, everyone: int) -> dict[str, int]:
    """The raiser's view of the alert once every member's acknowledgement came back."""
    deadline = time.monotonic() + 60
    while True:
        views = await raiser.do(lambda c: Alerts(c).alerts())
        (view,) = [v for v in views if v.alert_id == alert_id]
        if view.acknowledged == everyone or time.monotonic() > deadline:
            return {"reached": view.reached, "acknowledged": view.acknowledged}
        await asyncio.sleep(0.3)


async def three_levels(root: Path, url: str) -> None:
    network = await build(root, url, cells=4, size=2, fanout=2)
    assert [len(level) for level in network.levels] == [4, 2, 1]
    everyone = len(network.members)
    assert everyone == 8
    watchers = Watchers(network, seconds=300)
    await watchers.start()
    try:
        await asyncio.sleep(2)  # every feed and daemon subscribed
        top = network.top
        took = await watchers.alert(top.members[0], None, top.id, "police at the north gate")
        assert set(watchers.seen()) == {m.id for m in network.members}
        print(f"an alert raised at the top reached all {everyone} members in {took:.2f} s")

        cell = network.cells[-1]
        raiser, confirmer = cell.members[1], cell.members[0]
        took = await watchers.alert(raiser, confirmer, cell.id, "eviction at number 12")
        alert_id = watchers.current.alert_id
        assert set(watchers.seen()) == {m.id for m in network.members}
        print(f"an alert raised in a cell reached all {everyone} members in {took:.2f} s")

        for member in network.members:
            if member is not raiser:
                await member.do(lambda c: Alerts(c).ack(alert_id))
        await raiser.do(lambda c: Alerts(c).ack(alert_id))
        seen = await counted_by(raiser, alert_id, everyone)
        print(f"the raiser sees {seen['reached']} reached, {seen['acknowledged']} acknowledged")
        assert seen == {"reached": everyone, "acknowledged": everyone}
        assert watchers.relays > 0
    finally:
        await watchers.stop()
        await network.close()


def test_alerts_cross_three_levels_and_the_count_comes_back(tmp_path: Path, served: str) -> None:
    asyncio.run(three_levels(tmp_path, served))
