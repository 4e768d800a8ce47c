"""`spokes network create`, `spokes invite create` and `spokes join`: founding and joining."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict

from client import founding, invites
from client.cli.common import (
    Commands,
    Output,
    client_command,
    generate_option,
    kdf_params,
    new_passphrase,
    run_duties,
    say,
    secret_for,
    store_for,
    when,
    with_client,
)
from client.errors import ClientError
from client.invites import Invites
from client.sdk import Client
from crypto.errors import InvalidStatement
from crypto.network import DAY, HOUR, Policy


async def network_create(args: argparse.Namespace) -> Output:
    try:
        cell_max = args.cell_max if args.cell_max is not None else Policy.cell_max
        cell_min = args.cell_min if args.cell_min is not None else min(Policy.cell_min, cell_max)
        policy = Policy(
            cell_min=cell_min,
            cell_max=cell_max,
            vouches=args.vouches,
            probation_seconds=args.probation_days * DAY,
            invite_quota=args.invite_quota,
            invite_expiry_seconds=args.invite_expiry_hours * HOUR,
            vetting_seconds=args.vetting_hours * HOUR,
            epoch_seconds=args.epoch_hours * HOUR,
            epoch_messages=args.epoch_messages,
        )
    except InvalidStatement as exc:
        raise ClientError("invalid_policy", f"{exc}; change the option and run it again.") from None

    async def action(client: Client) -> Output:
        data = await founding.create_network(client, args.name, policy)
        text = (
            f"Network {args.name!r} founded.\nNetwork id: {data['network_id']}\n"
            f"Your cell:  {data['cell_id']}\n"
            "Next: `spokes invite create` for someone you have met in person."
        )
        return Output(data, text)

    return await with_client(args, action)


@client_command()
async def invite_create(args: argparse.Namespace, client: Client) -> Output:
    # Follow my cell first: after a split, an invite is for the cell I am in now.
    await run_duties(client)
    created = await Invites(client).create(args.note or "", args.expiry_hours)
    data = {"code": created.code, "expires_at": created.expires_at}
    text = (
        f"Invite code: {created.code}\nValid until {when(created.expires_at)}.\n"
        "Give it in person; they run `spokes join CODE --server URL`, then you compare "
        "safety numbers with `spokes pending` and `spokes admit`."
    )
    return Output(data, text)


async def join(args: argparse.Namespace) -> Output:
    store = store_for(args)
    generated, params = None, None
    if store.exists():
        if args.generate_passphrase:
            raise ClientError(
                "already_initialized",
                f"{store.home} already holds a keystore, sealed under its passphrase; "
                "nothing was changed. Leave out --generate-passphrase.",
            )
        secret = secret_for(store)
    else:
        secret, generated = new_passphrase(args)
        params = kdf_params(args)
        say(args, "Generating your keys and sealing them under your passphrase…")
    made_home = not store.home.exists()
    try:
        with store.lock(create=True):
            client, joined = await invites.join(
                store, secret, args.code, args.server, None if params is None else params.params
            )
            await client.close()
    except BaseException:
        if made_home and not store.exists():
            # A refused join leaves no trace: not even the folder its lock made.
            shutil.rmtree(store.home, ignore_errors=True)
        raise
    data = asdict(joined)
    if params is not None:
        data["kdf"] = params.to_json()
    if generated is not None:
        data["passphrase"] = generated
    text = (
        f"You asked to join {joined.network_name!r}. Your member id: {joined.member_id}\n"
        f"Safety number with your inviter: {joined.safety_number}\n"
        "Read it to your inviter in person; they admit you only if theirs is the same.\n"
        "Then your cell vets you: check with `spokes status`."
    )
    return Output(data, text)


def register(commands: Commands) -> None:
    network = commands.group("network", "Found a network.")
    create = network.add(
        "create", "Found a network with its policy; you become its steward.", network_create
    )
    create.add_argument("--name", required=True, help="the network's name (only members see it)")
    create.add_argument("--vouches", type=int, default=Policy.vouches, help="vouches to admit")
    create.add_argument("--probation-days", type=int, default=Policy.probation_seconds // DAY)
    create.add_argument("--invite-quota", type=int, default=Policy.invite_quota)
    create.add_argument(
        "--invite-expiry-hours", type=int, default=Policy.invite_expiry_seconds // HOUR
    )
    create.add_argument("--cell-max", type=int, default=None, help=f"default {Policy.cell_max}")
    create.add_argument("--cell-min", type=int, default=None, help=f"default {Policy.cell_min}")
    create.add_argument("--vetting-hours", type=int, default=Policy.vetting_seconds // HOUR)
    create.add_argument(
        "--epoch-hours",
        type=int,
        default=Policy.epoch_seconds // HOUR,
        help="a cell's key epoch is retired after this long",
    )
    create.add_argument(
        "--epoch-messages",
        type=int,
        default=Policy.epoch_messages,
        help="…or after this many messages, whichever comes first",
    )

    invite = commands.group("invite", "Invite someone you have met.")
    invite_new = invite.add("create", "Make a one-time invite code for your cell.", invite_create)
    invite_new.add_argument("--note", help="a private note, sealed inside the invite")
    invite_new.add_argument("--expiry-hours", type=int, help="shorter than the network's expiry")

    joining = commands.add("join", "Join a network with an invite code.", join)
    joining.add_argument(
        "code", help="the invite code, as read to you (spaces and dashes are fine)"
    )
    joining.add_argument("--server", required=True, help="the server URL your inviter gave you")
    generate_option(joining)
