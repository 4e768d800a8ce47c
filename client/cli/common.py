"""What every `spokes` command shares: its output, its errors, the keystore it opens.

The rule it keeps: with --json, exactly one JSON object goes to stdout,
either the result or {"error": {"code", "message"}}; exit status is 0 on
success, 2 for usage errors and 1 for everything else. Without --json the
same result is printed for a person, and errors say what to do next. A
command returns an `Output`; only `client.cli.main` prints it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from client.errors import ClientError, ServerError, VerificationFailed
from client.rosters import Rosters
from client.sdk import Client
from client.state import StateFile, default_home
from crypto.keystore import KdfParams, calibrate, seal_keystore

KDF_TARGET_SECONDS = 0.5
INSECURE_TEST_KDF = KdfParams(time_cost=1, memory_kib=8, parallelism=1)


@dataclass(frozen=True)
class Output:
    data: dict[str, Any]
    text: str
    streamed: bool = False  # already printed line by line (watch)


Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, Output]]
ClientAction = Callable[[argparse.Namespace, Client], Awaitable[Output]]


# The parser.


class Parser(argparse.ArgumentParser):
    """argparse that, under --json, reports usage errors as one JSON object."""

    json_mode = False

    def error(self, message: str) -> NoReturn:
        if Parser.json_mode:
            print_error("usage", f"{message}. See `{self.prog} --help`.", True)
            sys.exit(2)
        super().error(message)


def common_options(parser: argparse.ArgumentParser, top: bool) -> None:
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


class Commands:
    """A level of `spokes` subcommands: `add` a command, or a `group` of them (`network …`)."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str) -> None:
        self._subparsers = parser.add_subparsers(dest=dest, required=True, parser_class=Parser)

    def add(self, name: str, summary: str, handler: Handler) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=summary, description=summary
        )
        common_options(sub, top=False)
        sub.set_defaults(handler=handler)
        return sub

    def group(self, name: str, summary: str) -> Commands:
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=summary, description=summary
        )
        return Commands(parser, "action")


# Output.


def print_error(code: str, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        print(f"error ({code}): {message}", file=sys.stderr)


def when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


# Passphrase, keystore cost, and the client.


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


def client_command(*, hold_lock: bool = True) -> Callable[[ClientAction], Handler]:
    """Make `action(args, client)` a command handler that opens the home's client for it."""

    def decorate(action: ClientAction) -> Handler:
        async def handler(args: argparse.Namespace) -> Output:
            async def bound(client: Client) -> Output:
                return await action(args, client)

            return await with_client(args, bound, hold_lock=hold_lock)

        return handler

    return decorate


async def run_duties(client: Client) -> None:
    """Best-effort group upkeep after a membership command; lies are still reported."""
    try:
        await Rosters(client).sync_cell()
    except VerificationFailed:
        raise
    except ClientError as exc:
        if exc.code == "equivocation":
            raise
        # not_admitted: the server shows a pending member no cell to look after.
        if not isinstance(exc, ServerError) and exc.code not in ("not_found", "not_admitted"):
            raise
