"""Background tasks that come back when they crash and always stop.

Every long-running task of the server (the hub's listener, its timers, the
rate-limit pruner) runs under a ``Supervisor``: a crash is logged (its type
only: no member data), counted, and the task restarted after a short
backoff. ``stop`` cancels the tasks and keeps cancelling until they end, but
never waits longer than it is told: Python 3.11's ``asyncio.wait_for`` can
swallow a cancellation that arrives just as the awaited work finishes, and a
task that missed its one cancellation would hold a shutdown for ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (0.1, 5.0)
STOP_TIMEOUT_S = 10.0
_RECANCEL_S = 0.2

Work = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """Named background tasks: restarted on a crash, stopped within a bound."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.crashes: Counter[str] = Counter()  # task name -> crashes so far (0 included)

    def start(self, name: str, work: Work) -> None:
        """Run ``work()`` as task ``name``, again after each crash or return."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already running")
        self._tasks[name] = asyncio.create_task(self._keep(name, work), name=name)
        self.crashes.setdefault(name, 0)  # listed in the metrics before its first crash

    def running(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if not task.done())

    async def stop(self, within_s: float = STOP_TIMEOUT_S) -> bool:
        """Cancel every task until it ends; False if some outlived ``within_s``."""
        self._stopping = True
        pending = set(self._tasks.values())
        deadline = time.monotonic() + within_s
        while pending:
            for task in pending:
                task.cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=min(_RECANCEL_S, left))
        self._tasks = {}
        if pending:
            names = sorted(task.get_name() for task in pending)
            log.error("background tasks did not stop within %.1fs: %s", within_s, names)
            return False
        return True

    async def _keep(self, name: str, work: Work) -> None:
        delay = RESTART_BACKOFF_S[0]
        while not self._stopping:
            started = time.monotonic()
            try:
                await work()
                log.error("background task %s returned; restarting it", name)
            except asyncio.CancelledError:
                if self._stopping:
                    raise
                # Cancelled by something other than stop(): still a crash.
                log.error("background task %s was cancelled; restarting it", name)
            except Exception as exc:
                log.error(
                    "background task %s crashed (%s); restarting it", name, type(exc).__name__
                )
            self.crashes[name] += 1
            if time.monotonic() - started > RESTART_BACKOFF_S[1] * 2:
                delay = RESTART_BACKOFF_S[0]  # it ran a good while: start the backoff anew
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF_S[1])
