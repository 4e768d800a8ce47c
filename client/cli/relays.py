"""`spokes relay`: carry a message between a group and the council where you hold its seat.

`read` and `watch` show a relayed message with its provenance: the alias of
the group it came from, when it was first sent, and who relayed it (its
sender), never who wrote it.
"""

from __future__ import annotations

import argparse

from client.cli.common import Commands, Output, client_command, when
from client.groups import ReadMessage
from client.relays import Relays
from client.sdk import Client
from crypto.encoding import b32e


def provenance_data(message: ReadMessage) -> dict[str, object] | None:
    """A relayed message's `provenance` object in --json (null for any other message)."""
    p = message.provenance
    if p is None:
        return None
    original = p.get("original")
    return {
        "alias": p.get("alias"),
        "direction": p.get("direction"),
        "sent_at": p.get("sent_at"),
        "original": b32e(original) if isinstance(original, bytes) else None,
        "relayer": message.sender,
    }


def provenance_mark(message: ReadMessage) -> str:
    """`[relayed from ALIAS, first sent …] ` for a relayed message; "" for any other."""
    p = message.provenance
    if p is None:
        return ""
    sent_at = p.get("sent_at")
    first = f", first sent {when(sent_at)}" if isinstance(sent_at, int) else ""
    direction, alias = str(p.get("direction")), str(p.get("alias"))
    return f"[relayed {direction} from {alias}{first}] "


@client_command()
async def relay(args: argparse.Namespace, client: Client) -> Output:
    data = await Relays(client).relay(args.group, args.seq, args.to, args.alias)
    return Output(
        {"group": data["group"], "seq": data["seq"]},
        f"Relayed into {data['group']} (seq {data['seq']}), without its writer's name.",
    )


def register(commands: Commands) -> None:
    relaying = commands.add(
        "relay",
        "Relay a message between a group you speak for and the council where you hold its seat.",
        relay,
    )
    relaying.add_argument("group", help="the group the message is in (a group id, or `cell`)")
    relaying.add_argument("seq", type=int, help="the message's number, as `spokes read` shows it")
    relaying.add_argument("--to", required=True, help="the group to relay it into (a group id)")
    relaying.add_argument(
        "--as",
        dest="alias",
        default=None,
        help="how the source group is named there (default: 'a cell' or 'a level-N council')",
    )
