"""`spokes init` and `spokes whoami`: this home's keys."""

from __future__ import annotations

import argparse

from client.cli.common import Commands, Output, kdf_params, passphrase, store_for
from client.errors import ClientError
from client.sdk import Client


async def init(args: argparse.Namespace) -> Output:
    store = store_for(args)
    if store.exists():
        raise ClientError(
            "already_initialized",
            f"{store.home} already holds a keystore; nothing was changed. "
            "Use another --home for a second identity.",
        )
    secret = passphrase(confirm=True)
    with store.lock(create=True):
        client = Client.init(store, secret, args.server, kdf_params())
    me = client.whoami()
    data = {"member_id": me["member_id"], "safety_number": me["safety_number"]}
    text = (
        f"Keystore created in {store.home}.\n"
        f"Your member id:   {me['member_id']}\n"
        f"Your key number:  {me['safety_number']}\n"
        "Next: `spokes network create --name NAME` to found a network."
    )
    return Output(data, text)


async def whoami(args: argparse.Namespace) -> Output:
    client = Client.open(store_for(args), passphrase(confirm=False))
    data = client.whoami()
    await client.close()
    data.pop("network_name", None)
    text = "\n".join(f"{key}: {value}" for key, value in data.items())
    return Output(data, text)


def register(commands: Commands) -> None:
    command = commands.add("init", "Create your keys and an encrypted keystore.", init)
    command.add_argument(
        "--server", required=True, help="server URL, e.g. https://spokes.example:8443"
    )
    commands.add("whoami", "Show your member id, key number, server and cell.", whoami)
