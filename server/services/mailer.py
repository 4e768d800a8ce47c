"""The mail worker: sends due notices from the outbox, retrying with backoff.

Every instance runs one under the app's Supervisor; ``claim_due`` (FOR
UPDATE SKIP LOCKED, then a lease) means two workers never claim one notice.
The rules it keeps: a notice leaves the outbox only once the mail server
took it (or refused its address for good, or it is older than
``NOTICE_TTL``); a mail server that is down only moves ``next_attempt_at``
on (doubling from ``retry_s[0]`` up to ``retry_s[1]``); nothing here is on
an API request's path. A worker that dies between handing a mail over and
deleting its row sends it again after the lease: at least once, never lost.
Logs carry counts and exception types only: no address, no member id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from email.message import EmailMessage

from server.clock import Clock
from server.errors import DATABASE_OUTAGE
from server.mail import (
    Delivery,
    MailKeyError,
    NoticeKind,
    Outcome,
    compose,
    deliver,
    open_address,
)
from server.settings import Settings, SmtpSettings
from server.store import notices as store
from server.store.db import Pool, transaction

log = logging.getLogger(__name__)

BATCH = 50
# A claimed notice is not due again before this: longer than any round
# (ROUND_LIMIT_S), so a slow round never overlaps another worker's claim.
LEASE = timedelta(minutes=5)
ROUND_LIMIT_S = 120.0
NOTICE_TTL = timedelta(days=3)  # "activity is waiting", days late, helps nobody
PRUNE_EVERY_S = 600.0


class Mailer:
    """One instance's mail worker (``run`` forever; ``send_due`` is one round)."""

    def __init__(
        self,
        pool: Pool,
        smtp: SmtpSettings,
        key: bytes,
        clock: Clock,
        *,
        poll_s: float = 2.0,
        retry_s: tuple[float, float] = (30.0, 3600.0),
        batch: int = BATCH,
    ) -> None:
        self._pool = pool
        self._smtp = smtp
        self._key = key
        self._clock = clock
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._batch = batch
        self._failing = False  # the last round could not reach the mail server
        self._pruned_at = float("-inf")
        # Notices by outcome: sent (handed over), deferred (the mail server said
        # later, or was unreachable), refused (the address, for good),
        # unreadable (the address does not open under this mail key).
        self.outcomes: Counter[str] = Counter(sent=0, deferred=0, refused=0, unreadable=0)

    @classmethod
    def from_settings(cls, pool: Pool, settings: Settings, clock: Clock) -> Mailer | None:
        """The worker for these settings, or None when mail notices are off."""
        if settings.smtp is None or settings.mail_key is None:
            return None
        return cls(
            pool,
            settings.smtp,
            settings.mail_key,
            clock,
            poll_s=settings.mail_poll_s,
            retry_s=settings.mail_retry_s,
        )

    async def run(self) -> None:
        """Send what is due, then look again after ``poll_s`` (at once after a full round)."""
        while True:
            try:
                claimed = await self.send_due()
            except DATABASE_OUTAGE as exc:
                # The notices wait in the database; this round claimed nothing it lost.
                log.warning("mail: the database is unreachable (%s)", type(exc).__name__)
                claimed = 0
            if claimed < self._batch:
                await asyncio.sleep(self._poll_s)

    async def send_due(self) -> int:
        """One round: claim due notices, hand them over, settle each; how many were claimed."""
        now = self._clock()
        await self._prune(now)
        async with self._pool.acquire() as conn:
            due = await store.claim_due(conn, now, now + LEASE, self._batch)
        if not due:
            return 0
        ready: list[store.DueNotice] = []
        unreadable: list[int] = []
        mails: list[EmailMessage] = []
        for notice in due:
            try:
                address = open_address(self._key, notice.member_id, notice.sealed)
            except MailKeyError:
                unreadable.append(notice.notice_id)
                continue
            ready.append(notice)
            mails.append(compose(self._smtp, address, NoticeKind(notice.kind), now))
        delivery = await deliver(self._smtp, mails, ROUND_LIMIT_S)
        outcomes = list(zip(ready, delivery.outcomes, strict=True))
        done = [n.notice_id for n, outcome in outcomes if outcome != Outcome.RETRY]
        retries = [
            (n.notice_id, now + self._backoff(n.attempts))
            for n, outcome in outcomes
            if outcome == Outcome.RETRY
        ]
        async with transaction(self._pool) as conn:
            await store.delete_notices(conn, done + unreadable)
            await store.reschedule(conn, retries)
        self._report(delivery, len(retries), len(unreadable))
        return len(due)

    def _backoff(self, attempts: int) -> timedelta:
        first, longest = self._retry_s
        return timedelta(seconds=min(first * 2 ** max(attempts - 1, 0), longest))

    def _report(self, delivery: Delivery, retries: int, unreadable: int) -> None:
        sent = delivery.outcomes.count(Outcome.SENT)
        refused = delivery.outcomes.count(Outcome.REFUSED)
        self.outcomes.update(sent=sent, deferred=retries, refused=refused, unreadable=unreadable)
        if delivery.error is not None and not self._failing:
            log.warning(
                "mail: the mail server is unreachable (%s); notices wait and are retried",
                delivery.error,
            )
        elif delivery.error is None and self._failing:
            log.warning("mail: the mail server is reachable again")
        self._failing = delivery.error is not None
        if sent:
            log.info("mail: sent %d notices", sent)
        if retries and delivery.error is None:
            log.warning("mail: %d notices were deferred by the mail server", retries)
        if refused:
            log.warning("mail: the mail server refused %d addresses for good", refused)
        if unreadable:
            log.error(
                "mail: %d addresses do not open under this mail key (was it changed?); "
                "their notices were dropped",
                unreadable,
            )

    async def _prune(self, now: datetime) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        async with self._pool.acquire() as conn:
            dropped = await store.prune_notices(conn, now - NOTICE_TTL)
        if dropped:
            log.warning("mail: %d notices older than %s were dropped unsent", dropped, NOTICE_TTL)
