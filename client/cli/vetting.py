"""`spokes pending`, `admit`, `vouch`, `block` and `status`: vetting newcomers."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from client.cli.common import Commands, Output, cell_names, client_command, run_duties, when
from client.errors import ServerError
from client.exclusion import Exclusion
from client.profiles import Names
from client.sdk import Client, parse_member
from client.vetting import Vetting
from crypto.keys import member_id_text, parse_member_id


@client_command()
async def pending(args: argparse.Namespace, client: Client) -> Output:
    waiting = await Vetting(client).pending()
    names = await cell_names(client) if waiting else Names({})
    lines = [
        f"{p.member_id}  invited by {names.of_text(p.invited_by)}, "
        f"safety number {p.safety_number}\n    {p.stage} ({p.vouches}/{p.needed} vouches)"
        for p in waiting
    ]
    text = "\n".join(lines) if lines else "No newcomers are waiting in your cell."
    data = [
        {**asdict(p), "invited_by_name": names.verified.get(parse_member_id(p.invited_by))}
        for p in waiting
    ]
    return Output({"pending": data}, text)


@client_command()
async def admit(args: argparse.Namespace, client: Client) -> Output:
    data = await Vetting(client).admit(args.member, args.safety_number)
    await run_duties(client)
    return Output(
        data, f"Admission certificate signed. {data['member_id']} is now {data['status']}."
    )


@client_command()
async def vouch(args: argparse.Namespace, client: Client) -> Output:
    data = await Vetting(client).vouch(args.member)
    await run_duties(client)
    return Output(data, f"Vouched for {data['member_id']}; they are now {data['status']}.")


@client_command()
async def block(args: argparse.Namespace, client: Client) -> Output:
    data = await Vetting(client).block(args.member)
    await run_duties(client)
    return Output(data, f"Blocked {data['member_id']}; they are now {data['status']}.")


@client_command()
async def status(args: argparse.Namespace, client: Client) -> Output:
    subject = parse_member(args.member) if args.member else client.me
    try:
        standing = await Exclusion(client).standing(subject)
    except ServerError as exc:
        if exc.code != "not_admitted":
            raise
        standing = None  # not admitted yet: no revocation list, no roster to look at
    if standing is not None and standing["standing"] in REVOKED:
        data = {"member_id": member_id_text(subject), "status": standing["standing"], **standing}
        return Output(
            data,
            f"{data['member_id']}: {standing['standing']} since {when(standing['since'])} "
            "(verified by this client from the network's revocation list)",
        )
    view = await Vetting(client).status(args.member)
    await run_duties(client)
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
        text += f"\nprobation ends {when(view.probation_ends_at)}"
    data = asdict(view)
    if standing is not None:
        data.update(standing)
        text += f"\n{standing['standing']} since {when(standing['since'])}"
    return Output(data, text)


# What the network's revocation list says of a member who is no longer one.
REVOKED = ("expelled", "revoked_by_self", "revoked")


def register(commands: Commands) -> None:
    commands.add("pending", "List newcomers waiting in your cell, with safety numbers.", pending)
    admitting = commands.add(
        "admit", "Admit a newcomer you invited, after comparing safety numbers.", admit
    )
    admitting.add_argument("member", help="the newcomer's member id")
    admitting.add_argument("--safety-number", required=True, help="the number they read to you")
    for name, summary, handler in (
        ("vouch", "Vouch for a newcomer of your cell.", vouch),
        ("block", "Block a newcomer of your cell during vetting.", block),
    ):
        verdict = commands.add(name, summary, handler)
        verdict.add_argument("member", help="the newcomer's member id")
    showing = commands.add("status", "Show a member's status, verified by this client.", status)
    showing.add_argument("member", nargs="?", help="a member id (default: you)")
