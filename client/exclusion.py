"""Expelling a member, for one member's client.

The rule it keeps: an expulsion is opened, signed and carried out only
against the roster log this client verified itself (crypto/exclusion.py and
crypto/motion_rules.py decide who may sign and how many must; the subject
never counts). The member whose signature completes the quorum signs the
revocation at the head of the network's chain as this client verified it,
carrying the motion, the signatures of members on the roster and the proofs
that they are, inside the group's roster `remove` (reason `expelled`): the
server appends both in one transaction, ends the member's sessions and
closes their sockets. Every other group the member is in removes them
as soon as a member's client there sees the revocation (client/rosters.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from client import api, verify
from client.errors import ClientError, ServerError, rule_refusal
from client.history import carried_motion
from client.revocations import Revocations
from client.rosters import Rosters
from client.sdk import Client, parse_member
from client.seats import council_position, delegations
from crypto import roster
from crypto.chains import RevocationList, make_revocation, verify_revocation_list
from crypto.councils import COUNCIL
from crypto.delegations import entry_value
from crypto.encoding import Value, b32e
from crypto.errors import RuleViolation
from crypto.exclusion import (
    FREEZE_KINDS,
    expel_terms,
    expulsion_grounds,
    make_expel_motion,
)
from crypto.keys import member_id_text
from crypto.motions import Motion, make_motion, split_event_fields
from crypto.network import GROUP_ID_BYTES
from crypto.roster import RosterState
from crypto.rostertree import prove
from crypto.statements import Statement, get_bytes, pack

_REFUSALS = {
    "not_allowed": "You can't move or sign your own expulsion.",
    "not_in_group": "That member is not on the group's roster; `spokes members GROUP` lists them.",
    "stale_roster": "The roster changed since the motion was opened: open it again "
    "(`spokes expel MEMBER --reason …`).",
    "stale_motion": "This motion was already carried out.",
    "already_frozen": "That member is frozen already; `spokes status MEMBER` shows since when.",
    "not_frozen": "That member is not frozen.",
    "not_in_review": "That member is not under review.",
    "not_on_hold": "That member's admissions are not on hold.",
}


def refusal(exc: RuleViolation) -> ClientError:
    return rule_refusal(exc, _REFUSALS)


class Exclusion:
    """Expulsions, freezes, fresh vouches and restores in my groups."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.revocations = Revocations(client)

    async def expel(
        self, member_text: str, reason: str, group_text: str = "cell"
    ) -> dict[str, Any]:
        """Open an `expel` motion (signed by me) in my cell or a council we both sit in."""
        subject = parse_member(member_text)
        state = await self.rosters.my_group(group_text)
        if subject not in state.members:
            raise ClientError(
                "not_in_group",
                f"{member_id_text(subject)} is not on this group's roster; an expulsion is moved "
                "in the subject's own cell or a council you both sit in (`--group`).",
            )
        identity, network = self.client.state.identity, self.client.network_id()
        try:
            motion = make_expel_motion(identity, network, state, subject, reason, self.client.now())
        except RuleViolation as exc:
            raise refusal(exc) from None
        return await self._open(state, motion, subject, self.carry_out)

    async def move(self, member_text: str, kind: str) -> dict[str, Any]:
        """Open a motion about a cellmate, signed by me: `freeze`, `unfreeze`, `clear` (my
        fresh vouch for a member under review) or `restore` (a sponsor on hold); carried out
        at once if my signature is all the rules ask."""
        subject = parse_member(member_text)
        state = await self.rosters.my_group("cell")
        identity, network = self.client.state.identity, self.client.network_id()
        motion = make_motion(identity, network, state, kind, {"member": subject}, self.client.now())
        return await self._open(state, motion, subject, self.carry_out_about)

    async def _open(
        self,
        state: RosterState,
        motion: Motion,
        subject: bytes,
        carry_out: Callable[[RosterState, Motion, Sequence[Statement]], Awaitable[object]],
    ) -> dict[str, Any]:
        """Post a motion the rules let me open; carried out at once if my signature is
        all its quorum asks."""
        quorum = await self.rosters.open_motion(state, motion, refusal)
        result: dict[str, Any] = {
            "motion_id": b32e(motion.id),
            "group_id": b32e(state.group),
            "member_id": member_id_text(subject),
            "signatures": 1,
            "needed": quorum.needed,
        }
        if not quorum.reached(frozenset({self.client.me})):
            return {**result, "status": "open"}
        await carry_out(state, motion, [])
        return {**result, "status": "done"}

    async def carry_out(
        self, state: RosterState, motion: Motion, signatures: Sequence[Statement]
    ) -> dict[str, Any]:
        """Sign the revocation at the verified chain's head and post the `remove` that
        carries it.

        Signatures of members no longer on the roster are left out; if the
        roster changed since the motion was opened, the rule book refuses
        (`stale_roster`) and the motion must be opened again.
        """
        identity, network = self.client.state.identity, self.client.network_id()
        genesis, _ = self.client.network()
        subject = expel_terms(motion).member
        signed: list[tuple[RevocationList, Statement]] = []

        async def removal(current: RosterState) -> dict[str, Value]:
            listed = await self.revocations.fetch()
            if subject in listed.by_subject:
                raise ClientError(
                    "already_revoked", f"{member_id_text(subject)} is already revoked."
                )
            seq, prev = listed.next_position()
            mine = [s for s in signatures if s.author in current.members]
            grounds = expulsion_grounds(current, motion, mine)
            revocation = make_revocation(
                identity, network, subject, self.client.now(), seq=seq, prev=prev, grounds=grounds
            )
            signed.append((listed, revocation.statement))
            return {
                "member": subject,
                "reason": "expelled",
                "revocation": pack(revocation.statement),
            }

        await self._post(state, "remove", removal)
        listed, revocation = signed[-1]
        chain = [*(r.statement for r in listed.revocations), revocation]
        self.revocations.accept(verify_revocation_list(genesis, chain))
        self.client.save()
        return {"member_id": member_id_text(subject), "revocation_seq": len(chain) - 1}

    async def carry_out_about(
        self, state: RosterState, motion: Motion, signatures: Sequence[Statement]
    ) -> dict[str, Any]:
        """Post the event carrying a motion about one member (`freeze`, `unfreeze`, `clear`,
        `restore`) and its signatures."""
        subject = get_bytes(motion.terms, "member", 32)

        async def carried(current: RosterState) -> dict[str, Value]:
            mine = [s for s in signatures if s.author in current.members]
            fields: dict[str, Value] = split_event_fields(motion, mine)
            if motion.kind in FREEZE_KINDS:
                fields["member"] = subject
            return fields

        event = await self._post(state, motion.kind, carried)
        result: dict[str, Any] = {"member_id": member_id_text(subject)}
        if motion.kind in FREEZE_KINDS and state.kind != COUNCIL:
            seats = await self._to_councils(state.group, event, subject)
            if seats:
                result["councils"] = seats
        self.client.save()
        return result

    async def _to_councils(
        self, group: bytes, event: Statement, subject: bytes
    ) -> list[dict[str, str]]:
        """Carry my cell's freeze (or its lifting) of its spokesperson to each council where
        they hold the cell's seat, with each signer proven on the roster of the seat's
        election (crypto/exclusion.py `council_freeze`); the council's rule book judges."""
        record, _ = await self.rosters.sync_roster(group)
        found = delegations(record.events, self.client.rules())
        _, signers = carried_motion(event)
        results = []
        for seat in api.parse_seats(await self.client.call(api.group_seats(group))):
            if seat.holder is None or parse_member(seat.holder) != subject:
                continue
            council = verify.parse_id(seat.council_id, GROUP_ID_BYTES, "council id")
            index = found.index(seat.link_id)
            if index is None:
                results.append({"council": b32e(council), "status": "unknown_anchor"})
                continue
            members = found.links[index].members
            proofs: list[Value] = [
                entry_value(m, prove(members, m.member_id))
                for m in members
                if m.member_id in signers
            ]
            fields: dict[str, Value] = {"member": subject, "link": pack(event), "proofs": proofs}
            op = str(event.fields["op"])
            carried = roster.sign_event(
                self.client.state.identity,
                self.client.network_id(),
                council_position(council, seat),
                op,
                self.client.now(),
                fields,
            )
            try:
                await self.client.call(api.post_roster_event(council, carried))
                status = "posted"
            except ServerError as exc:
                status = f"refused: {exc.code}"
            results.append({"council": b32e(council), "status": status})
        return results

    async def _post(
        self,
        state: RosterState,
        op: str,
        fields_for: Callable[[RosterState], Awaitable[dict[str, Value]]],
    ) -> Statement:
        return await self.rosters.post_event(state, op, fields_for, refusal)

    async def standing(self, member: bytes) -> dict[str, Any] | None:
        """What exclusion says of `member`, from the verified chain and my cell's verified log:
        expelled, revoked_by_self, revoked (a steward's), frozen, suspended or under_review,
        with since when; None if nothing does."""
        listed = await self.revocations.fetch()
        revocation = listed.by_subject.get(member)
        if revocation is not None:
            kind = {"expelled": "expelled", "self": "revoked_by_self"}.get(
                revocation.grounds, "revoked"
            )
            return {"standing": kind, "since": revocation.statement.time}
        await self.rosters.sync_cell()  # a review or a suspension that is due is posted first
        _, cell = self.client.network()
        _, state = await self.rosters.sync_roster(cell)
        if member in state.frozen:
            return {"standing": "frozen", "since": state.frozen[member]}
        if member in state.review:
            since = state.review[member][0]
            if member in state.suspended:
                window = self.client.rules().policy.review_seconds
                return {"standing": "suspended", "since": since + window}
            return {"standing": "under_review", "since": since}
        return None
