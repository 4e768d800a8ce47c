"""`spokes notify set ADDRESS` and `spokes notify clear`: opt in to mail notices, or out.

A notice only says that something of its kind happened ("activity is
waiting", "your invite was redeemed", "a motion needs your signature",
"someone you admitted is under review"); the server seals the address under
a key of its own and never echoes it back. The address is still given to
the server: the text a person reads says so before they choose.
"""

from __future__ import annotations

import argparse

from client import api
from client.cli.common import Commands, Output, client_command
from client.sdk import Client


@client_command()
async def set_address(args: argparse.Namespace, client: Client) -> Output:
    status = api.parse_notify(await client.call(api.set_notify(args.address.strip())))
    return Output(
        {"status": status},
        "Mail notices are on. They say only that something is waiting (no names, no "
        "groups, no text), but the server operator can tell when you get one. "
        "`spokes notify clear` stops them.",
    )


@client_command()
async def clear(args: argparse.Namespace, client: Client) -> Output:
    status = api.parse_notify(await client.call(api.clear_notify()))
    return Output(
        {"status": status},
        "Mail notices are off; the server deleted your address and any notice still waiting.",
    )


def register(commands: Commands) -> None:
    notify = commands.group(
        "notify", "Mail notices: be told by mail that something waits, and nothing more."
    )
    setting = notify.add(
        "set",
        "Give the server an address for content-free notices (it keeps it encrypted).",
        set_address,
    )
    setting.add_argument("address", help="your mail address, e.g. ann@example.org")
    notify.add("clear", "Stop mail notices; the server forgets your address.", clear)
