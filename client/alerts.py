"""Alerts for one member: raising, confirming, acknowledging, retracting and listing them.

The rules are crypto/alerts.py's; this module applies them to the messages
this client verified and opened itself (client/messages.py), so an alert's
state (confirmed, retracted, how many acknowledged) is computed by every
member from signed, encrypted messages, never taken from the server. An
alert that arrived relayed (its provenance checked by the message layer)
counts as confirmed: a relayer let it leave its group only once it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from client.errors import ClientError
from client.groups import GroupRecord, ReadMessage
from client.messages import Messages
from client.rosters import Rosters
from client.sdk import Client
from crypto import alerts, roster
from crypto.alerts import ALERT_ID_BYTES, WIDE, Count, CountRecord
from crypto.encoding import Value, b32d, b32e
from crypto.keys import member_id_text
from crypto.roster import RosterState


@dataclass
class AlertView:
    """One alert as this client sees it across its groups."""

    alert_id: str
    text: str
    scope: str
    group: str  # where this client first saw it
    seq: int
    raised_by: str | None  # the raiser's member id where I am in their group; else None
    relayed_from: str | None  # the alias of the group it came from, when relayed to me
    raised_at: int
    confirmed: bool = False
    retracted: bool = False
    over_limit: bool = False
    acked_by_me: bool = False
    acknowledged: int = 0
    reached: int = 0
    groups: list[str] = field(default_factory=list)


def alert_id_of(message: ReadMessage) -> bytes:
    """The id of the alert a message's alert record names (b"" if it carries none)."""
    value = None if message.alert is None else message.alert.get("id")
    return value if isinstance(value, bytes) else b""


def records(history: Iterable[ReadMessage], kind: str, alert: bytes) -> list[ReadMessage]:
    """The messages of a group carrying an alert record of `kind` for `alert`, in order."""
    return [
        m
        for m in history
        if m.alert is not None and m.alert.get("kind") == kind and m.alert.get("id") == alert
    ]


def wide_alerts_of(history: Iterable[ReadMessage], sender: str) -> list[ReadMessage]:
    """A member's own (not relayed) wide alerts in a group, in order."""
    return [
        m
        for m in history
        if m.alert is not None
        and m.alert.get("kind") == "alert"
        and m.alert.get("scope") in WIDE
        and m.provenance is None
        and m.sender == sender
    ]


def over_limit(history: list[ReadMessage], message: ReadMessage, limit: int) -> bool:
    """Whether `message` is a wide alert beyond its raiser's daily limit in this group."""
    earlier = [
        m.sent_at for m in wide_alerts_of(history, message.sender) if m.cursor < message.cursor
    ]
    return not alerts.within_daily_limit(earlier, message.sent_at, limit)


def confirmed_in(history: list[ReadMessage], alert: ReadMessage) -> bool:
    """Relayed to this group, or confirmed here by a member other than its raiser."""
    if alert.provenance is not None:
        return True
    return any(
        m.sender != alert.sender for m in records(history, "alert_confirm", alert_id_of(alert))
    )


def retracted_in(history: list[ReadMessage], alert: ReadMessage) -> bool:
    """Retracted by its raiser here, or a retraction relayed here."""
    return any(
        m.provenance is not None or (alert.provenance is None and m.sender == alert.sender)
        for m in records(history, "alert_retract", alert_id_of(alert))
    )


def direction_of(message: ReadMessage | None) -> str | None:
    """Which way a relayed message came into its group ("up" or "down"); None if raised there."""
    if message is None or message.provenance is None:
        return None
    direction = message.provenance.get("direction")
    return direction if isinstance(direction, str) else None


def tally(
    history: list[ReadMessage],
    state: RosterState,
    alert: bytes,
    exclude: tuple[str, str] | None = None,
) -> Count:
    """An alert's reach as one group's verified roster and history show it (crypto/alerts.py)."""
    council = state.kind == "council"
    found = [
        CountRecord(m.sender, str(m.alert.get("dir")), Count(int(reached), int(acked)))
        for m in records(history, "alert_count", alert)
        if m.alert is not None
        and isinstance(reached := m.alert.get("reached"), int)
        and isinstance(acked := m.alert.get("acked"), int)
    ]
    spokesperson = state.spokesperson
    counts = alerts.accepted_counts(
        found,
        council=council,
        seat_holders=(
            member_id_text(seat.holder) for seat in state.seats.values() if seat.holder is not None
        ),
        spokesperson=None if spokesperson is None else member_id_text(spokesperson),
    )
    arrived = next(iter(records(history, "alert", alert)), None)
    return alerts.total(
        council=council,
        members=(member_id_text(m) for m in state.members),
        ackers=(m.sender for m in records(history, "alert_ack", alert)),
        counts=counts,
        came_up_from=arrived.sender if arrived and direction_of(arrived) == "up" else None,
        exclude=exclude,
    )


