"""Relaying a message between linked groups, for the spokesperson who links them.

The rule it keeps: I relay only what I read myself, only between two groups
my own verified logs link through me (up: the council holds my group's seat
and I hold it; down: that council's seat for the group is mine and I am the
group's spokesperson), and the relayed message carries its provenance
(crypto/relays.py) but never the original sender's identity. Every reader
checks the provenance against the roster (client/messages.py).
"""

from __future__ import annotations

from typing import Any

from client.alerts import alert_id_of, records
from client.errors import ClientError
from client.messages import Messages
from client.rosters import Rosters
from client.sdk import Client
from crypto.encoding import Value, b32d, b32e
from crypto.relays import MAX_ALIAS, Provenance, original_hash
from crypto.roster import RosterState


class Relays:
    """Carrying messages up to my council and down to my group."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.messages = Messages(client)

    async def relay(
        self,
        source_text: str,
        seq: int,
        target_text: str,
        alias: str | None,
        *,
        extra: dict[str, Value] | None = None,
    ) -> dict[str, Any]:
        """Relay the message at `seq`; `extra` seals more beside it (a mandate)."""
        source = await self.rosters.group(source_text)
        target = self.rosters.resolve(target_text)
        if source == target:
            raise ClientError(
                "relay_loop", "A message is relayed into another group. Nothing was sent."
            )
        record, _ = await self.messages.catch_up(source)
        message = next((m for m in record.history if m.cursor == seq), None)
        if message is None:
            raise ClientError(
                "not_found",
                f"No message at {seq} in {b32e(source)} that you have read; "
                "`spokes read GROUP --since 0` shows what you hold.",
            )
        if message.provenance is not None and message.alert is None:
            raise ClientError(
                "relay_loop",
                "A relayed message is not relayed again (only alerts travel on, once into "
                "each group). Nothing was sent.",
            )
        _, source_state = await self.rosters.sync_roster(source)
        _, target_state = await self.rosters.sync_roster(target)
        direction = self._direction(source_state, target_state)
        if message.alert is not None:
            there, _ = await self.messages.catch_up(target)
            if records(there.history, str(message.alert.get("kind")), alert_id_of(message)):
                raise ClientError(
                    "relay_loop",
                    "That group already has this alert record (an alert goes into each "
                    "group once, whichever way it came). Nothing was sent.",
                )
        label = alias or _default_alias(source_state)
        if not 1 <= len(label) <= MAX_ALIAS:
            raise ClientError("invalid_alias", f"An alias is 1 to {MAX_ALIAS} characters.")
        original = original_hash(source, b32d(message.message_id))
        first = message.provenance.get("sent_at") if message.provenance else message.sent_at
        provenance = Provenance(
            label, direction, original, first if isinstance(first, int) else message.sent_at
        )
        sealed: dict[str, Value] = {**(extra or {}), "relay": provenance.to_value()}
        if message.alert is not None:  # an alert travels as itself, under its own id
            carried: dict[str, Value] = {k: v for k, v in message.alert.items() if k != "kind"}
            sealed[str(message.alert["kind"])] = carried
        sent = await self.messages.send(b32e(target), message.text, extra=sealed)
        return {"group": b32e(target), "seq": sent["cursor"], "message_id": sent["message_id"]}

    def _direction(self, source: RosterState, target: RosterState) -> str:
        me = self.client.me
        seat = target.seats.get(source.group)
        if target.kind == "council" and seat is not None and seat.holder == me:
            return "up"
        seat = source.seats.get(target.group)
        if (
            source.kind == "council"
            and seat is not None
            and seat.holder == me
            and target.spokesperson == me
        ):
            return "down"
        raise ClientError(
            "not_a_relayer",
            "You relay only between a group you speak for and the council where you hold "
            "its seat (`spokes tree` shows yours). Nothing was sent.",
        )


def _default_alias(state: RosterState) -> str:
    return "a cell" if state.kind == "cell" else f"a level-{state.level} council"
