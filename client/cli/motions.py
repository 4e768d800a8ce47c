"""`spokes motions`, `sign` and `cell split`: motions of my groups."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from client.cli.common import Commands, Output, client_command
from client.motions import Motions
from client.sdk import Client


@client_command()
async def motions(args: argparse.Namespace, client: Client) -> Output:
    views = await Motions(client).motions()
    lines = [
        f"{v.motion_id}  {v.kind} of {v.group_id}: {v.signatures}/{v.needed} signatures"
        + (" (you signed)" if v.signed_by_me else "")
        for v in views
    ]
    return Output({"motions": [asdict(v) for v in views]}, "\n".join(lines) or "No open motions.")


@client_command()
async def sign(args: argparse.Namespace, client: Client) -> Output:
    data = await Motions(client).sign(args.motion)
    done = "it took effect" if data["status"] == "done" else "it needs more signatures"
    return Output(data, f"Signed motion {data['motion_id']}; {done}.")


@client_command()
async def split(args: argparse.Namespace, client: Client) -> Output:
    data = await Motions(client).split(args.group, args.member)
    text = (
        f"Split motion {data['motion_id']} opened; the new cell will be {data['group_id']}.\n"
        "Each member who moves signs it with `spokes sign MOTION`."
    )
    return Output(data, text)


def register(commands: Commands) -> None:
    commands.add("motions", "List open motions in your groups.", motions)
    signing = commands.add("sign", "Sign a motion you are asked to sign.", sign)
    signing.add_argument("motion", help="the motion id, from `spokes motions`")

    cell = commands.group("cell", "Change your cell.")
    splitting = cell.add(
        "split", "Move chosen members to a new cell, once each of them signs.", split
    )
    splitting.add_argument("group", help="the cell to split (a group id, or `cell`)")
    splitting.add_argument(
        "--member", action="append", required=True, help="a member who moves (repeat)"
    )
