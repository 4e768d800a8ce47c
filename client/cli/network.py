"""`spokes network create`, `spokes invite create` and `spokes join`: founding and joining."""

from __future__ import annotations

import argparse
import re
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
from crypto.network import DAY, HOUR, Policy, cells_can_split


def cell_bounds(args: argparse.Namespace) -> tuple[int, int]:
    """--cell-min and --cell-max, each the default if not given; never one changed to fit.

    A full cell must split into two that keep the minimum (cell_max >= 2 *
    cell_min, crypto.network.cells_can_split). Bounds that break it are
    refused, naming both values, which of them was a default, and what would do.
    """
    given = {"--cell-min": args.cell_min, "--cell-max": args.cell_max}
    cell_min = Policy.cell_min if args.cell_min is None else args.cell_min
    cell_max = Policy.cell_max if args.cell_max is None else args.cell_max
    if cell_min < 2 or cell_max > 100 or cells_can_split(cell_min, cell_max):
        return cell_min, cell_max  # in bounds, or refused by the policy's own check
    shown = ", ".join(
        f"{option} {value}" + (" (the default)" if given[option] is None else "")
        for option, value in (("--cell-min", cell_min), ("--cell-max", cell_max))
    )
    would_do = [f"--cell-max {2 * cell_min} or more"] if 2 * cell_min <= 100 else []
    if cell_max >= 4:
        would_do.insert(0, f"--cell-min {cell_max // 2} or less")
    raise ClientError(
        "invalid_policy",
        f"{shown}: a full cell of {cell_max} could not split into two cells of at least "
        f"{cell_min}, so --cell-max must be at least twice --cell-min. Nothing was created; "
        f"run it again with {', or '.join(would_do)}.",
    )


def _option(field: re.Match[str]) -> str:
    """A policy field as the option that sets it (`cell_max` -> `--cell-max`)."""
    return "--" + field[1].replace("_", "-")


async def network_create(args: argparse.Namespace) -> Output:
    cell_min, cell_max = cell_bounds(args)
    try:
        policy = Policy(
            cell_min=cell_min,
            cell_max=cell_max,
            vouches=args.vouches,
            probation_seconds=args.probation_days * DAY,
            invite_quota=args.invite_quota,
            invite_expiry_seconds=args.invite_expiry_hours * HOUR,
            vetting_seconds=args.vetting_hours * HOUR,
            epoch_seconds=args.key_period_hours * HOUR,
            epoch_messages=args.key_period_messages,
        )
    except InvalidStatement as exc:
        said = re.sub(r"\b(cell_min|cell_max|vouches|invite_quota)\b", _option, str(exc))
        raise ClientError(
            "invalid_policy",
            f"{said}. Nothing was created; change the option and run it again "
            "(`spokes network create --help` shows each option's default).",
        ) from None

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
    create.add_argument(
        "--vouches",
        type=int,
        metavar="N",
        default=Policy.vouches,
        help="vouches a newcomer needs to be admitted, the inviter's certificate counting as "
        "one (default %(default)s)",
    )
    create.add_argument(
        "--probation-days",
        type=int,
        metavar="DAYS",
        default=Policy.probation_seconds // DAY,
        help="days after admission before a member may invite (default %(default)s)",
    )
    create.add_argument(
        "--invite-quota",
        type=int,
        metavar="N",
        default=Policy.invite_quota,
        help="open invites a member may have at once (default %(default)s)",
    )
    create.add_argument(
        "--invite-expiry-hours",
        type=int,
        metavar="HOURS",
        default=Policy.invite_expiry_seconds // HOUR,
        help="hours an invite code stays valid (default %(default)s)",
    )
    create.add_argument(
        "--cell-max",
        type=int,
        metavar="N",
        default=None,
        help="members at which a cell is full and takes no one until it splits; at least "
        f"twice --cell-min (default {Policy.cell_max})",
    )
    create.add_argument(
        "--cell-min",
        type=int,
        metavar="N",
        default=None,
        help="members each cell must keep when a cell splits; at most half --cell-max "
        f"(default {Policy.cell_min})",
    )
    create.add_argument(
        "--vetting-hours",
        type=int,
        metavar="HOURS",
        default=Policy.vetting_seconds // HOUR,
        help="hours a newcomer's cell has to block them, unless every member vouched "
        "(default %(default)s)",
    )
    # `--epoch-…`: the words of the protocol, still taken (hidden) from older scripts.
    for option, alias, dest, default, text in (
        (
            "--key-period-hours",
            "--epoch-hours",
            "key_period_hours",
            Policy.epoch_seconds // HOUR,
            "a cell's key period ends, and a new shared key is made, after this many hours",
        ),
        (
            "--key-period-messages",
            "--epoch-messages",
            "key_period_messages",
            Policy.epoch_messages,
            "…or after this many messages, whichever comes first",
        ),
    ):
        create.add_argument(
            option,
            type=int,
            dest=dest,
            default=default,
            metavar="HOURS" if option.endswith("hours") else "N",
            help=f"{text} (default %(default)s)",
        )
        create.add_argument(alias, type=int, dest=dest, help=argparse.SUPPRESS)

    invite = commands.group("invite", "Invite someone you have met.")
    invite_new = invite.add("create", "Make a one-time invite code for your cell.", invite_create)
    invite_new.add_argument(
        "--note", help="a private note, sealed inside the invite (default: none)"
    )
    invite_new.add_argument(
        "--expiry-hours",
        type=int,
        metavar="HOURS",
        help="hours the code stays valid, at most the network's invite expiry "
        "(default: the network's, 72 unless its founder chose otherwise)",
    )

    joining = commands.add("join", "Join a network with an invite code.", join)
    joining.add_argument(
        "code", help="the invite code, as read to you (spaces and dashes are fine)"
    )
    joining.add_argument("--server", required=True, help="the server URL your inviter gave you")
    generate_option(joining)
