"""The relay daemon: a spokesperson's client carrying alerts between levels as they arrive.

`spokes daemon` keeps one live feed open (client/feed.py, with its own
cursor) and, for each alert record that arrives in one of my groups, does
what my seats ask of me (the rules are crypto/alerts.py's, applied to what
this client verified):

- up, from a group I speak for into each council where I hold its seat: a
  wide alert (scope `up` or `network`) once it is confirmed (a second
  member of its group, or it came relayed) and within its raiser's daily
  limit; scope `up` goes one level only, `network` on up to the top; a
  retraction of an alert that went up;
- down, from a council into the group whose seat I hold there: an alert of
  scope `network`, and a retraction of an alert that went down;
- counts back toward where the alert was raised, across each link I hold
  (crypto/alerts.py `total`): up into the council when the alert came down
  to my group, down into my group when it came up from it, each time the
  number who have it or acknowledged it changes (counts, never names).
  Alerts go first: the links a record touched are counted once no alert
  came for COUNT_QUIET_S (at the latest COUNT_LATEST_S after), each link
  once however many records touched it.

Each alert goes into a group at most once: before relaying, the daemon
looks for the alert's id in the target group's history, so loops, repeats
and two daemons of one member add nothing. A member offline when an alert
passed finds it in their group's history on their next command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from client.alerts import alert_id_of, confirmed_in, direction_of, over_limit, records, tally
from client.errors import ClientError
from client.feed import LiveFeed
from client.groups import GroupRecord, ReadMessage
from client.messages import Messages
from client.relays import Relays
from client.rosters import CELL_RECHECK_S, Rosters
from client.sdk import Client
from crypto import roster
from crypto.alerts import WIDE
from crypto.encoding import Value, b32d, b32e
from crypto.keys import member_id_text

# Counts wait for the alerts to go on first: sent once no alert came for
# COUNT_QUIET_S, and at the latest COUNT_LATEST_S after a count went stale.
COUNT_QUIET_S = 0.3
COUNT_LATEST_S = 2.0
# My cell is looked at in full (client/rosters.py `sync_cell`: admissions, the
# network's revocations) when no alert came for CELL_IDLE_S and the last full
# look is CELL_RECHECK_S old; a relay in between uses the state the feed keeps.
CELL_IDLE_S = 1.0


@dataclass(frozen=True)
class Relayed:
    """One relay the daemon made."""

    alert_id: str
    kind: str
    source: str
    target: str
    seq: int
    direction: str


class Daemon:
    """My seats' relays of alerts, as they arrive."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.messages = Messages(client)
        self.relays = Relays(client)
        # Links whose count may have changed: (group below, council, alert).
        self._stale: dict[tuple[bytes, bytes, bytes], None] = {}

    async def run(self, seconds: float, count: int | None, emit: Callable[[Relayed], None]) -> int:
        """Relay for `seconds`, or until `count` relays were made; how many were made."""
        queue: asyncio.Queue[tuple[str, ReadMessage]] = asyncio.Queue()
        made = 0
        stop = asyncio.Event()

        async def work() -> None:
            nonlocal made
            stale_since = 0.0
            while True:
                # Alerts first; counts once none came for COUNT_QUIET_S (or
                # COUNT_LATEST_S after a link's count changed), each link once;
                # a full look at my cell when nothing came for CELL_IDLE_S.
                if self._stale:
                    wait = min(COUNT_QUIET_S, stale_since + COUNT_LATEST_S - time.monotonic())
                else:
                    wait = CELL_IDLE_S
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, wait))
                except TimeoutError:
                    item = None
                done: list[Relayed] = []
                if item is None and self._stale:
                    async with self.client.fresh():
                        done = await self.counts()
                        self.client.save()
                elif item is None:
                    if time.monotonic() - self.client.cell_checked_at >= CELL_RECHECK_S:
                        async with self.client.fresh():
                            await self.rosters.recheck_cell()
                            self.client.save()
                elif item[1].alert is not None:
                    stale_before = bool(self._stale)
                    async with self.client.fresh():
                        done = await self.handle(b32d(item[0]), item[1])
                        self.client.save()
                    if self._stale and not stale_before:
                        stale_since = time.monotonic()
                for relayed in done:
                    emit(relayed)
                made += len(done)
                if count is not None and made >= count:
                    stop.set()
                    return

        # Roster states are kept between events: the feed below brings every
        # event of my groups, and a roster event drops its group's (Client.following).
        self.client.following = {}
        worker = asyncio.create_task(work())
        feed = asyncio.create_task(
            LiveFeed(self.client, view="daemon").watch(
                None, seconds, lambda g, m: queue.put_nowait((g, m))
            )
        )
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({feed, stopped, worker}, return_when=asyncio.FIRST_COMPLETED)
            if worker.done() and worker.exception() is not None:
                raise worker.exception()  # type: ignore[misc]
            if feed.done() and feed.exception() is not None:
                raise feed.exception()  # type: ignore[misc]
        finally:
            for task in (feed, worker, stopped):
                task.cancel()
            await asyncio.gather(feed, worker, stopped, return_exceptions=True)
            self.client.following = None
        return made

    async def handle(self, group: bytes, message: ReadMessage) -> list[Relayed]:
        """What my seats ask of me for one alert record in `group` (the lock held)."""
        record = self.client.state.record(group)
        state = roster.verify_log(record.events, rules=self.client.rules())
        done: list[Relayed] = []
        links = []  # (group below, council above) of each seat I hold that touches `group`
        for council in self._councils_holding(group):
            done += await self._up(group, record, council, message)
            links.append((group, council))
        if state.kind == "council":
            for below, seat in state.seats.items():
                if seat.holder == self.client.me and self.rosters.verified(below):
                    done += await self._down(group, record, below, message)
                    links.append((below, group))
        for below, council in links:
            self._stale[(below, council, alert_id_of(message))] = None
        return done

    async def counts(self) -> list[Relayed]:
        """The counts of every link touched since the last time (the lock held)."""
        stale, self._stale = list(self._stale), {}
        done: list[Relayed] = []
        for below, council, alert in stale:
            done += await self._count(below, council, alert)
        return done

    def _councils_holding(self, group: bytes) -> list[bytes]:
        """The verified councils where I hold `group`'s seat."""
        found = []
        for council in self.rosters.verified_groups():
            record = self.client.state.record(council)
            if not record.events:
                continue
            state = roster.verify_log(record.events, rules=self.client.rules())
            seat = state.seats.get(group)
            if state.kind == "council" and seat is not None and seat.holder == self.client.me:
                found.append(council)
        return found

    async def _up(
        self, group: bytes, record: GroupRecord, council: bytes, message: ReadMessage
    ) -> list[Relayed]:
        alert_id = alert_id_of(message)
        alert = next(iter(records(record.history, "alert", alert_id)), None)
        if alert is None or alert.alert is None:
            return []
        kind = str(message.alert.get("kind")) if message.alert else ""
        target = await self._caught_up(council)
        there = bool(records(target.history, "alert", alert_id))
        done = []
        if not there and self._goes_up(record, alert):
            done.append(await self._relay(group, alert, council, "up"))
            there = True
        if (
            kind == "alert_retract"
            and there
            and not records(target.history, "alert_retract", alert_id)
        ):
            done.append(await self._relay(group, message, council, "up"))
        return done

    def _goes_up(self, record: GroupRecord, alert: ReadMessage) -> bool:
        """Whether an alert in a group I speak for leaves it upward (crypto/alerts.py's rules)."""
        scope = alert.alert.get("scope") if alert.alert else None
        direction = alert.provenance.get("direction") if alert.provenance else None
        if scope not in WIDE or direction == "down" or (scope == "up" and direction == "up"):
            return False  # for this group only; from above; or one level up already
        limit = self.client.rules().policy.wide_alerts_per_day
        if alert.provenance is None and over_limit(record.history, alert, limit):
            return False
        return confirmed_in(record.history, alert)

    async def _down(
        self, council: bytes, record: GroupRecord, below: bytes, message: ReadMessage
    ) -> list[Relayed]:
        alert_id = alert_id_of(message)
        alert = next(iter(records(record.history, "alert", alert_id)), None)
        if alert is None or alert.alert is None or alert.alert.get("scope") != "network":
            return []
        target = await self._caught_up(below)
        done = []
        if not records(target.history, "alert", alert_id):
            done.append(await self._relay(council, alert, below, "down"))
        kind = str(message.alert.get("kind")) if message.alert else ""
        if kind == "alert_retract" and not records(target.history, "alert_retract", alert_id):
            done.append(await self._relay(council, message, below, "down"))
        return done

    async def _count(self, below: bytes, council: bytes, alert: bytes) -> list[Relayed]:
        """Across my link (below, council): the far side's count toward the alert's origin.

        Sent only when it differs from the last one I sent that way.
        """
        lower, upper = await self._caught_up(below), await self._caught_up(council)
        in_lower = next(iter(records(lower.history, "alert", alert)), None)
        in_upper = next(iter(records(upper.history, "alert", alert)), None)
        if in_lower is None or in_upper is None:
            return []
        me = member_id_text(self.client.me)
        if direction_of(in_lower) == "down":  # it came down to `below`: count that side, up
            source, target, direction = below, council, "up"
        elif direction_of(in_upper) == "up":  # it came up from `below`: count above, down
            source, target, direction = council, below, "down"
        else:
            return []
        source_record = lower if source == below else upper
        state = roster.verify_log(source_record.events, rules=self.client.rules())
        back = "down" if direction == "up" else "up"  # what came across this link toward me
        count = tally(source_record.history, state, alert, exclude=(me, back))
        target_record = upper if target == council else lower
        sent_before = [
            m.alert
            for m in records(target_record.history, "alert_count", alert)
            if m.sender == me and m.alert is not None and m.alert.get("dir") == direction
        ]
        if sent_before and (sent_before[-1].get("reached"), sent_before[-1].get("acked")) == (
            count.reached,
            count.acked,
        ):
            return []
        extra: dict[str, Value] = {
            "alert_count": {
                "id": alert,
                "reached": count.reached,
                "acked": count.acked,
                "dir": direction,
            }
        }
        text = f"{count.acked} of {count.reached} acknowledged"
        sent = await self.messages.send(b32e(target), text, extra)
        return [
            Relayed(
                b32e(alert), "alert_count", b32e(source), b32e(target), sent["cursor"], direction
            )
        ]

    async def _caught_up(self, group: bytes) -> GroupRecord:
        record, _ = await self.messages.catch_up(group)
        return record

    async def _relay(
        self, source: bytes, message: ReadMessage, target: bytes, direction: str
    ) -> Relayed:
        try:
            sent = await self.relays.relay(b32e(source), message.cursor, b32e(target), None)
        except ClientError as exc:
            raise ClientError(
                exc.code, f"The daemon could not relay an alert {direction}: {exc.message}"
            ) from exc
        kind = str(message.alert.get("kind")) if message.alert else "alert"
        return Relayed(
            b32e(alert_id_of(message)),
            kind,
            b32e(source),
            b32e(target),
            int(sent["seq"]),
            direction,
        )
