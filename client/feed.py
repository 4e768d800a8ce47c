"""The live feed for one member: messages printed as they arrive on the socket.

The rule it keeps: the home's lock is never held while the socket is
waited on; each batch of events is read under the lock, against the
keystore re-read from disk, and saved before the lock is let go.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from client import api, verify
from client.errors import ClientError
from client.groups import EpochInfo, ReadMessage, check_seqs, epoch_infos, lying
from client.messages import Messages
from client.rosters import Rosters
from client.sdk import Client
from crypto.encoding import b32e
from crypto.network import GROUP_ID_BYTES


class LiveFeed:
    """My groups' events as they arrive."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.messages = Messages(client)

    async def watch(
        self, count: int | None, seconds: float, emit: Callable[[str, ReadMessage], None]
    ) -> int:
        """Print messages as they arrive on the socket, resuming from the stored cursors.

        The home's lock is not held while the socket is waited on: each batch
        of events is read under the lock against the keystore re-read from
        disk, and saved before the lock is let go, so other commands from this
        home (a send) can run meanwhile and nothing stale is written back.
        """
        deadline = time.monotonic() + seconds
        async with self.client.fresh():
            await self.rosters.sync_cell()
            cursors = {}
            for group in self.rosters.verified_groups():
                record, _ = await self.rosters.sync_roster(group)
                cursors[b32e(group)] = record.cursor
            self.client.save()
            feed = await self.client.open_feed()
        infos: dict[bytes, tuple[int, dict[int, EpochInfo]]] = {}
        received = 0
        try:
            await feed.send({"type": "subscribe", "cursors": cursors})
            while count is None or received < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                data = await feed.receive(left)
                if data is None:
                    break
                batch = [data]
                while feed.buffered:  # the rest of a batch frame, already here
                    more = await feed.receive(0)
                    if more is not None:
                        batch.append(more)
                read: list[tuple[str, ReadMessage]] = []
                async with self.client.fresh():
                    for item in batch:
                        if count is not None and received + len(read) >= count:
                            break
                        found = await self._live_event(item, infos)
                        if found is not None:
                            read.append(found)
                    self.client.save()
                for group_text, message in read:
                    emit(group_text, message)
                received += len(read)
        finally:
            await feed.close()
        return received

    async def _live_event(
        self, data: dict[str, Any], infos: dict[bytes, tuple[int, dict[int, EpochInfo]]]
    ) -> tuple[str, ReadMessage] | None:
        """One event from the live feed, against the keystore just re-read (lock held)."""
        kind = data.get("type")
        if kind == "error":
            raise ClientError(
                str(data.get("code") or "feed_error"),
                f"The live feed refused: {data.get('message')}",
            )
        if kind != "event":
            return None
        event = api.parse_event(data)
        group = verify.parse_id(event.group, GROUP_ID_BYTES, "group id")
        if not self.rosters.verified(group):
            raise lying("the live feed sent an event of a group you did not subscribe to")
        record = self.client.state.record(group)
        if event.seq <= record.cursor:
            return None  # another command from this home read it meanwhile
        check_seqs(record.cursor, [event.seq])
        if event.kind == "roster":
            record, _ = await self.rosters.sync_roster(group)
        known = infos.get(group)
        if known is None or known[0] != len(record.events):
            known = (len(record.events), epoch_infos(record.events, rules=self.client.rules()))
            infos[group] = known
        message = await self.messages.absorb(record, known[1], event)
        record.cursor = event.seq
        return None if message is None else (b32e(group), message)
