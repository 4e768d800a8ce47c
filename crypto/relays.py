"""Relays: a message carried from one group into a linked one, with its provenance sealed inside.

A spokesperson re-seals a message of one group as a message of their own in
a linked group: up from the group they speak for into the council where they
hold its seat, or down from that council into the group. The relayed
message's sealed content carries its provenance, never the original
sender's identity:

    {"alias": the label the relayer gives the source (at most 64 characters),
     "direction": "up" | "down",
     "original": SHA-256(RELAY_ORIGINAL ‖ source group id ‖ the original's message id),
     "sent_at": the original's sealed time}

The rule this module keeps, checked by every receiving client against the
roster state the relayed message names (its sender's head): an `up` relay
arrives in a council from a member who holds one of its seats; a `down`
relay arrives in a group from that group's spokesperson (its delegate in the
council above). The relayer is the relayed message's signed sender.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from crypto import labels
from crypto.encoding import Value
from crypto.errors import RuleViolation
from crypto.roster_state import RosterState

DIRECTIONS = ("up", "down")
MAX_ALIAS = 64


@dataclass(frozen=True)
class Provenance:
    alias: str
    direction: str
    original: bytes
    sent_at: int

    def to_value(self) -> dict[str, Value]:
        return {
            "alias": self.alias,
            "direction": self.direction,
            "original": self.original,
            "sent_at": self.sent_at,
        }


def original_hash(group: bytes, message_id: bytes) -> bytes:
    """What names the relayed message wherever it goes: its group and its message id."""
    return hashlib.sha256(labels.RELAY_ORIGINAL + group + message_id).digest()


def parse_provenance(value: Value) -> Provenance:
    if not isinstance(value, dict) or set(value) != {"alias", "direction", "original", "sent_at"}:
        raise RuleViolation("invalid_relay", "a relay's provenance is malformed")
    alias, direction, original, sent_at = (
        value["alias"],
        value["direction"],
        value["original"],
        value["sent_at"],
    )
    if (
        not isinstance(alias, str)
        or not 1 <= len(alias) <= MAX_ALIAS
        or not isinstance(direction, str)
        or direction not in DIRECTIONS
        or not isinstance(original, bytes)
        or len(original) != 32
        or not isinstance(sent_at, int)
        or isinstance(sent_at, bool)
        or sent_at < 0
    ):
        raise RuleViolation("invalid_relay", "a relay's provenance is malformed")
    return Provenance(alias, direction, original, sent_at)


def check_relayer(state: RosterState, relayer: bytes, provenance: Provenance) -> None:
    """Raise unless `relayer` may relay into the group of `state` in the provenance's direction."""
    if provenance.direction == "up":
        if state.kind != "council" or not any(
            seat.holder == relayer for seat in state.seats.values()
        ):
            raise RuleViolation(
                "invalid_relay", "a relay up comes from a seat holder of the council it enters"
            )
    elif state.spokesperson != relayer:
        raise RuleViolation("invalid_relay", "a relay down comes from the group's own spokesperson")
