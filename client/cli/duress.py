"""`spokes duress`: a self-revocation held by a trusted cellmate, against a seized device."""

from __future__ import annotations

import argparse

from client.cli.common import Commands, Output, client_command
from client.duress import Duress
from client.sdk import Client


@client_command()
async def make(args: argparse.Namespace, client: Client) -> Output:
    data = await Duress(client).make(args.holder)
    return Output(
        data,
        f"Your self-revocation is signed and sealed for {data['holder']} alone. If you are "
        "arrested or lose this device, they run `spokes duress publish YOUR_ID`: your key is "
        "revoked at once. You can come back later with a new identity, through a new invite "
        "and vetting.",
    )


@client_command()
async def publish(args: argparse.Namespace, client: Client) -> Output:
    data = await Duress(client).publish(args.member)
    return Output(
        data,
        f"{data['member_id']}'s key is revoked (seq {data['seq']} of the network's revocation "
        "list): their sessions ended and every group takes them off its roster.",
    )


@client_command()
async def held(args: argparse.Namespace, client: Client) -> Output:
    rows = await Duress(client).held()
    lines = [f"{r['member_id']} (signed at {r['signed_at']})" for r in rows]
    return Output({"held": rows}, "\n".join(lines) or "You hold no one's self-revocation.")


def register(commands: Commands) -> None:
    duress = commands.group("duress", "A self-revocation a trusted cellmate holds for you.")
    making = duress.add(
        "make", "Sign your own revocation now and seal it for one cellmate to hold.", make
    )
    making.add_argument("--holder", required=True, help="the member id of the cellmate")
    publishing = duress.add(
        "publish",
        "Publish the self-revocation a cellmate sealed for you (they were arrested).",
        publish,
    )
    publishing.add_argument("member", help="the member id of the one who made it")
    duress.add("list", "The self-revocations you hold.", held)
