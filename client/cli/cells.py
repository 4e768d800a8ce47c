"""`spokes cells`, `members`, `profile set`, `send`, `read` and `watch`: my groups.

`watch` prints one line per message on stdout (with --json, one JSON object
per message), so `spokes watch | grep` sees only messages. It ends with how
many it showed: on stderr for a person ("Watched for 30 s: 4 messages."), or
with --json as a last line {"received": N, "reason": "timeout" | "count",
"reconnects": K}. When it loses the server it says so on stderr, connects
again by itself and resumes where it stopped (client/feed.py); an error
ends it as any command's does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from client.cli.common import Commands, Output, cell_names, client_command
from client.cli.proposals import marked_text, sealed_data
from client.cli.relays import provenance_data, provenance_mark
from client.feed import LiveFeed
from client.groups import ReadMessage
from client.messages import Messages
from client.profiles import Names, Profiles
from client.rosters import Rosters
from client.sdk import Client
from crypto.encoding import b32e
from crypto.keys import parse_member_id, revocation_fingerprint


def message_line(message: ReadMessage, names: Names) -> str:
    sent = time.strftime("%Y-%m-%d %H:%M", time.gmtime(message.sent_at))
    relayed = provenance_mark(message)
    if message.mandate is not None:
        m = {k: str(v) for k, v in message.mandate.items() if not isinstance(v, bytes)}
        relayed += (
            f"[mandate: {m.get('outcome')}, {m.get('agree')} agree, {m.get('stand_aside')} "
            f"stand aside, {m.get('block')} block of {m.get('asked')}] "
        )
    return (
        f"[{message.cursor}] {sent} {names.of_text(message.sender)}: "
        f"{relayed}{marked_text(message)}"
    )


def message_data(message: ReadMessage, names: Names) -> dict[str, object]:
    sender = names.verified.get(parse_member_id(message.sender))
    return {
        **asdict(message),
        "sender_name": sender,
        **sealed_data(message),
        "provenance": provenance_data(message),
        "alert": json_safe(message.alert),
        "mandate": json_safe(message.mandate),
    }


def json_safe(value: object) -> object:
    """A sealed record for --json: its ids (bytes) as the base32 text commands take."""
    if isinstance(value, bytes):
        return b32e(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


@client_command()
async def cells(args: argparse.Namespace, client: Client) -> Output:
    views = await Rosters(client).cells(args.at)
    names = await cell_names(client) if any(v.spokesperson for v in views) else Names({})
    lines = [
        f"{v.group_id}  {v.kind} level {v.level}, {v.members} members, key period {v.epoch}"
        + ("  (your cell)" if v.current_cell else "")
        + (f"\n    spokesperson {names.of_text(v.spokesperson)}" if v.spokesperson else "")
        + f"\n    roster {v.roster_seq}, fingerprint {v.fingerprint}"
        for v in views
    ]
    left = [
        {"group_id": b32e(r.group_id), "split_at": r.left_at} for r in Rosters(client).left_cells()
    ]
    lines += [
        f"{c['group_id']}  a cell a split moved you out of: read-only, up to roster "
        f"{c['split_at']} (`spokes read {c['group_id']}`)"
        for c in left
    ]
    known = client.state.revocations
    revoked = {
        "count": len(known),
        "fingerprint": revocation_fingerprint(known[-1]) if known else None,
    }
    if lines:
        lines.append(
            f"revocations {revoked['count']}"
            + (f", fingerprint {revoked['fingerprint']}" if known else "")
        )
        lines.append(
            "Compare these when you meet. The same roster seq with another fingerprint "
            "means the server is showing you different rosters; if your seqs differ, the "
            "one further on runs `spokes cells --at SEQ` with the other's seq. The same "
            "for revocations: the same count with another fingerprint is a forked list, "
            "and a lower count means a revocation was kept from you."
        )
    data = {"groups": [asdict(v) for v in views], "left_cells": left, "revocations": revoked}
    return Output(data, "\n".join(lines) or "You are in no group yet.")


@client_command()
async def members(args: argparse.Namespace, client: Client) -> Output:
    views = await Profiles(client).members(args.group)
    lines = [
        f"{v.member_id}  {v.name or '(no profile yet)'}" + (f"  {v.contact}" if v.contact else "")
        for v in views
    ]
    return Output({"members": [asdict(v) for v in views]}, "\n".join(lines))


@client_command()
async def profile_set(args: argparse.Namespace, client: Client) -> Output:
    count = await Profiles(client).set_profile(args.name, args.contact, args.notes)
    return Output(
        {"groups": count}, f"Profile sealed for {count} group(s); only their members can read it."
    )


@client_command()
async def send(args: argparse.Namespace, client: Client) -> Output:
    data = await Messages(client).send(args.group, args.text)
    return Output(data, f"Sent ({data['message_id']}, cursor {data['cursor']}).")


@client_command()
async def read(args: argparse.Namespace, client: Client) -> Output:
    if args.history:
        return await read_history(args.group, client)
    messages = await Messages(client).read(args.group, args.since)
    names = await Profiles(client).names_of(args.group)
    lines = [message_line(m, names) for m in messages]
    return Output(
        {"messages": [message_data(m, names) for m in messages]},
        "\n".join(lines) or "No new messages.",
    )


async def read_history(group_text: str, client: Client) -> Output:
    """`read GROUP --history`: the cells splits moved me out of, up to each split, then GROUP.

    Each line is marked with its group; a line marks each split.
    """
    kept = await Messages(client).history(group_text)
    profiles = Profiles(client)
    current = Rosters(client).resolve(group_text)
    names = {current: await profiles.names_of(group_text)}
    lines, data, previous = [], [], None
    for group, message in kept:
        if group not in names:  # a cell I left: the names last verified there
            names[group] = Names(dict(client.state.record(group).names))
        if previous is not None and group != previous:
            lines.append(f"--- split: from here on, {b32e(group)} ---")
        previous = group
        tag = b32e(group)[:8] + ("" if client.state.record(group).left_at is None else ", left")
        lines.append(f"({tag}) {message_line(message, names[group])}")
        data.append({"group_id": b32e(group), **message_data(message, names[group])})
    return Output({"messages": data}, "\n".join(lines) or "No messages kept.")


@client_command(hold_lock=False)
async def watch(args: argparse.Namespace, client: Client) -> Output:
    async with client.fresh():
        known = await Profiles(client).known_names()
        client.save()

    def emit(group: str, message: ReadMessage) -> None:
        names = Names(known.get(group, {}))
        if args.json:
            print(json.dumps({"group_id": group, **message_data(message, names)}), flush=True)
        else:
            print(message_line(message, names), flush=True)

    def notify(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    watched = await LiveFeed(client).watch(args.count, args.timeout, emit, notify)
    data = {
        "received": watched.received,
        "reason": watched.reason,
        "reconnects": watched.reconnects,
    }
    if args.json:
        print(json.dumps(data), flush=True)
    else:
        plural = "" if watched.received == 1 else "s"
        print(
            f"Watched for {watched.seconds:.0f} s: {watched.received} message{plural}"
            + (" (--count reached)." if watched.reason == "count" else "."),
            file=sys.stderr,
            flush=True,
        )
    return Output(data, "", streamed=True)


def register(commands: Commands) -> None:
    listing_cells = commands.add("cells", "List your groups (cells, councils), verified.", cells)
    listing_cells.add_argument(
        "--at",
        type=int,
        default=None,
        help="show each roster fingerprint as it stood at this roster seq "
        "(to compare with someone whose log is shorter; default: the latest)",
    )
    listing = commands.add("members", "List a group's members with their profiles.", members)
    listing.add_argument("group", help="a group id, or `cell` for your cell")

    profile = commands.group("profile", "Your profile in your groups.")
    setting = profile.add("set", "Set your name and contact, sealed per group.", profile_set)
    setting.add_argument("--name", required=True, help="the name your groups see")
    setting.add_argument("--contact", help="how to reach you (default: none)")
    setting.add_argument("--notes", help="anything else for your groups (default: none)")

    sending = commands.add("send", "Send an encrypted message to a group.", send)
    sending.add_argument("group", help="a group id, or `cell` for your cell")
    sending.add_argument("text", help="the message")

    reading = commands.add("read", "Read a group's messages, verified.", read)
    reading.add_argument(
        "group",
        help="a group id, or `cell` for your cell; a cell a split moved you out of "
        "reads up to the split",
    )
    which = reading.add_mutually_exclusive_group()
    which.add_argument(
        "--since",
        type=int,
        default=None,
        help="show messages after this cursor (default: new ones)",
    )
    which.add_argument(
        "--history",
        action="store_true",
        help="show every message kept, oldest first, after those of the cells splits "
        "moved you out of (each up to its split), each marked with its group "
        "(default: off)",
    )

    watching = commands.add("watch", "Print messages as they arrive, one per line.", watch)
    watching.add_argument(
        "--count", type=int, default=None, help="stop after this many messages (default: no limit)"
    )
    watching.add_argument(
        "--timeout", type=float, default=3600.0, help="stop after this many seconds (default 3600)"
    )
