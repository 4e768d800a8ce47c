"""The message writer: group commit for one server instance.

Whatever arrives while one batch commits goes into the next; each batch is
checked and appended by services/messages.py in one transaction. The rule
this module keeps: within an instance, messages are appended in the order
they were submitted, and every submission's future ends, with its answer or
with the error that failed its whole batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from server.clock import Clock
from server.errors import ErrorCode
from server.services.common import api_error
from server.services.messages import MAX_BATCH, Accepted, Prepared, Submission, commit, prepare
from server.store.db import Pool
from server.store.events import EventRow
from server.verifier import Verifier

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 10.0
GroupsHook = Callable[[frozenset[bytes]], None]


class MessageWriter:
    """Group commit for one instance, in two stages that overlap.

    *Prepare* finds each message's sender and checks its signature (no
    lock; in the signature helper process when there is one); *commit* takes the groups' locks and appends. While one batch
    commits, the next is prepared. Both stages take batches in arrival order,
    so an instance appends messages in the order they were submitted.

    ``submit`` returns a future that ends with :class:`Accepted` or with the
    ApiError the message was refused with (or the database error that failed
    its whole batch, which rolled back every message in it).
    """

    def __init__(
        self,
        pool: Pool,
        clock: Clock,
        *,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[list[EventRow]], None] | None = None,
        around_commit: tuple[GroupsHook, GroupsHook] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self._pool = pool
        self._verifier = verifier
        self._on_commit = on_commit
        # Told which groups a batch appends to before it commits, and again once it
        # ended (committed and on_commit called, or failed).
        self._around_commit = around_commit
        self._clock = clock
        self._max_batch = max_batch
        self._queue: deque[tuple[Submission, asyncio.Future[Accepted]]] = deque()
        self._ready: deque[Prepared] = deque()
        self._preparing: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self.batches = 0
        self.messages = 0

    def submit(self, item: Submission) -> asyncio.Future[Accepted]:
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._preparing is None or self._preparing.done():
            self._preparing = asyncio.create_task(self._prepare_all())
        return future

    async def close(self, within_s: float = CLOSE_TIMEOUT_S) -> None:
        """Finish what was submitted (shutdown), for at most ``within_s`` seconds.

        A batch still waiting for the database then (an outage) is cancelled:
        its requests get no answer and their clients resend, which the
        message counter makes safe.
        """
        tasks = {t for t in (self._preparing, self._committing) if t is not None}
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=within_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("message batches still waiting at shutdown were abandoned")

    async def _prepare_all(self) -> None:
        while self._queue:
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            futures = [future for _, future in batch]
            try:
                prepared = await prepare(self._pool, [item for item, _ in batch], self._verifier)
            except Exception as exc:
                _fail(futures, exc)
                continue
            prepared.futures = futures
            self._ready.append(prepared)
            if self._committing is None or self._committing.done():
                self._committing = asyncio.create_task(self._commit_all())

    async def _commit_all(self) -> None:
        while self._ready:
            batch = Prepared.join([self._ready.popleft() for _ in range(len(self._ready))])
            groups = frozenset(item.group_id for item in batch.items)
            if self._around_commit is not None:
                self._around_commit[0](groups)
            try:
                rows = await commit(self._pool, batch, self._clock())
            except Exception as exc:  # the whole batch rolled back: each request says so
                _fail(batch.futures, exc)
                continue
            else:
                self.batches += 1
                if self._on_commit is not None and rows:
                    self._on_commit(rows)  # committed: this instance's sockets needn't read them
            finally:
                if self._around_commit is not None:
                    self._around_commit[1](groups)
            for future, result in zip(batch.futures, batch.results, strict=True):
                if future.done():
                    continue  # the request went away; its message stands (or not) all the same
                if isinstance(result, Accepted):
                    self.messages += 1
                    future.set_result(result)
                else:
                    future.set_exception(result or api_error(500, ErrorCode.INTERNAL, "unchecked"))


def _fail(futures: list[asyncio.Future[Accepted]], exc: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)
