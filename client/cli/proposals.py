"""`spokes propose`, `answer` and `proposals`: a group decides, each client counting for itself.

The outcome of each proposal is computed by the member's own client from
the signed, encrypted answers it verified (client/proposals.py). Here too
is how `read` and `watch` show a proposal or an answer among the messages.
`spokes mandate` (carrying an agreed proposal to a council) waits for
councils and relays.
"""

from __future__ import annotations

import argparse
import re

from client.cli.common import Commands, Output, client_command, when
from client.groups import ReadMessage
from client.profiles import Names, Profiles
from client.proposals import (
    CHOICES,
    MAX_DEADLINE_SECONDS,
    MIN_DEADLINE_SECONDS,
    Proposals,
    Tally,
    answer_of,
    proposal_of,
)
from client.sdk import Client
from crypto.keys import member_id_text, parse_member_id

DEFAULT_DEADLINE = "48h"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

OUTCOME_WORDS = {
    "agreed": "agreed",
    "blocked": "blocked",
    "open": "open",
    "no_quorum": "not agreed (too few answered, or nobody agreed)",
}


def deadline(text: str) -> int:
    """`48h`, `30m`, `7d`, `1d12h` as seconds, 10 minutes to 30 days; argparse reports the rest."""
    lowered = text.strip().lower()
    parts = re.findall(r"(\d+)\s*([smhd])", lowered)
    if not parts or re.sub(r"\s|\d+\s*[smhd]", "", lowered):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration; write it like 30m, 48h, 7d or 1d12h"
        )
    seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if not MIN_DEADLINE_SECONDS <= seconds <= MAX_DEADLINE_SECONDS:
        raise argparse.ArgumentTypeError("a proposal's deadline is 10m to 30d away")
    return seconds


# How read and watch show what a message carries.


def marked_text(message: ReadMessage) -> str:
    """A message's text for a person, marked when it is a proposal or an answer."""
    proposal = proposal_of(message)
    if proposal is not None:
        return (
            f"[proposal {proposal.proposal_id}, open until {when(proposal.deadline)}] "
            f"{proposal.text}"
        )
    answer = answer_of(message)
    if answer is not None:
        shown = f"[answer: {answer.choice} to proposal {answer.proposal_id[:10]}]"
        return shown + (f" {answer.reason}" if answer.reason else "")
    return message.text


def sealed_data(message: ReadMessage) -> dict[str, object]:
    """The `proposal` and `answer` objects of a message in --json (null when it carries none)."""
    proposal, answer = proposal_of(message), answer_of(message)
    return {
        "proposal": None
        if proposal is None
        else {"proposal_id": proposal.proposal_id, "deadline": proposal.deadline},
        "answer": None
        if answer is None
        else {
            "proposal_id": answer.proposal_id,
            "choice": answer.choice,
            "reason": answer.reason,
        },
    }


# The commands.


def tally_data(found: Tally, names: Names, me: str) -> dict[str, object]:
    proposal = found.proposal
    mine = found.first_answer_of(me)
    return {
        "proposal_id": proposal.proposal_id,
        "text": proposal.text,
        "by": proposal.by,
        "by_name": names.verified.get(parse_member_id(proposal.by)),
        "sent_at": proposal.sent_at,
        "seq": proposal.cursor,
        "deadline": proposal.deadline,
        "outcome": found.outcome,
        "asked": len(found.asked),
        "agree": found.count("agree"),
        "stand_aside": found.count("stand-aside"),
        "block": found.count("block"),
        "answered_by_me": mine is not None,
        "my_answer": None if mine is None else mine.choice,
        "reasons": [
            {
                "by": a.by,
                "by_name": names.verified.get(parse_member_id(a.by)),
                "choice": a.choice,
                "reason": a.reason,
            }
            for a in found.counted
            if a.reason
        ],
        "ignored": [
            {
                "by": i.answer.by,
                "by_name": names.verified.get(parse_member_id(i.answer.by)),
                "why": i.why,
            }
            for i in found.ignored
        ],
        "closed_by": found.closed_by,
    }


