"""`spokes log GROUP` and `spokes exposure MEMBER`: read from the logs this client verified.

Both are read-only: they sync the logs first (as `spokes cells` does), sign
nothing and post nothing. Member ids are printed as text (the form commands
take) and named where this client verified a profile name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from client.cli.common import Commands, Output, client_command, when
from client.history import (
    EpochAt,
    Exposure,
    History,
    Invitee,
    LastSeen,
    LogEntry,
    SharedGroup,
    Stay,
)
from client.profiles import Names
from client.sdk import Client
from crypto.encoding import b32e
from crypto.keys import member_id_text

# --- spokes log -------------------------------------------------------------------------


def _id(member: bytes | None) -> str | None:
    return None if member is None else member_id_text(member)


def _group(group: bytes | None) -> str | None:
    return None if group is None else b32e(group)


def entry_data(entry: LogEntry, names: Names) -> dict[str, Any]:
    """One entry for --json: every key always there (null or [] where it does not apply)."""
    return {
        "seq": entry.seq,
        "type": entry.type,
        "op": entry.op,
        "author": member_id_text(entry.author),
        "author_name": names.verified.get(entry.author),
        "subject": _id(entry.subject),
        "subject_name": None if entry.subject is None else names.verified.get(entry.subject),
        "at": entry.at,
        "members": [member_id_text(m) for m in entry.members],
        "signers": [member_id_text(m) for m in entry.signers],
        "issuer": _id(entry.issuer),
        "vouchers": [member_id_text(m) for m in entry.vouchers],
        "grounds": entry.grounds,
        "group": _group(entry.group),
        "epoch": entry.epoch,
        "motion_id": _group(entry.motion),
        "origin": _group(entry.origin),
        "reason": entry.reason,
    }


def _people(members: tuple[bytes, ...], names: Names, none: str = "nobody") -> str:
    return ", ".join(names.of(m) for m in members) or none


def _revoked_text(e: LogEntry, n: Names) -> str:
    who = n.of(e.subject) if e.subject else "?"
    if e.grounds == "self":
        return f"{who} revoked: their own revocation, made in advance, published by " + _people(
            e.signers, n
        )
    return f"{who} revoked by a steward ({_people(e.signers, n)})"


def _expelled_text(e: LogEntry, n: Names) -> str:
    who = n.of(e.subject) if e.subject else "?"
    text = f"{who} expelled: motion signed by {_people(e.signers, n)}"
    return text + (f"; reason (sealed to you): {e.reason}" if e.reason else "")


def _seat_text(e: LogEntry, n: Names) -> str:
    holder = f"now held by {n.of(e.subject)}" if e.subject else "now empty"
    gone = f" ({_people(e.members, n)} left the council)" if e.members else ""
    return f"seat of group {_group(e.group)} {holder}{gone}"


# How each type of entry reads; any other type reads "TYPE SUBJECT, signed by …".
_TEXTS: dict[str, Callable[[LogEntry, Names], str]] = {
    "founded": lambda e, n: (
        f"founded with {_people(e.members, n)}"
        + (" (made by a split)" if e.origin else "")
        + (f", a seat for group {_group(e.group)}" if e.group else "")
    ),
    "admitted": lambda e, n: (
        f"{n.of(e.subject) if e.subject else '?'} admitted: certificate by "
        f"{n.of(e.issuer) if e.issuer else '?'}, "
        + (f"vouched by {_people(e.vouchers, n)}" if e.vouchers else "no vouches beside it")
    ),
    "left": lambda e, n: f"{n.of(e.subject) if e.subject else '?'} left",
    "revoked": _revoked_text,
    "expelled": _expelled_text,
    "rekey": lambda e, n: f"key period {e.epoch} began",
    "split": lambda e, n: (
        f"split: {_people(e.members, n)} moved to the new cell {_group(e.group)}, "
        f"signed by {_people(e.signers, n)}"
    ),
    "elected": lambda e, n: (
        f"{n.of(e.subject) if e.subject else '?'} elected spokesperson, "
        f"signed by {_people(e.signers, n)}"
    ),
    "recalled": lambda e, n: (
        f"{n.of(e.subject) if e.subject else '?'} recalled as spokesperson, "
        f"signed by {_people(e.signers, n)}"
    ),
    "linked": lambda e, n: (
        f"group {_group(e.group)} linked, its seat held by "
        f"{n.of(e.subject) if e.subject else '?'}; council motion signed by "
        f"{_people(e.signers, n)}"
    ),
    "seat_changed": _seat_text,
    "frozen": lambda e, n: (
        f"{n.of(e.subject) if e.subject else '?'} frozen, signed by {_people(e.signers, n)}"
    ),
    "unfrozen": lambda e, n: (
        f"{n.of(e.subject) if e.subject else '?'}'s freeze lifted, signed by "
        f"{_people(e.signers, n)}"
        if e.signers
        else f"{n.of(e.subject) if e.subject else '?'}'s freeze lapsed"
    ),
}


def entry_line(entry: LogEntry, names: Names) -> str:
    """One line of `spokes log` for a person."""
    shown = _TEXTS.get(entry.type)
    if shown is not None:
        what = shown(entry, names)
    else:
        what = entry.type + (f" {names.of(entry.subject)}" if entry.subject else "")
        what += f", signed by {_people(entry.signers, names)}" if entry.signers else ""
    return f"[{entry.seq}] {when(entry.at)}  {what}  (by {names.of(entry.author)})"


@client_command()
async def show_log(args: argparse.Namespace, client: Client) -> Output:
    found = await History(client).log(args.group)
    names = Names(found.names)
    data = {
        "group_id": b32e(found.group),
        "kind": found.kind,
        "level": found.level,
        "read_only": found.read_only,
        "events": [entry_data(e, names) for e in found.entries],
    }
    head = f"{found.kind} {b32e(found.group)} (level {found.level}): its signed roster log"
    if found.read_only:
        head += ", kept up to the split that moved you out"
    lines = [head + ", verified by your client, oldest first:"]
    lines += [entry_line(e, names) for e in found.entries]
    return Output(data, "\n".join(lines))


# --- spokes exposure --------------------------------------------------------------------


def _epoch_data(epoch: EpochAt | None) -> dict[str, int] | None:
    return None if epoch is None else {"epoch": epoch.epoch, "seq": epoch.seq, "at": epoch.at}


def _stay_data(stay: Stay) -> dict[str, Any]:
    return {
        "group_id": b32e(stay.group),
        "kind": stay.kind,
        "level": stay.level,
        "since_seq": stay.since.seq,
        "since_at": stay.since.at,
        "since_type": stay.since.type,
        "until_seq": None if stay.until is None else stay.until.seq,
        "until_at": None if stay.until is None else stay.until.at,
        "until_type": None if stay.until is None else stay.until.type,
        "first_epoch": _epoch_data(stay.first_epoch),
        "epochs": [e.epoch for e in stay.epochs],
    }


def _shared_data(shared: SharedGroup) -> dict[str, Any]:
    data = _stay_data(shared.stay)
    for key in ("until_seq", "until_at", "until_type"):
        del data[key]
    return {
        **data,
        "members": shared.members,
        "spokesperson": shared.spokesperson,
        "seat_for": None if shared.seat_for is None else b32e(shared.seat_for),
        "frozen_since": shared.frozen_since,
    }


def _last_seen_data(last: LastSeen | None) -> dict[str, Any] | None:
    if last is None:
        return None
    return {
        "group_id": b32e(last.group),
        "seq": last.entry.seq,
        "at": last.entry.at,
        "type": last.entry.type,
        "moved_to": None if last.moved_to is None else b32e(last.moved_to),
    }


def exposure_data(exposure: Exposure, names: Names) -> dict[str, Any]:
    """`spokes exposure --json`: the same keys whatever the member holds."""

    def invitee(i: Invitee) -> dict[str, Any]:
        return {
            "member_id": member_id_text(i.member),
            "name": names.verified.get(i.member),
            "direct": i.direct,
            "invited_by": _id(i.invited_by),
            "groups": [b32e(g) for g in i.groups],
            "last_seen": _last_seen_data(i.last_seen),
        }

    return {
        "member_id": member_id_text(exposure.member),
        "name": names.verified.get(exposure.member),
        "groups": [_shared_data(s) for s in exposure.groups],
        "past": [_stay_data(s) for s in exposure.past],
        "invited_by": _id(exposure.invited_by),
        "invited_by_name": None
        if exposure.invited_by is None
        else names.verified.get(exposure.invited_by),
        "steward": exposure.steward,
        "invitees": [invitee(i) for i in exposure.invitees],
        "unknown": list(exposure.unknown),
    }


def _epochs_text(stay: Stay) -> str:
    first = stay.first_epoch
    if first is None:
        return "no key period sealed to them there yet"
    return f"key periods from {first.epoch} (roster {first.seq}, {when(first.at)}) on"


def _shared_line(shared: SharedGroup, names: Names) -> str:
    stay = shared.stay
    held = []
    if shared.spokesperson:
        held.append("spokesperson")
    if shared.seat_for is not None:
        held.append(f"holds the seat of group {b32e(shared.seat_for)}")
    if shared.frozen_since is not None:
        held.append(
            f"frozen since {when(shared.frozen_since)}: no key period is sealed to them meanwhile"
        )
    return (
        f"  {_group_text(stay)}: on its roster since roster {stay.since.seq} "
        f"({stay.since.type}, {when(stay.since.at)}); {_epochs_text(stay)}; knows its "
        f"{shared.members} members and their profiles" + ("; " + ", ".join(held) if held else "")
    )


def _group_text(stay: Stay) -> str:
    level = f" (level {stay.level})" if stay.kind != "cell" else ""
    return f"{stay.kind} {b32e(stay.group)}{level}"


def _past_line(stay: Stay) -> str:
    until = (
        "still on it where your log of it ends"
        if stay.until is None
        else f"to roster {stay.until.seq} ({stay.until.type}, {when(stay.until.at)})"
    )
    periods = ", ".join(str(e.epoch) for e in stay.epochs) or "none"
    return (
        f"  {_group_text(stay)}: from roster {stay.since.seq} "
        f"({stay.since.type}) {until}; key periods {periods}"
    )


def _invitee_line(invitee: Invitee, names: Names) -> str:
    how = (
        "direct"
        if invitee.direct
        else f"invited by {names.of(invitee.invited_by) if invitee.invited_by else 'someone below them'}"
    )
    if invitee.groups:
        where = "in " + ", ".join(b32e(g) for g in invitee.groups)
    elif invitee.last_seen is not None:
        last = invitee.last_seen
        where = f"last seen in {b32e(last.group)} ({last.entry.type} at roster {last.entry.seq}"
        where += f", to cell {b32e(last.moved_to)})" if last.moved_to else ")"
    else:
        where = "in none of your groups"
    return f"  {names.of(invitee.member)} ({how}): {where}"


def exposure_text(exposure: Exposure, names: Names) -> str:
    who = names.verified.get(exposure.member)
    member = member_id_text(exposure.member)
    lines = [
        f"What {f'{who} ({member})' if who else f'member {member}'} can see, as far as your "
        "client can verify:"
    ]
    lines += [_shared_line(s, names) for s in exposure.groups]
    if exposure.past:
        lines.append("Before, they could read (and keep) what was sent while they were on:")
        lines += [_past_line(s) for s in exposure.past]
    if exposure.invited_by is not None:
        inviter = names.of(exposure.invited_by)
    else:
        inviter = "nobody: a steward" if exposure.steward else "not shown by any log you hold"
    lines.append(f"Invited by: {inviter}")
    if exposure.invitees:
        lines.append("Their invitees you can see:")
        lines += [_invitee_line(i, names) for i in exposure.invitees]
    else:
        lines.append("Invitees of theirs you can see: none")
    lines.append("Unknown to you:")
    lines += [f"  - {text}" for text in exposure.unknown]
    return "\n".join(lines)


@client_command()
async def exposure(args: argparse.Namespace, client: Client) -> Output:
    found = await History(client).exposure(args.member)
    names = Names(found.names)
    return Output(exposure_data(found.exposure, names), exposure_text(found.exposure, names))


def register(commands: Commands) -> None:
    logging = commands.add(
        "log", "Show a group's signed history (admissions, expulsions, elections, …).", show_log
    )
    logging.add_argument(
        "group",
        help="a group id, or `cell` for your cell; a cell a split moved you out of shows "
        "up to the split",
    )
    exposing = commands.add(
        "exposure",
        "Show what a member of your cell (or of a council you share) can see.",
        exposure,
    )
    exposing.add_argument("member", help="the member id, from `spokes members cell`")
