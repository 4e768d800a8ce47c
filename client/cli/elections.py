"""`spokes elect` and `spokes recall`: a group's spokesperson, by motion.

Others sign the motion with `spokes sign MOTION`; the signature that
completes the quorum carries it out (client/elections.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from client.cli.common import Commands, Output, client_command
from client.cli.council import seat_lines
from client.elections import Elections
from client.sdk import Client

NEXT_STEP = (
    "It takes effect once the policy's quorum of the group's members (a majority unless the "
    "network chose otherwise) have signed: "
    "they run `spokes sign {motion}`."
)


def _text(action: str, data: dict[str, Any]) -> str:
    if data["status"] == "done":
        done = f"{action} motion {data['motion_id']} opened and carried out at once."
        return "\n".join([done, *seat_lines(data)])
    return f"{action} motion {data['motion_id']} opened and signed by you. " + NEXT_STEP.format(
        motion=data["motion_id"]
    )


@client_command()
async def elect(args: argparse.Namespace, client: Client) -> Output:
    data = await Elections(client).elect(args.group, args.member)
    return Output(data, _text("Election", data))


@client_command()
async def recall(args: argparse.Namespace, client: Client) -> Output:
    data = await Elections(client).recall(args.group)
    return Output(data, _text("Recall", data))


def register(commands: Commands) -> None:
    electing = commands.add(
        "elect", "Open a motion to elect a member your group's spokesperson.", elect
    )
    electing.add_argument("group", help="a group id, or `cell` for your cell")
    electing.add_argument("member", help="the member id of the one to elect")
    recalling = commands.add(
        "recall",
        "Open a motion to recall your group's spokesperson (no reason needed).",
        recall,
    )
    recalling.add_argument("group", help="a group id, or `cell` for your cell")
