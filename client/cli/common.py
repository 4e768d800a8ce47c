"""What every `spokes` command shares: its output, its errors, the keystore it opens.

The rule it keeps: with --json, exactly one JSON object goes to stdout,
either the result or {"error": {"code", "message"}}; exit status is 0 on
success, 2 for usage errors and 1 for everything else. Without --json the
same result is printed for a person, and errors say what to do next. A
command returns an `Output`; only `client.cli.main` prints it.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from client import agent, passphrases
from client.councils import Councils
from client.errors import ClientError, ServerError, VerificationFailed
from client.profiles import Names, Profiles
from client.rosters import Rosters
from client.sdk import Client
from client.state import Secret, StateFile, default_home
from crypto.keystore import KdfParams, KeystoreKey, calibrate, seal_keystore

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
    """argparse that, under --json, reports usage errors as one JSON object,
    and answers a mistyped command with the command it resembles."""

    json_mode = False

    def error(self, message: str) -> NoReturn:
        if Parser.json_mode:
            if "--help" not in message:
                end = "" if message.endswith((".", "?")) else "."
                message = f"{message}{end} See `{self.prog} --help`."
            print_error("usage", message, True)
            sys.exit(2)
        super().error(message)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own check lists every choice; for a level of commands
        # (its choices are the subparsers by name) say what was probably meant.
        if isinstance(action.choices, dict) and value not in action.choices:
            raise argparse.ArgumentError(None, unknown_command(self.prog, value, action.choices))
        super()._check_value(action, value)


def unknown_command(prog: str, typed: str, names: Iterable[str]) -> str:
    """`spokes sned` -> "unknown command 'sned'; did you mean `spokes send`?"."""
    close = difflib.get_close_matches(typed, list(names), n=1)
    if close:
        return f"unknown command {typed!r}; did you mean `{prog} {close[0]}`?"
    return f"unknown command {typed!r}: `{prog} --help` lists them"


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
    """SPOKES_PASSPHRASE if set, else asked for.

    With `confirm` (a keystore is being made) it is judged first, and a weak
    one refused (client/passphrases.py); a typed one is asked for twice.
    """
    env = os.environ.get("SPOKES_PASSPHRASE")
    if env is not None:
        if confirm:
            passphrases.check_strength(env)
        return env
    try:
        first = getpass.getpass("Keystore passphrase: ")
        if confirm:
            if not first:
                raise ClientError(
                    "no_passphrase", "An empty passphrase would leave your keys open."
                )
            passphrases.check_strength(first)
            if getpass.getpass("Same passphrase again: ") != first:
                raise ClientError(
                    "passphrase_mismatch",
                    "The two passphrases differ; nothing was written. Try again.",
                )
    except EOFError:
        raise ClientError(
            "no_passphrase",
            "No passphrase given: type it at the prompt or set SPOKES_PASSPHRASE "
            "(or run `spokes unlock` first in a terminal).",
        ) from None
    return first


def new_passphrase(args: argparse.Namespace) -> tuple[str, str | None]:
    """The passphrase of a keystore being made; the second value is it again if generated.

    With --generate-passphrase it is six random words, shown once: on stderr
    for a person, in the JSON object (`passphrase`) under --json.
    """
    if not getattr(args, "generate_passphrase", False):
        return passphrase(confirm=True), None
    made = passphrases.generate()
    if not args.json:
        print(
            "Your new passphrase, shown only this once; write it down and keep it apart "
            f"from this device (nobody can recover it):\n\n    {made}\n",
            file=sys.stderr,
        )
    return made, made


def generate_option(command: argparse.ArgumentParser) -> None:
    """--generate-passphrase, for the commands that make a keystore (init, join)."""
    command.add_argument(
        "--generate-passphrase",
        action="store_true",
        help="make a strong passphrase of six random words and show it once "
        "(default: SPOKES_PASSPHRASE, else you type one)",
    )


def unlocked_key(store: StateFile) -> KeystoreKey | None:
    """The key this home's agent holds (`spokes unlock`), or None."""
    held = agent.ask_key(store.home)
    return None if held is None else held.key


def secret_for(store: StateFile) -> Secret:
    """What opens this home's keystore: the unlocked agent's key, else the passphrase."""
    key = unlocked_key(store)
    return key if key is not None else passphrase(confirm=False)


def open_client(store: StateFile, secret: Secret) -> Client:
    """Open the client; an agent's key that no longer opens the keystore falls back to asking."""
    try:
        return Client.open(store, secret)
    except ClientError as exc:
        if exc.code != "wrong_passphrase" or not isinstance(secret, KeystoreKey):
            raise
    # The keystore was made again since `spokes unlock`: ask as if locked.
    return Client.open(store, passphrase(confirm=False))


@dataclass(frozen=True)
class KdfCost:
    """The Argon2id cost chosen for a new keystore, and what one derivation took here."""

    params: KdfParams
    seconds: float | None  # None for the test-only cost, which is not measured

    def to_json(self) -> dict[str, Any]:
        return {
            "time_cost": self.params.time_cost,
            "memory_kib": self.params.memory_kib,
            "parallelism": self.params.parallelism,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "test_only": self.seconds is None,
        }


def kdf_params(args: argparse.Namespace | None = None) -> KdfCost:
    """Argon2id cost for a new keystore: about half a second on this machine.

    In plain mode it says on stderr that it is measuring, and what it chose.
    """
    if os.environ.get("SPOKES_INSECURE_TEST_KDF") == "1":
        print(
            "warning: SPOKES_INSECURE_TEST_KDF=1: this keystore is sealed with a test-only, "
            "trivially cheap passphrase hash. Never use it for real keys.",
            file=sys.stderr,
        )
        return KdfCost(INSECURE_TEST_KDF, None)
    took = [0.0]

    def measure(params: KdfParams) -> float:
        start = time.perf_counter()
        seal_keystore("calibration", b"", params)
        took[0] = time.perf_counter() - start
        return took[0]

    say(args, "Measuring this machine to set the passphrase cost…", end="")
    params = calibrate(KDF_TARGET_SECONDS, measure)
    say(
        args,
        f" t={params.time_cost}, m={params.memory_kib // 1024} MiB, "
        f"p={params.parallelism} ({took[0]:.2f} s)",
    )
    return KdfCost(params, took[0])


def say(args: argparse.Namespace | None, text: str, end: str = "\n") -> None:
    """What a slow step is doing, on stderr, in plain mode only (never under --json)."""
    if args is not None and not args.json:
        print(text, end=end, file=sys.stderr, flush=True)


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
    secret = secret_for(store)
    with store.lock():
        client = open_client(store, secret)
        client.progress = lambda text: say(args, text)
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


async def cell_names(client: Client) -> Names:
    """My cell's verified names, or none when I have no cell to ask (pending, say)."""
    try:
        return await Profiles(client).names_of("cell")
    except ClientError as exc:
        if exc.code in ("not_found", "not_admitted", "no_cell"):
            return Names({})
        raise


async def run_duties(client: Client) -> None:
    """Best-effort group upkeep after a membership command; lies are still reported.

    My cell's roster first; then, for a spokesperson, the seats of the groups
    they speak for follow those groups' elections (client/councils.py).
    """
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
        return
    try:
        await Councils(client).upkeep()
    except VerificationFailed:
        raise
    except ClientError as exc:
        if exc.code == "equivocation":
            raise
        # Anything else waits for the next command: the seat changes stay in my group's log.
