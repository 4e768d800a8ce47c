"""`spokes council create|link|accept` and `spokes tree`: councils, and where I sit.

A spokesperson founds a council with their own seat; a council member moves
to link another group (others sign with `spokes sign MOTION`), and that
group's spokesperson takes the seat with `council accept`. Seats then follow
each group's elections and recalls on their own (client/councils.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from client.cli.common import Commands, Output, cell_names, client_command, run_duties
from client.councils import Councils
from client.profiles import Names
from client.sdk import Client

_SEAT_STATUS = {
    "posted": "the seat change was posted; its next key period leaves out whoever lost the seat",
    "up_to_date": "its seat already follows your group's last election",
    "left_to_holder": "it takes this change only from one of its members or the member it "
    "seats, whose client posts it at their next `spokes tree`",
    "unknown_anchor": "the server's account of the seat names an election your group's log "
    "does not hold, so nothing was posted; tell your group",
    "stale_motion": "it refused the seat change as stale (stale_motion): its seat already "
    "follows a later election, or the server's account of the seat was out of date",
}


def seat_lines(data: dict[str, Any]) -> list[str]:
    """What became of the group's seat in each council after an election or recall."""
    return [
        f"Council {s['council']}: "
        + _SEAT_STATUS.get(s["status"], f"it refused the seat change ({s['status']})")
        + "."
        for s in data.get("seats", [])
    ]


@client_command()
async def create(args: argparse.Namespace, client: Client) -> Output:
    data = await Councils(client).create(args.group, args.name)
    council = data["group_id"]
    named = f" ({args.name.strip()}, sealed to its members)" if args.name else ""
    return Output(
        data,
        f"Council {council}{named} founded, with your seat for your group.\n"
        f"Link another group: `spokes council link {council} GROUP`; its spokesperson "
        f"then runs `spokes council accept {council}`.",
    )


@client_command()
async def link(args: argparse.Namespace, client: Client) -> Output:
    data = await Councils(client).link(args.council, args.group)
    if data["waiting_for"] == "acceptance":
        next_step = (
            "The council's quorum has signed: the group's spokesperson takes the seat with "
            f"`spokes council accept {args.council}`."
        )
    else:
        next_step = (
            "It needs the council's quorum: its members sign with "
            f"`spokes sign {data['motion_id']}`; then the group's spokesperson runs "
            f"`spokes council accept {args.council}`."
        )
    return Output(data, f"Link motion {data['motion_id']} opened and signed by you. {next_step}")


@client_command()
async def accept(args: argparse.Namespace, client: Client) -> Output:
    data = await Councils(client).accept(args.council)
    return Output(
        data,
        f"You hold your group's seat in council {data['group_id']} now; "
        "`spokes tree` shows it, and `spokes send`/`read` work there as in your cell.",
    )


@client_command()
async def tree(args: argparse.Namespace, client: Client) -> Output:
    councils = Councils(client)
    await run_duties(client)  # my seats follow my groups' elections
    data = await councils.tree()
    names = await cell_names(client) if data["spokesperson"] else Names({})
    lines = [
        f"cell {data['cell']}, spokesperson "
        + (names.of_text(data["spokesperson"]) if data["spokesperson"] else "none elected")
    ]
    lines += [
        f"  council level {c['level']} {c['group']}"
        + (f" ({c['name']})" if c["name"] else "")
        + f": {c['seats']} seat(s), spokesperson "
        + (f"(id {c['spokesperson'][:10]})" if c["spokesperson"] else "none elected")
        for c in data["councils"]
    ]
    if not data["councils"]:
        lines.append("  (you sit in no council)")
    return Output(data, "\n".join(lines))


def register(commands: Commands) -> None:
    council = commands.group("council", "Found a council, link a group to it, take a seat.")
    creating = council.add(
        "create",
        "Found a council one level up, with your seat as your group's spokesperson.",
        create,
    )
    creating.add_argument(
        "--group",
        default="cell",
        help="the group you are spokesperson of: a group id (a council you sit in, for a "
        "council above it) (default: cell, your cell)",
    )
    creating.add_argument(
        "--name",
        default=None,
        help="a name for the council, 1 to 64 characters, sealed to its members like a "
        "message: the server never sees it (default: none)",
    )
    linking = council.add("link", "Open a council motion to give another group a seat in it.", link)
    linking.add_argument("council", help="the council's group id (`spokes tree`)")
    linking.add_argument("group", help="the id of the group to link, one level below")
    accepting = council.add(
        "accept",
        "Take the seat a council's motion offers the group you are spokesperson of.",
        accept,
    )
    accepting.add_argument("council", help="the council's group id, as its members told you")
    commands.add("tree", "Show your cell, its spokesperson, and the councils you sit in.", tree)
