"""Vetting newcomers: pending, admit, vouch, block, and a member's status.

The rule it keeps: every fact of a vetting comes from signed statements
this client verified against the pinned genesis (client/verify.py decides),
and the members a vetting is counted against include everyone the cell's
signed roster log shows; a certificate is signed only after the newcomer's
safety number, compared in person, matches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from client import api, verify
from client.errors import ClientError
from client.groups import extend_log
from client.revocations import Revocations
from client.sdk import Client, parse_member
from crypto.chains import make_admission, make_verdict
from crypto.encoding import b32e
from crypto.keys import member_id_text, safety_number
from crypto.roster import GroupRules


def normalize_safety_number(text: str) -> str:
    """People read safety numbers with spaces or dashes; compare the digits only."""
    return "".join(ch for ch in text if ch not in " -\t")


@dataclass(frozen=True)
class PendingNewcomer:
    member_id: str
    safety_number: str
    invited_by: str
    joined_at: int
    status: str
    stage: str
    vouches: int
    needed: int
    invited_by_me: bool


@dataclass(frozen=True)
class MemberStatusView:
    member_id: str
    status: str
    cell_id: str
    network_id: str
    admitted_at: int | None
    probation_ends_at: int | None
    vouches: int | None  # None: not countable, the server shows you no cell yet
    needed: int | None
    verified: bool
    # Your own standing before admission: the server shows you only your own
    # statements, so the certificate is checked and the vouches are not.
    limited: bool = False
    certified: bool | None = None  # your inviter's certificate is signed (verified)
    server_status: str | None = None  # what the server says, unverified (limited only)


class Vetting:
    """One member's part in vetting their cell's newcomers."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.revocations = Revocations(client)

    async def evidence(self, member_text: str | None) -> verify.MemberReport:
        """A member's standing (mine by default), judged from their verified evidence."""
        genesis, _ = self.client.network()
        member_id = (
            self.client.state.member_id if member_text is None else parse_member(member_text)
        )
        evidence = api.parse_evidence(await self.client.call(api.member_evidence(member_id)))
        if evidence.member_id.lower() != member_id_text(member_id):
            raise verify.fail("the server sent evidence about another member")
        report = verify.evaluate_member(genesis, evidence, self.client.now())
        listed = verify.revocation_list(genesis, evidence.revocations)
        self.revocations.accept(listed)
        await self._check_listed(report, listed.revoked)
        return report

    async def _check_listed(self, report: verify.MemberReport, revoked: dict[bytes, int]) -> None:
        """The cellmates a vetting is counted against include everyone my cell's log shows.

        The server lists the cell's members in the evidence; a server that
        leaves some out would have a vetting counted against too few members
        (so fewer vouches, no outsider needed). The signed roster log, which
        this client verified, names them all: any missing is a lie.
        """
        genesis, cell_id = self.client.network()
        record = self.client.state.groups.get(cell_id)
        if report.cell.group.group_id != cell_id or record is None or not record.events:
            return  # not my cell, or I hold no verified log of it yet
        fetched = [
            verify.statement(w, "roster", genesis.network_id)
            for w in api.parse_roster(await self.client.call(api.group_roster(cell_id)))
        ]
        state = extend_log(record.events, fetched, rules=GroupRules.of(genesis))
        hidden = set(state.members) - set(report.cell.members) - set(revoked)
        if hidden:
            raise verify.fail(
                f"the server's list of your cell leaves out {len(hidden)} member(s) that its "
                "signed roster log shows, so a vetting would be counted against too few"
            )

    def _check_newcomer(self, report: verify.MemberReport) -> verify.Newcomer:
        """A newcomer of my cell, invited by a member of my cell."""
        _, cell_id = self.client.network()
        newcomer = report.newcomer
        if newcomer is None:
            raise ClientError(
                "not_a_newcomer", "This member founded the network; there is nothing to vet."
            )
        if report.cell.group.group_id != cell_id:
            raise verify.fail("the server shows a newcomer of another cell")
        if newcomer.inviter not in report.cell.members:
            raise verify.fail("the newcomer's inviter is not a member of your cell")
        return newcomer

    async def pending(self) -> list[PendingNewcomer]:
        genesis, _ = self.client.network()
        me = self.client.state.identity.public_key()
        result = []
        for evidence in api.parse_pending(await self.client.call(api.pending_admissions())):
            report = verify.evaluate_member(genesis, evidence, self.client.now())
            newcomer = self._check_newcomer(report)
            stage = "awaiting-admission" if report.outcome is None else report.outcome.status
            result.append(
                PendingNewcomer(
                    member_id=member_id_text(report.member_id),
                    safety_number=safety_number(me, newcomer.key),
                    invited_by=member_id_text(newcomer.inviter),
                    joined_at=newcomer.join.statement.time,
                    status=report.status,
                    stage=stage,
                    vouches=report.vouches,
                    needed=report.needed,
                    invited_by_me=newcomer.inviter == self.client.state.member_id,
                )
            )
        return result

    async def admit(self, member_text: str, typed_safety_number: str) -> dict[str, str]:
        """Sign the admission certificate, only if the safety number matches."""
        genesis, _ = self.client.network()
        report = await self.evidence(member_text)
        newcomer = self._check_newcomer(report)
        me = self.client.state.identity
        if newcomer.inviter != me.member_id:
            raise ClientError(
                "not_inviter",
                "Only the member who invited this newcomer can admit them; "
                "you can vouch for them once their inviter has.",
            )
        if report.admission is not None:
            raise ClientError(
                "already_admitted",
                "This newcomer already has an admission certificate; their cell's vouches come "
                "next (`spokes pending` shows how far they are).",
            )
        expected = safety_number(me.public_key(), newcomer.key)
        if normalize_safety_number(typed_safety_number) != normalize_safety_number(expected):
            raise ClientError(
                "safety_number_mismatch",
                "The safety number you typed is not this newcomer's; nothing was signed. "
                "Compare it again in person: if it still differs, the invite code reached "
                "someone else, so do not admit them.",
            )
        admission = make_admission(
            me,
            genesis.network_id,
            newcomer.key,
            newcomer.invite.cell,
            newcomer.invite.lookup_id,
            newcomer.join.statement.id,
            self.client.now(),
        )
        await self.client.call(api.post_admission(admission.statement))
        return await self._status_after(member_text)

    async def vouch(self, member_text: str) -> dict[str, str]:
        return await self._verdict("vouch", member_text)

    async def block(self, member_text: str) -> dict[str, str]:
        return await self._verdict("block", member_text)

    async def _verdict(self, kind: Literal["vouch", "block"], member_text: str) -> dict[str, str]:
        genesis, _ = self.client.network()
        report = await self.evidence(member_text)
        self._check_newcomer(report)
        if report.admission is None:
            raise ClientError(
                "no_admission",
                "This newcomer has no admission certificate yet: their inviter must confirm "
                "their safety number and admit them first.",
            )
        if self.client.state.member_id not in report.cell.members:
            raise ClientError(
                "not_in_cell",
                "Only admitted members of the newcomer's cell can vouch or block: they are in "
                "another cell, or you are not admitted yet (`spokes status` shows which).",
            )
        verdict = make_verdict(
            kind,
            self.client.state.identity,
            genesis.network_id,
            report.admission,
            self.client.now(),
        )
        await self.client.call(api.post_verdict(verdict.statement))
        if kind == "block":
            blocked = {
                **self.client.state.blocked,
                report.admission.statement.id: verdict.statement.time,
            }
            self.client.save(replace(self.client.state, blocked=blocked))
        return await self._status_after(member_text)

    async def _status_after(self, member_text: str) -> dict[str, str]:
        report = await self.evidence(member_text)
        return {"member_id": member_id_text(report.member_id), "status": report.status}

    async def status(self, member_text: str | None = None) -> MemberStatusView:
        genesis, _ = self.client.network()
        me = self.client.state.member_id
        if member_text is None or parse_member(member_text) == me:
            evidence = api.parse_evidence(await self.client.call(api.member_evidence(me)))
            if evidence.cell_group is None:
                own = verify.own_pending(genesis, evidence, me)
                return MemberStatusView(
                    member_id=member_id_text(me),
                    status="pending",
                    cell_id=b32e(own.cell_id),
                    network_id=b32e(genesis.network_id),
                    admitted_at=None,
                    probation_ends_at=None,
                    vouches=None,
                    needed=None,
                    verified=True,
                    limited=True,
                    certified=own.admission is not None,
                    server_status=evidence.server_status,
                )
            if evidence.member_id.lower() != member_id_text(me):
                raise verify.fail("the server sent evidence about another member")
            report = verify.evaluate_member(genesis, evidence, self.client.now())
        else:
            report = await self.evidence(member_text)
        return MemberStatusView(
            member_id=member_id_text(report.member_id),
            status=report.status,
            cell_id=b32e(report.cell.group.group_id),
            network_id=b32e(genesis.network_id),
            admitted_at=report.admitted_at,
            probation_ends_at=report.probation_ends_at,
            vouches=report.vouches,
            needed=report.needed,
            verified=True,
        )