class Alerts:
    """My groups' alerts."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.messages = Messages(client)

    async def raise_alert(self, group_text: str, text: str, scope: str) -> dict[str, object]:
        if not text.strip():
            raise ClientError("empty_alert", "Say what the alert is about; nothing was sent.")
        group = await self.rosters.group(group_text)
        self.rosters.writable(group)
        record, _ = await self.messages.catch_up(group)
        limit = self.client.rules().policy.wide_alerts_per_day
        me = member_id_text(self.client.me)
        if scope in WIDE:
            mine = [m.sent_at for m in wide_alerts_of(record.history, me)]
            if not alerts.within_daily_limit(mine, self.client.now(), limit):
                raise ClientError(
                    "alert_limit",
                    f"You raised {limit} alerts beyond your group in the last 24 hours, the "
                    "network's limit; raise this one for your group only (--scope group). "
                    "Nothing was sent.",
                )
        alert_id = os.urandom(ALERT_ID_BYTES)
        extra: dict[str, Value] = {"alert": {"id": alert_id, "scope": scope}}
        sent = await self.messages.send(b32e(group), text, extra)
        note = (
            "A second member of your group must confirm it (`spokes alert confirm ID`) "
            "before it leaves the group."
            if scope in WIDE
            else ""
        )
        return {
            "alert_id": b32e(alert_id),
            "group": b32e(group),
            "seq": sent["cursor"],
            "note": note,
        }

    async def confirm(self, alert_text: str) -> dict[str, object]:
        group, record, alert = await self._find(alert_text)
        if alert.provenance is not None or alert.sender == member_id_text(self.client.me):
            raise ClientError(
                "not_confirmable",
                "Only a member of the raiser's own group, other than the raiser, confirms an "
                "alert. Nothing was sent.",
            )
        if alert.alert is None or alert.alert.get("scope") not in WIDE:
            raise ClientError("not_confirmable", "This alert stays in its group: no need.")
        return await self._send_record(group, record, "alert_confirm", alert)

    async def ack(self, alert_text: str) -> dict[str, object]:
        group, record, alert = await self._find(alert_text)
        return await self._send_record(group, record, "alert_ack", alert)

    async def retract(self, alert_text: str) -> dict[str, object]:
        group, record, alert = await self._find(alert_text)
        if alert.provenance is not None or alert.sender != member_id_text(self.client.me):
            raise ClientError(
                "not_raiser", "Only whoever raised an alert retracts it. Nothing was sent."
            )
        return await self._send_record(group, record, "alert_retract", alert)

    async def _send_record(
        self, group: bytes, record: GroupRecord, kind: str, alert: ReadMessage
    ) -> dict[str, object]:
        alert_id = alert_id_of(alert)
        me = member_id_text(self.client.me)
        if any(m.sender == me for m in records(record.history, kind, alert_id)):
            word = {"alert_ack": "acknowledged", "alert_confirm": "confirmed"}.get(
                kind, "retracted"
            )
            raise ClientError(f"already_{word}", f"You already {word} this alert.")
        self.rosters.writable(group)
        text = {"alert_ack": "seen", "alert_confirm": "confirmed", "alert_retract": "retracted"}
        sent = await self.messages.send(b32e(group), text[kind], {kind: {"id": alert_id}})
        return {"alert_id": b32e(alert_id), "group": b32e(group), "seq": sent["cursor"]}

    async def _find(self, alert_text: str) -> tuple[bytes, GroupRecord, ReadMessage]:
        try:
            alert_id = b32d(alert_text.strip())
        except ValueError:
            alert_id = b""
        if len(alert_id) != ALERT_ID_BYTES:
            raise ClientError("invalid_alert_id", f"{alert_text!r} is not an alert id.")
        for group in await self._groups():
            record, _ = await self.messages.catch_up(group)
            found = records(record.history, "alert", alert_id)
            if found:
                return group, record, found[0]
        raise ClientError("not_found", "No such alert in your groups; `spokes alerts` lists them.")

    async def _groups(self) -> list[bytes]:
        """My cell and the councils I sit in, each verified (client/rosters.py)."""
        return list(await self.rosters.sync_groups())

    async def alerts(self, since: int | None = None) -> list[AlertView]:
        """Every alert in my groups (raised there or relayed there), with what I know of it."""
        views: dict[bytes, AlertView] = {}
        limit = self.client.rules().policy.wide_alerts_per_day
        me = member_id_text(self.client.me)
        for group in await self._groups():
            record, _ = await self.messages.catch_up(group)
            state = roster.verify_log(record.events, rules=self.client.rules())
            history = record.history
            for message in history:
                if message.alert is None or message.alert.get("kind") != "alert":
                    continue
                alert_id = alert_id_of(message)
                view = views.get(alert_id)
                if view is None:
                    if since is not None and message.sent_at < since:
                        continue
                    alias = message.provenance.get("alias") if message.provenance else None
                    first = message.provenance.get("sent_at") if message.provenance else None
                    view = AlertView(
                        alert_id=b32e(alert_id),
                        text=message.text,
                        scope=str(message.alert.get("scope")),
                        group=b32e(group),
                        seq=message.cursor,
                        raised_by=None if message.provenance else message.sender,
                        relayed_from=str(alias) if alias is not None else None,
                        raised_at=first if isinstance(first, int) else message.sent_at,
                        over_limit=message.provenance is None
                        and message.alert.get("scope") in WIDE
                        and over_limit(history, message, limit),
                    )
                    views[alert_id] = view
                view.groups.append(b32e(group))
                view.confirmed = view.confirmed or confirmed_in(history, message)
                view.retracted = view.retracted or retracted_in(history, message)
                ackers = {m.sender for m in records(history, "alert_ack", alert_id)}
                view.acked_by_me = view.acked_by_me or me in ackers
                # The group where it was raised totals the whole tree once the
                # counts are in, others what lies beyond them: the widest view stands.
                seen = tally(history, state, alert_id)
                if (seen.reached, seen.acked) > (view.reached, view.acknowledged):
                    view.reached, view.acknowledged = seen.reached, seen.acked
        return sorted(views.values(), key=lambda v: v.raised_at)
