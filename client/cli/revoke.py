"""`spokes revoke`: a steward revokes a member's key."""

from __future__ import annotations

import argparse

from client.cli.common import Commands, Output, client_command, run_duties
from client.revocations import Revocations
from client.sdk import Client


@client_command()
async def revoke(args: argparse.Namespace, client: Client) -> Output:
    data = await Revocations(client).revoke(args.member)
    await run_duties(client)
    return Output(
        data,
        f"Revoked {data['member_id']} (revocation {data['seq']} of the network's list). "
        "Their sessions are ended; each of their cells takes them off the roster and "
        "moves to a new key at its next sync.",
    )


def register(commands: Commands) -> None:
    command = commands.add(
        "revoke",
        "Steward only: revoke a member's key. Signs the next revocation of the network's "
        "list, after verifying the list from its start.",
        revoke,
    )
    command.add_argument("member", help="the member id to revoke")
