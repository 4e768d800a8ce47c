"""`spokes alert`, `ack`, `alerts` and `daemon`: the early-warning path.

`spokes alert GROUP TEXT [--scope group|up|network]` raises one;
`spokes alert confirm ALERT` (a second member of the raiser's group) lets a
wide one leave the group; `spokes alert retract ALERT` (the raiser) takes it
back; `spokes ack ALERT` says you saw it. `spokes daemon` relays alerts
between the levels you sit in, one JSON object per relay it makes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from client.alerts import Alerts
from client.cli.common import Commands, Output, client_command, when
from client.daemon import Daemon, Relayed
from client.errors import ClientError
from client.sdk import Client
from crypto.alerts import SCOPES

ACTIONS = ("confirm", "retract")


@client_command()
async def alert(args: argparse.Namespace, client: Client) -> Output:
    words: list[str] = args.words
    if len(words) == 2 and words[0] in ACTIONS:
        action = Alerts(client).confirm if words[0] == "confirm" else Alerts(client).retract
        data = await action(words[1])
        return Output(data, f"Alert {data['alert_id']} {words[0]}ed (seq {data['seq']}).")
    if len(words) != 2:
        raise ClientError(
            "usage",
            "Run `spokes alert GROUP TEXT [--scope …]`, `spokes alert confirm ALERT` or "
            "`spokes alert retract ALERT`.",
        )
    data = await Alerts(client).raise_alert(words[0], words[1], args.scope)
    note = f" {data['note']}" if data["note"] else ""
    return Output(
        {k: data[k] for k in ("alert_id", "group", "seq")},
        f"Alert {data['alert_id']} raised in {data['group']} (scope {args.scope}).{note}",
    )


@client_command()
async def ack(args: argparse.Namespace, client: Client) -> Output:
    data = await Alerts(client).ack(args.alert)
    return Output(data, f"Acknowledged alert {data['alert_id']}.")


@client_command()
async def alerts(args: argparse.Namespace, client: Client) -> Output:
    views = await Alerts(client).alerts(args.since)
    lines = []
    for v in views:
        source = f"relayed from {v.relayed_from}" if v.relayed_from else "raised here"
        flags = [
            f
            for f, on in (("RETRACTED", v.retracted), ("over the daily limit", v.over_limit))
            if on
        ]
        lines.append(
            f"{v.alert_id}  {when(v.raised_at)}  [{v.scope}] {v.text}\n"
            f"    {source}; {v.reached} reached, {v.acknowledged} acknowledged"
            + ("" if v.acked_by_me else "; you have not acknowledged it (`spokes ack ID`)")
            + (f"; {', '.join(flags)}" if flags else "")
        )
    return Output({"alerts": [asdict(v) for v in views]}, "\n".join(lines) or "No alerts.")


@client_command(hold_lock=False)
async def daemon(args: argparse.Namespace, client: Client) -> Output:
    def emit(relayed: Relayed) -> None:
        print(json.dumps(asdict(relayed)), flush=True)

    made = await Daemon(client).run(args.timeout, args.count, emit)
    print(f"The daemon made {made} relay(s).", file=sys.stderr, flush=True)
    return Output({"relays": made}, "", streamed=True)


def register(commands: Commands) -> None:
    raising = commands.add(
        "alert",
        "Raise an alert (GROUP TEXT), or `confirm ALERT` / `retract ALERT`.",
        alert,
    )
    raising.add_argument("words", nargs="+", help="GROUP TEXT, or confirm ALERT, or retract ALERT")
    raising.add_argument(
        "--scope",
        choices=SCOPES,
        default="group",
        help="group: your group only; up: one level up too; network: everyone (default: group)",
    )
    acking = commands.add("ack", "Acknowledge that you saw an alert.", ack)
    acking.add_argument("alert", help="the alert's id, as `spokes alerts` shows it")
    listing = commands.add("alerts", "List the alerts in your groups, with their reach.", alerts)
    listing.add_argument(
        "--since",
        type=int,
        default=None,
        help="only alerts raised after this unix time (default: all kept)",
    )
    running = commands.add(
        "daemon", "Relay alerts between the levels you sit in, as they arrive.", daemon
    )
    running.add_argument(
        "--timeout", type=float, default=3600.0, help="stop after this many seconds (default 3600)"
    )
    running.add_argument(
        "--count", type=int, default=None, help="stop after this many relays (default: no limit)"
    )
