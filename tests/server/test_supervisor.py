"""The supervisor: crashed background tasks come back, and stop always ends."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from server import supervisor as supervisor_module
from server.supervisor import Supervisor


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "RESTART_BACKOFF_S", (0.01, 0.05))


async def test_a_crashed_task_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError("secret detail that must not be logged")
        healthy.set()
        await asyncio.sleep(3600)

    supervisor = Supervisor()
    with caplog.at_level(logging.ERROR, logger="server.supervisor"):
        supervisor.start("flaky", flaky)
        await asyncio.wait_for(healthy.wait(), 5)
    assert runs == 4
    assert supervisor.crashes["flaky"] == 3
    assert supervisor.running() == ["flaky"]
    crashes = [r.getMessage() for r in caplog.records]
    assert crashes.count("background task flaky crashed (RuntimeError); restarting it") == 3
    assert not any("secret" in line for line in crashes)
    assert await supervisor.stop(within_s=2) is True
    assert supervisor.running() == []


async def test_a_task_that_returns_is_restarted_too() -> None:
    runs = 0

    async def returns_early() -> None:
        nonlocal runs
        runs += 1
        if runs > 2:
            await asyncio.sleep(3600)

    supervisor = Supervisor()
    supervisor.start("early", returns_early)
    for _ in range(200):
        if runs >= 3:
            break
        await asyncio.sleep(0.01)
    assert runs == 3 and supervisor.crashes["early"] == 2
    assert await supervisor.stop(within_s=2)


async def test_stop_ends_a_task_that_swallowed_its_first_cancellation() -> None:
    """The asyncio.wait_for race of Python 3.11: one cancellation lost."""
    swallowed = 0

    async def swallows_once() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    supervisor = Supervisor()
    supervisor.start("swallower", swallows_once)
    await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await supervisor.stop(within_s=5) is True
    assert swallowed == 1
    assert time.monotonic() - started < 2


async def test_stop_gives_up_on_a_task_that_never_ends_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = asyncio.Event()

    async def never_ends() -> None:
        while not released.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    supervisor = Supervisor()
    supervisor.start("stubborn", never_ends)
    await asyncio.sleep(0.01)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "stubborn"]
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="server.supervisor"):
        assert await supervisor.stop(within_s=0.5) is False
    assert time.monotonic() - started < 1.5
    assert "background tasks did not stop within 0.5s: ['stubborn']" in caplog.text
    # Let it go, or the test's own event loop would wait for it for ever.
    released.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.done()


async def test_two_tasks_of_one_name_are_refused() -> None:
    async def idle() -> None:
        await asyncio.sleep(3600)

    supervisor = Supervisor()
    supervisor.start("one", idle)
    with pytest.raises(ValueError, match="already running"):
        supervisor.start("one", idle)
    assert await supervisor.stop(within_s=2)