IGNORED_WORDS = {
    "late": "came after the deadline",
    "second_answer": "a second answer",
    "not_asked": "not on the roster it was put to",
}


def tally_text(found: Tally, names: Names, me: str) -> str:
    proposal = found.proposal
    mine = found.first_answer_of(me)
    closes = "closed, deadline" if found.closed else "answers until"
    lines = [
        f"{proposal.proposal_id}  by {names.of_text(proposal.by)}: "
        f"{OUTCOME_WORDS[found.outcome]}; {closes} {when(proposal.deadline)}",
        f"    {proposal.text}",
        f"    agree {found.count('agree')}, stand aside {found.count('stand-aside')}, "
        f"block {found.count('block')}, of {len(found.asked)} asked; "
        + ("you have not answered" if mine is None else f"you answered {mine.choice}"),
    ]
    lines += [
        f"    {a.choice} by {names.of_text(a.by)}: {a.reason}" for a in found.counted if a.reason
    ]
    lines += [
        f"    not counted: {names.of_text(i.answer.by)}'s {i.answer.choice} "
        f"({IGNORED_WORDS[i.why]})"
        for i in found.ignored
    ]
    return "\n".join(lines)


@client_command()
async def propose(args: argparse.Namespace, client: Client) -> Output:
    data = await Proposals(client).propose(args.group, args.text, args.deadline)
    text = (
        f"Proposal {data['proposal_id']} sent; open until {when(int(str(data['deadline'])))}. "
        f"Members answer with `spokes answer {data['proposal_id']} agree|stand-aside|block`."
    )
    return Output(data, text)


@client_command()
async def answer(args: argparse.Namespace, client: Client) -> Output:
    data = await Proposals(client).answer(args.proposal, args.choice, args.reason)
    return Output(
        data,
        f"Answered {data['answer']} (group seq {data['seq']}). "
        f"`spokes proposals {data['group']}` shows the count.",
    )


@client_command()
async def proposals(args: argparse.Namespace, client: Client) -> Output:
    group, found = await Proposals(client).proposals(args.group)
    names = await Profiles(client).names_of(args.group)
    me = member_id_text(client.me)
    return Output(
        {"proposals": [tally_data(t, names, me) for t in found]},
        "\n".join(tally_text(t, names, me) for t in found) or "No proposals kept in this group.",
    )


@client_command()
async def mandate(args: argparse.Namespace, client: Client) -> Output:
    data = await Proposals(client).mandate(args.proposal, args.to)
    return Output(
        data,
        f"Mandate carried to {data['group']} (seq {data['seq']}): the proposal and its counts, "
        "never who answered.",
    )


def register(commands: Commands) -> None:
    proposing = commands.add(
        "propose", "Put a proposal to a group; members answer until its deadline.", propose
    )
    proposing.add_argument("group", help="a group id, or `cell` for your cell")
    proposing.add_argument("text", help="what you propose")
    proposing.add_argument(
        "--deadline",
        type=deadline,
        default=deadline(DEFAULT_DEADLINE),
        metavar="TIME",
        help=f"how long members have to answer, like 30m, 48h, 7d "
        f"(default {DEFAULT_DEADLINE}; 10m to 30d)",
    )
    answering = commands.add(
        "answer", "Answer a proposal: agree, stand aside, or block (with a reason).", answer
    )
    answering.add_argument("proposal", help="the proposal id (`spokes proposals GROUP` lists them)")
    answering.add_argument("choice", choices=CHOICES, help="agree, stand-aside or block")
    answering.add_argument(
        "--reason",
        default=None,
        help="why; a block must say why (default: none)",
    )
    listing = commands.add(
        "proposals",
        "List a group's proposals, each with the outcome your client counts.",
        proposals,
    )
    listing.add_argument("group", help="a group id, or `cell` for your cell")
    mandating = commands.add(
        "mandate", "Carry an agreed proposal of your group to its council, as its mandate.", mandate
    )
    mandating.add_argument("proposal", help="the proposal's id, as `spokes proposals` shows it")
    mandating.add_argument("--to", required=True, help="the council to carry it to (a group id)")
