"""`spokes motions`, `sign` and `cell split`: motions of my groups."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from client.cli.common import Commands, Output, cell_names, client_command
from client.cli.council import seat_lines
from client.motions import Motions
from client.profiles import Names
from client.sdk import Client
from crypto.keys import parse_member_id


@client_command()
async def motions(args: argparse.Namespace, client: Client) -> Output:
    views = await Motions(client).motions()
    names = await cell_names(client) if views else Names({})
    lines = [
        f"{v.motion_id}  {v.kind} of {v.group_id}: {v.signatures}/{v.needed} signatures"
        + (" (you signed)" if v.signed_by_me else "")
        + (f"\n    moving {', '.join(names.of_text(m) for m in v.moved)}" if v.moved else "")
        + (f"\n    {v.kind}ing {names.of_text(v.member)}" if v.member else "")
        + (f"\n    reason (sealed to you): {v.reason}" if v.reason else "")
        + (f"\n    linking group {v.links} (its spokesperson then accepts)" if v.links else "")
        for v in views
    ]
    data = [
        {**asdict(v), "moved_names": [names.verified.get(parse_member_id(m)) for m in v.moved]}
        for v in views
    ]
    return Output({"motions": data}, "\n".join(lines) or "No open motions.")


@client_command()
async def sign(args: argparse.Namespace, client: Client) -> Output:
    data = await Motions(client).sign(args.motion)
    return Output(data, signed_text(data))


def signed_text(data: dict[str, Any]) -> str:
    motion, kind = data["motion_id"], data.get("kind")
    if kind == "link":
        if data.get("waiting_for") == "acceptance":
            return (
                f"Signed motion {motion}: the council's quorum has signed. The seat is taken "
                "once the linked group's spokesperson runs `spokes council accept COUNCIL`."
            )
        return f"Signed motion {motion}. `spokes motions` shows how many signatures it has."
    if kind == "expel":
        if data["status"] != "done":
            return (
                f"Signed motion {motion}. The expulsion takes effect once the quorum has "
                "signed; `spokes motions` shows how many have."
            )
        return (
            f"Signed motion {motion}: yours was the last signature it needed. "
            f"{data['member_id']} is expelled: their sessions ended, they are off the roster, "
            "and the next message starts a key period without them."
        )
    if kind in ("elect", "recall"):
        if data["status"] != "done":
            return (
                f"Signed motion {motion}. It takes effect once the group's quorum has signed; "
                "`spokes motions` shows how many have."
            )
        text = (
            f"Signed motion {motion}: yours was the last signature it needed, and the {kind} "
            "took effect. `spokes cells` shows the spokesperson now."
        )
        return "\n".join([text, *seat_lines(data)])
    if data["status"] == "done":
        return (
            f"Signed motion {motion}: yours was the last signature it needed, and "
            "the split took effect. `spokes cells` shows your cell now."
        )
    return (
        f"Signed motion {motion}. The split takes effect when the last member "
        "who moves signs; `spokes motions` shows how many have."
    )


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
