"""`spokes init`, `spokes whoami`, `spokes unlock` and `spokes lock`: this home's keys."""

from __future__ import annotations

import argparse
import re

from client import agent
from client.cli.common import (
    Commands,
    Output,
    generate_option,
    kdf_params,
    new_passphrase,
    open_client,
    say,
    secret_for,
    store_for,
    when,
)
from client.errors import ClientError
from client.sdk import Client

DEFAULT_UNLOCK = "30m"
MAX_UNLOCK_SECONDS = 24 * 3600
_UNITS = {"s": 1, "m": 60, "h": 3600}


async def init(args: argparse.Namespace) -> Output:
    store = store_for(args)
    if store.exists():
        raise ClientError(
            "already_initialized",
            f"{store.home} already holds a keystore; nothing was changed. "
            "Use another --home for a second identity.",
        )
    secret, generated = new_passphrase(args)
    cost = kdf_params(args)
    say(args, "Generating your keys and sealing them under your passphrase…")
    with store.lock(create=True):
        client = Client.init(store, secret, args.server, cost.params)
    me = client.whoami()
    data = {"member_id": me["member_id"], "fingerprint": me["fingerprint"]}
    data["kdf"] = cost.to_json()
    if generated is not None:
        data["passphrase"] = generated
    text = (
        f"Keystore created in {store.home}.\n"
        f"Your member id:       {me['member_id']}\n"
        f"Your key fingerprint: {me['fingerprint']}\n"
        "Next: `spokes network create --name NAME` to found a network."
    )
    return Output(data, text)


async def whoami(args: argparse.Namespace) -> Output:
    store = store_for(args)
    client = open_client(store, secret_for(store))
    data = client.whoami()
    await client.close()
    data.pop("network_name", None)
    text = "\n".join(f"{key}: {value}" for key, value in data.items())
    return Output(data, text)


def duration(text: str) -> int:
    """`30m`, `2h`, `90s`, `1h30m` as seconds; argparse reports anything else."""
    parts = re.findall(r"(\d+)\s*([smh])", text.strip().lower())
    if not parts or re.sub(r"\s|\d+\s*[smh]", "", text.strip().lower()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write it like 90s, 30m, 2h or 1h30m"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if not 1 <= seconds <= MAX_UNLOCK_SECONDS:
        raise argparse.ArgumentTypeError("unlock for at least 1s and at most 24h")
    return seconds


async def unlock(args: argparse.Namespace) -> Output:
    store = store_for(args)
    # While unlocked, unlocking again (for a new length of time) needs no passphrase.
    secret = secret_for(store)
    with store.lock():
        # Opening checks the secret and keeps the key (one derivation at most).
        await open_client(store, secret).close()
        key = store.key
        if key is None:
            raise RuntimeError("the keystore opened without keeping its key")
        before = agent.stop(store.home)
        try:
            started = agent.start(store.home, key, args.duration)
        except agent.AgentError as exc:
            raise ClientError("agent_failed", f"Could not unlock: {exc}.") from None
    data = {
        "unlocked_until": started.expires_at,
        "seconds": args.duration,
        "agent_pid": started.pid,
        "socket": str(agent.socket_path(store.home)),
        "replaced": before == "locked",
    }
    text = (
        f"Unlocked until {when(started.expires_at)} ({_spoken(args.duration)}): commands "
        f"with this home won't ask for the passphrase until then.\n"
        "`spokes lock` locks it now. Anyone who can run programs as you on this "
        "computer can use your keys while it is unlocked."
    )
    return Output(data, text)


async def lock(args: argparse.Namespace) -> Output:
    store = store_for(args)
    result = agent.stop(store.home)
    if result == "refused":
        raise ClientError(
            "agent_refused",
            f"The agent at {agent.socket_path(store.home)} runs as another user and "
            "refused to lock; that user (or root) must stop it.",
        )
    if result == "unreachable":
        raise ClientError(
            "agent_unreachable",
            f"The agent at {agent.socket_path(store.home)} did not answer. Stop its process "
            f"(`ps` shows it as `python -m client.agent --home {store.home}`), then run "
            "`spokes lock` again.",
        )
    data = {"was_running": result == "locked", "stale_socket_removed": result == "stale"}
    text = {
        "locked": "Locked: the agent forgot your key. Commands ask for the passphrase again.",
        "none": "No agent was running for this home; it was already locked.",
        "stale": "No agent was running (its socket was left behind; removed). Locked.",
    }[result]
    return Output(data, text)


def _spoken(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    said = [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (secs, "s")) if n]
    return " ".join(said)


def register(commands: Commands) -> None:
    command = commands.add("init", "Create your keys and an encrypted keystore.", init)
    command.add_argument(
        "--server", required=True, help="server URL, e.g. https://spokes.example:8443"
    )
    generate_option(command)
    commands.add("whoami", "Show your member id, key fingerprint, server and cell.", whoami)
    unlocking = commands.add(
        "unlock",
        "Keep your keystore unlocked for a while: no passphrase asked until then.",
        unlock,
    )
    unlocking.add_argument(
        "--for",
        dest="duration",
        type=duration,
        default=duration(DEFAULT_UNLOCK),
        metavar="TIME",
        help=f"how long, like 90s, 30m, 2h (default {DEFAULT_UNLOCK}, at most 24h)",
    )
    commands.add("lock", "Lock now: the unlock agent forgets your key.", lock)
