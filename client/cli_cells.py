"""The `spokes` commands for cells: cells, members, profile, send, read, watch, motions.

The rule it keeps is cli.py's: with --json one JSON object (watch: one per
line, one per message), errors as {"error": {"code", "message"}}; without
it, the same for a person. The work is client/cells.py's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from client.cells import Cells
from client.errors import ClientError, ServerError, VerificationFailed
from client.groups import ReadMessage
from client.motions import Motions
from client.sdk import Client


async def run_duties(client: Client) -> None:
    """Best-effort group upkeep after a membership command; lies are still reported."""
    try:
        await Cells(client).sync_cell()
    except VerificationFailed:
        raise
    except ClientError as exc:
        if exc.code == "equivocation":
            raise
        # not_admitted: the server shows a pending member no cell to look after.
        if not isinstance(exc, ServerError) and exc.code not in ("not_found", "not_admitted"):
            raise


def _when(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp))


def _message_line(message: ReadMessage) -> str:
    return f"[{message.cursor}] {_when(message.sent_at)} {message.sender[:12]}…: {message.text}"


Action = Callable[[Cells], Awaitable[tuple[dict[str, Any], str]]]


def handlers(with_client: Callable[..., Awaitable[Any]], output: type) -> dict[str, Any]:
    """The command handlers, built on cli.py's with_client and Output."""

    def wrap(action: Callable[[argparse.Namespace, Cells], Awaitable[tuple[dict[str, Any], str]]]):  # type: ignore[no-untyped-def]
        async def run(args: argparse.Namespace) -> Any:
            async def inner(client: Client) -> Any:
                data, text = await action(args, Cells(client))
                return output(data, text)

            return await with_client(args, inner)

        return run

    async def cells(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        views = await c.cells()
        lines = [
            f"{v.group_id}  {v.kind} level {v.level}, {v.members} members, epoch {v.epoch}"
            + ("  (your cell)" if v.current_cell else "")
            + f"\n    roster {v.roster_seq}, fingerprint {v.fingerprint}"
            for v in views
        ]
        if lines:
            lines.append(
                "Compare fingerprints when you meet: the same roster seq with another "
                "fingerprint means the server is showing you different rosters."
            )
        return {"groups": [asdict(v) for v in views]}, "\n".join(
            lines
        ) or "You are in no group yet."

    async def members(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        views = await c.members(args.group)
        lines = [
            f"{v.member_id}  {v.name or '(no profile)'}" + (f"  {v.contact}" if v.contact else "")
            for v in views
        ]
        return {"members": [asdict(v) for v in views]}, "\n".join(lines)

    async def profile_set(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        count = await c.set_profile(args.name, args.contact, args.notes)
        return {
            "groups": count
        }, f"Profile sealed for {count} group(s); only their members can read it."

    async def send(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        data = await c.send(args.group, args.text)
        return data, f"Sent ({data['message_id']}, cursor {data['cursor']})."

    async def read(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        messages = await c.read(args.group, args.since)
        lines = [_message_line(m) for m in messages]
        return {"messages": [asdict(m) for m in messages]}, "\n".join(lines) or "No new messages."

    async def motions(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        views = await Motions(c).motions()
        lines = [
            f"{v.motion_id}  {v.kind} of {v.group_id}: {v.signatures}/{v.needed} signatures"
            + (" (you signed)" if v.signed_by_me else "")
            for v in views
        ]
        return {"motions": [asdict(v) for v in views]}, "\n".join(lines) or "No open motions."

    async def sign(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        data = await Motions(c).sign(args.motion)
        done = "it took effect" if data["status"] == "done" else "it needs more signatures"
        return data, f"Signed motion {data['motion_id']}; {done}."

    async def split(args: argparse.Namespace, c: Cells) -> tuple[dict[str, Any], str]:
        data = await Motions(c).split(args.group, args.member)
        text = (
            f"Split motion {data['motion_id']} opened; the new cell will be {data['group_id']}.\n"
            "Each member who moves signs it with `spokes sign MOTION`."
        )
        return data, text

    async def watch(args: argparse.Namespace) -> Any:
        def emit(group: str, message: ReadMessage) -> None:
            if args.json:
                print(json.dumps({"group_id": group, **asdict(message)}), flush=True)
            else:
                print(_message_line(message), flush=True)

        async def inner(client: Client) -> Any:
            count = await Cells(client).watch(args.count, args.timeout, emit)
            return output({"received": count}, "", streamed=True)

        return await with_client(args, inner, hold_lock=False)

    return {
        "cells": wrap(cells),
        "members": wrap(members),
        "profile_set": wrap(profile_set),
        "send": wrap(send),
        "read": wrap(read),
        "motions": wrap(motions),
        "sign": wrap(sign),
        "split": wrap(split),
        "watch": watch,
    }


def add_commands(
    commands: Any,
    command: Callable[..., argparse.ArgumentParser],
    parser_class: type,
    built: dict[str, Any],
) -> None:
    """Register the cell commands on the `spokes` parser."""
    command(commands, "cells", "List your groups (cells, councils), verified.", built["cells"])
    members = command(
        commands, "members", "List a group's members with their profiles.", built["members"]
    )
    members.add_argument("group", help="a group id, or `cell` for your cell")

    profile = commands.add_parser(
        "profile", help="Your profile in your groups.", description="Your profile in your groups."
    )
    profile_sub = profile.add_subparsers(dest="action", required=True, parser_class=parser_class)
    profile_set = command(
        profile_sub, "set", "Set your name and contact, sealed per group.", built["profile_set"]
    )
    profile_set.add_argument("--name", required=True, help="the name your groups see")
    profile_set.add_argument("--contact", help="how to reach you")
    profile_set.add_argument("--notes", help="anything else for your groups")

    send = command(commands, "send", "Send an encrypted message to a group.", built["send"])
    send.add_argument("group", help="a group id, or `cell` for your cell")
    send.add_argument("text", help="the message")

    read = command(commands, "read", "Read a group's messages, verified.", built["read"])
    read.add_argument("group", help="a group id, or `cell` for your cell")
    read.add_argument(
        "--since",
        type=int,
        default=None,
        help="show messages after this cursor (default: new ones)",
    )

    watch = command(
        commands, "watch", "Print messages as they arrive, one per line.", built["watch"]
    )
    watch.add_argument("--count", type=int, default=None, help="stop after this many messages")
    watch.add_argument("--timeout", type=float, default=3600.0, help="stop after this many seconds")

    command(commands, "motions", "List open motions in your groups.", built["motions"])
    sign = command(commands, "sign", "Sign a motion you are asked to sign.", built["sign"])
    sign.add_argument("motion", help="the motion id, from `spokes motions`")

    cell = commands.add_parser("cell", help="Change your cell.", description="Change your cell.")
    cell_sub = cell.add_subparsers(dest="action", required=True, parser_class=parser_class)
    split = command(
        cell_sub,
        "split",
        "Move chosen members to a new cell, once each of them signs.",
        built["split"],
    )
    split.add_argument("group", help="the cell to split (a group id, or `cell`)")
    split.add_argument(
        "--member", action="append", required=True, help="a member who moves (repeat)"
    )
