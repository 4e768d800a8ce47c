"""The `spokes` command: argparse in front of the SDK.

The rule it keeps: with --json, exactly one JSON object goes to stdout,
either the result or {"error": {"code", "message"}}; exit status is 0 on
success, 2 for usage errors and 1 for everything else. Without --json the
same result is printed for a person, and errors say what to do next.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from client import cli_cells
from client.errors import ClientError
from client.sdk import Client
from client.state import StateFile, default_home
from crypto.errors import CryptoError, InvalidStatement
from crypto.keystore import KdfParams, calibrate, seal_keystore
from crypto.network import DAY, HOUR, Policy

KDF_TARGET_SECONDS = 0.5
INSECURE_TEST_KDF = KdfParams(time_cost=1, memory_kib=8, parallelism=1)


@dataclass(frozen=True)
class Output:
    data: dict[str, Any]
    text: str
    streamed: bool = False  # already printed line by line (watch)


Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, Output]]


# Passphrase and keystore cost.


def passphrase(confirm: bool) -> str:
    """SPOKES_PASSPHRASE if set, else asked for (twice when a keystore is made)."""
    env = os.environ.get("SPOKES_PASSPHRASE")
    if env is not None:
        return env
    try:
        first = getpass.getpass("Keystore passphrase: ")
        if confirm and getpass.getpass("Same passphrase again: ") != first:
            raise ClientError(
                "passphrase_mismatch", "The two passphrases differ; nothing was written. Try again."
            )
    except EOFError:
        raise ClientError(
            "no_passphrase", "No passphrase given: type it at the prompt or set SPOKES_PASSPHRASE."
        ) from None
    if confirm and not first:
        raise ClientError("no_passphrase", "An empty passphrase would leave your keys open.")
    return first


def kdf_params() -> KdfParams:
    """Argon2id cost for a new keystore: about half a second on this machine."""
    if os.environ.get("SPOKES_INSECURE_TEST_KDF") == "1":
        print(
            "warning: SPOKES_INSECURE_TEST_KDF=1: this keystore is sealed with a test-only, "
            "trivially cheap passphrase hash. Never use it for real keys.",
            file=sys.stderr,
        )
        return INSECURE_TEST_KDF

    def measure(params: KdfParams) -> float:
        start = time.perf_counter()
        seal_keystore("calibration", b"", params)
        return time.perf_counter() - start

    return calibrate(KDF_TARGET_SECONDS, measure)


def store_for(args: argparse.Namespace) -> StateFile:
    return StateFile(Path(args.home) if args.home else default_home())


async def with_client(
    args: argparse.Namespace,
    action: Callable[[Client], Awaitable[Output]],
    *,
    hold_lock: bool = True,
) -> Output:
    """Run `action` with the home's keystore lock held from the read until it ends.

    With hold_lock=False (watch) the keystore is only opened under the lock;
    the action takes the lock again, and re-reads, for each change it makes.
    """
    store = store_for(args)
    secret = passphrase(confirm=False)
    with store.lock():
        client = Client.open(store, secret)
        if hold_lock:
            try:
                return await action(client)
            finally:
                await client.close()
    try:
        return await action(client)
    finally:
        await client.close()


# Commands.


async def cmd_init(args: argparse.Namespace) -> Output:
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


async def cmd_network_create(args: argparse.Namespace) -> Output:
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
        data = await client.create_network(args.name, policy)
        text = (
            f"Network {args.name!r} founded.\nNetwork id: {data['network_id']}\n"
            f"Your cell:  {data['cell_id']}\n"
            "Next: `spokes invite create` for someone you have met in person."
        )
        return Output(data, text)

    return await with_client(args, action)


async def cmd_invite_create(args: argparse.Namespace) -> Output:
    async def action(client: Client) -> Output:
        created = await client.create_invite(args.note or "", args.expiry_hours)
        data = {"code": created.code, "expires_at": created.expires_at}
        text = (
            f"Invite code: {created.code}\nValid until {_when(created.expires_at)}.\n"
            "Give it in person; they run `spokes join CODE --server URL`, then you compare "
            "safety numbers with `spokes pending` and `spokes admit`."
        )
        return Output(data, text)

    return await with_client(args, action)


async def cmd_join(args: argparse.Namespace) -> Output:
    store = store_for(args)
    secret = passphrase(confirm=not store.exists())
    params = None if store.exists() else kdf_params()
    made_home = not store.home.exists()
    try:
        with store.lock(create=True):
            client, joined = await Client.join(store, secret, args.code, args.server, params)
            await client.close()
    except BaseException:
        if made_home and not store.exists():
            # A refused join leaves no trace: not even the folder its lock made.
            shutil.rmtree(store.home, ignore_errors=True)
        raise
    data = asdict(joined)
    text = (
        f"You asked to join {joined.network_name!r}. Your member id: {joined.member_id}\n"
        f"Safety number with your inviter: {joined.safety_number}\n"
        "Read it to your inviter in person; they admit you only if theirs is the same.\n"
        "Then your cell vets you: check with `spokes status`."
    )
    return Output(data, text)


async def cmd_pending(args: argparse.Namespace) -> Output:
    async def action(client: Client) -> Output:
        pending = await client.pending()
        lines = [
            f"{p.member_id}  safety number {p.safety_number}  {p.stage} "
            f"({p.vouches}/{p.needed} vouches)"
            for p in pending
        ]
        text = "\n".join(lines) if lines else "No newcomers are waiting in your cell."
        return Output({"pending": [asdict(p) for p in pending]}, text)

    return await with_client(args, action)


async def cmd_admit(args: argparse.Namespace) -> Output:
    async def action(client: Client) -> Output:
        data = await client.admit(args.member, args.safety_number)
        await cli_cells.run_duties(client)
        return Output(
            data, f"Admission certificate signed. {data['member_id']} is now {data['status']}."
        )

    return await with_client(args, action)


def _verdict_command(kind: str) -> Handler:
    async def run(args: argparse.Namespace) -> Output:
        async def action(client: Client) -> Output:
            if kind == "vouch":
                data = await client.vouch(args.member)
            else:
                data = await client.block(args.member)
            await cli_cells.run_duties(client)
            verb = "Vouched for" if kind == "vouch" else "Blocked"
            return Output(data, f"{verb} {data['member_id']}; they are now {data['status']}.")

        return await with_client(args, action)

    return run


async def cmd_revoke(args: argparse.Namespace) -> Output:
    async def action(client: Client) -> Output:
        data = await client.revoke(args.member)
        await cli_cells.run_duties(client)
        return Output(
            data,
            f"Revoked {data['member_id']} (revocation {data['seq']} of the network's list). "
            "Their sessions are ended; each of their cells takes them off the roster and "
            "moves to a new key at its next sync.",
        )

    return await with_client(args, action)


async def cmd_status(args: argparse.Namespace) -> Output:
    async def action(client: Client) -> Output:
        view = await client.status(args.member)
        await cli_cells.run_duties(client)
        text = (
            f"{view.member_id}: {view.status} (verified by this client)\n"
            f"cell {view.cell_id}, vouches {view.vouches}/{view.needed}"
        )
        if view.limited:
            signed = "signed" if view.certified else "not signed yet"
            text = (
                f"{view.member_id}: {view.status} (verified by this client)\n"
                f"cell {view.cell_id}; your inviter's certificate: {signed}.\n"
                "Until you are admitted the server shows you nothing of your cell, so the "
                f"vouches can't be counted here (the server says, unverified: {view.server_status})."
            )
        if view.probation_ends_at is not None and view.status == "probation":
            text += f"\nprobation ends {_when(view.probation_ends_at)}"
        return Output(asdict(view), text)

    return await with_client(args, action)


async def cmd_whoami(args: argparse.Namespace) -> Output:
    client = Client.open(store_for(args), passphrase(confirm=False))
    data = client.whoami()
    await client.close()
    data.pop("network_name", None)
    text = "\n".join(f"{key}: {value}" for key, value in data.items())
    return Output(data, text)


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


# The parser.


class Parser(argparse.ArgumentParser):
    """argparse that, under --json, reports usage errors as one JSON object."""

    json_mode = False

    def error(self, message: str) -> NoReturn:
        if Parser.json_mode:
            _print_error("usage", f"{message}. See `{self.prog} --help`.", True)
            sys.exit(2)
        super().error(message)


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--home", default=default, help="home folder (default $SPOKES_HOME or ~/.spokes)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="print one JSON object",
    )


def build_parser() -> Parser:
    parser = Parser(prog="spokes", description="Member client of a Spokes organizing network.")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(
        subparsers: Any, name: str, summary: str, handler: Handler
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = subparsers.add_parser(
            name, help=summary, description=summary
        )
        _common(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    init = command(commands, "init", "Create your keys and an encrypted keystore.", cmd_init)
    init.add_argument(
        "--server", required=True, help="server URL, e.g. https://spokes.example:8443"
    )

    network = commands.add_parser(
        "network", help="Found a network.", description="Found a network."
    )
    network_sub = network.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = command(
        network_sub,
        "create",
        "Found a network with its policy; you become its steward.",
        cmd_network_create,
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

    invite = commands.add_parser(
        "invite", help="Invite someone you have met.", description="Invite someone you have met."
    )
    invite_sub = invite.add_subparsers(dest="action", required=True, parser_class=Parser)
    invite_create = command(
        invite_sub, "create", "Make a one-time invite code for your cell.", cmd_invite_create
    )
    invite_create.add_argument("--note", help="a private note, sealed inside the invite")
    invite_create.add_argument("--expiry-hours", type=int, help="shorter than the network's expiry")

    join = command(commands, "join", "Join a network with an invite code.", cmd_join)
    join.add_argument("code", help="the invite code, as read to you (spaces and dashes are fine)")
    join.add_argument("--server", required=True, help="the server URL your inviter gave you")

    command(
        commands,
        "pending",
        "List newcomers waiting in your cell, with safety numbers.",
        cmd_pending,
    )

    admit = command(
        commands,
        "admit",
        "Admit a newcomer you invited, after comparing safety numbers.",
        cmd_admit,
    )
    admit.add_argument("member", help="the newcomer's member id")
    admit.add_argument("--safety-number", required=True, help="the number they read to you")

    for kind, summary in (
        ("vouch", "Vouch for a newcomer of your cell."),
        ("block", "Block a newcomer of your cell during vetting."),
    ):
        verdict = command(commands, kind, summary, _verdict_command(kind))
        verdict.add_argument("member", help="the newcomer's member id")

    revoke = command(
        commands,
        "revoke",
        "Steward only: revoke a member's key. Signs the next revocation of the network's "
        "list, after verifying the list from its start.",
        cmd_revoke,
    )
    revoke.add_argument("member", help="the member id to revoke")

    status = command(
        commands, "status", "Show a member's status, verified by this client.", cmd_status
    )
    status.add_argument("member", nargs="?", help="a member id (default: you)")

    command(commands, "whoami", "Show your member id, key number, server and cell.", cmd_whoami)
    cli_cells.add_commands(commands, command, Parser, cli_cells.handlers(with_client, Output))
    return parser


# Output.


def _print_error(code: str, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        print(f"error ({code}): {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    Parser.json_mode = "--json" in args_list
    args = build_parser().parse_args(args_list)
    handler: Handler = args.handler
    try:
        output = asyncio.run(handler(args))
    except ClientError as exc:
        _print_error(exc.code, exc.message, args.json)
        return 1
    except KeyboardInterrupt:
        _print_error("interrupted", "Stopped; nothing more was sent.", args.json)
        return 130
    except CryptoError as exc:
        # A check in crypto/ that a verification step did not wrap: whatever
        # the server sent did not verify, and nothing was accepted.
        _print_error(
            "verification_failed",
            f"Something the server sent does not verify ({exc}). Nothing was accepted; "
            "the server may be faulty or lying, so tell your cell in person.",
            args.json,
        )
        return 1
    except Exception as exc:  # noqa: BLE001 - the last word: one JSON line, never a traceback
        if os.environ.get("SPOKES_DEBUG") == "1":
            traceback.print_exc()
        _print_error(
            "internal_error",
            f"spokes hit an unexpected error ({type(exc).__name__}: {exc}); it stopped there. "
            "Run the command again; if it repeats, report it (SPOKES_DEBUG=1 shows details).",
            args.json,
        )
        return 1
    if output.streamed:
        pass
    elif args.json:
        print(json.dumps(output.data))
    else:
        print(output.text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
