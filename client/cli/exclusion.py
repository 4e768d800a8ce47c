"""`spokes expel`, `freeze`, `unfreeze`: motions about a member (others sign with
`spokes sign MOTION`)."""

from __future__ import annotations

import argparse
from typing import Any

from client.cli.common import Commands, Output, client_command
from client.exclusion import Exclusion
from client.sdk import Client


@client_command()
async def expel(args: argparse.Namespace, client: Client) -> Output:
    data = await Exclusion(client).expel(args.member, args.reason, args.group)
    if data["status"] == "done":
        text = (
            f"Expulsion motion {data['motion_id']} opened and carried out at once: "
            f"{data['member_id']} is expelled."
        )
    else:
        text = (
            f"Expulsion motion {data['motion_id']} opened and signed by you "
            f"(1 of the {data['needed']} signatures it needs; the subject's never counts). "
            f"The others run `spokes sign {data['motion_id']}`; the reason is sealed to each of "
            "them and never to the subject."
        )
    return Output(data, text)


def register(commands: Commands) -> None:
    expelling = commands.add(
        "expel",
        "Open a motion to expel a member of your cell (or of a council you both sit in).",
        expel,
    )
    expelling.add_argument("member", help="the member id of the one to expel")
    expelling.add_argument(
        "--reason", required=True, help="why (sealed to the group's other members, 1-500 chars)"
    )
    expelling.add_argument(
        "--group", default="cell", help="the group to move it in: `cell` (default) or a council id"
    )
    register_freeze(commands)


@client_command()
async def freeze(args: argparse.Namespace, client: Client) -> Output:
    data = await Exclusion(client).move(args.member, "freeze")
    return Output(data, _freeze_text("Freeze", data))


@client_command()
async def unfreeze(args: argparse.Namespace, client: Client) -> Output:
    data = await Exclusion(client).move(args.member, "unfreeze")
    return Output(data, _freeze_text("Unfreeze", data))


@client_command()
async def revouch(args: argparse.Namespace, client: Client) -> Output:
    data = await Exclusion(client).move(args.member, "clear")
    return Output(data, _freeze_text("Fresh vouch (review cleared)", data))


@client_command()
async def restore(args: argparse.Namespace, client: Client) -> Output:
    data = await Exclusion(client).move(args.member, "restore")
    return Output(data, _freeze_text("Restoring the sponsor's admissions", data))


def _freeze_text(action: str, data: dict[str, Any]) -> str:
    if data["status"] == "done":
        return f"{action} of {data['member_id']} carried out at once."
    return (
        f"{action} motion {data['motion_id']} opened and signed by you (1 of "
        f"{data['needed']}); another cellmate runs `spokes sign {data['motion_id']}` and it "
        "takes effect at once."
    )


def register_freeze(commands: Commands) -> None:
    freezing = commands.add(
        "freeze",
        "Suspend a cellmate at once (e.g. arrested), with a second cellmate's signature.",
        freeze,
    )
    freezing.add_argument("member", help="the member id of the one to freeze")
    unfreezing = commands.add(
        "unfreeze", "Lift a cellmate's freeze, with as many signatures as froze them.", unfreeze
    )
    unfreezing.add_argument("member", help="the member id of the frozen member")
    revouching = commands.add(
        "revouch",
        "Vouch afresh for a cellmate under review (you stand outside the expelled member's "
        "invite subtree).",
        revouch,
    )
    revouching.add_argument("member", help="the member id of the one under review")
    restoring = commands.add(
        "restore",
        "Let a sponsor whose invitee was expelled admit again (a motion of the cell).",
        restore,
    )
    restoring.add_argument("member", help="the member id of the sponsor on hold")
