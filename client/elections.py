"""Electing and recalling a group's spokesperson, for one member.

The rule it keeps: this client opens, signs and carries out an election or a
recall only against the roster log it verified itself (crypto/motion_rules.py
decides who may sign, how many must, and whether the motion could pass);
the signatures it carries are those of members on that roster, so a motion
never passes on the word of someone who left. The member whose signature
completes the quorum posts the `elect` or `recall` roster event, then
carries it to every council where the group holds a seat
(client/councils.py `follow_seats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client.councils import Councils
from client.errors import ClientError, rule_refusal
from client.rosters import Rosters
from client.sdk import Client
from crypto import motions
from crypto.elections import make_elect_motion, make_recall_motion
from crypto.encoding import Value, b32e
from crypto.errors import CryptoError, RuleViolation
from crypto.keys import parse_member_id
from crypto.motions import Motion
from crypto.roster import RosterState
from crypto.statements import Statement

# What a refusal from the rule book means to the person who asked.
_REFUSALS = {
    "has_spokesperson": "The group already has a spokesperson: recall them first "
    "(`spokes recall GROUP`), then elect another.",
    "not_spokesperson": "That member is not the group's spokesperson (`spokes cells` shows who is).",
    "no_spokesperson": "The group has no spokesperson to recall.",
    "in_probation": "A member in probation can't be elected yet; `spokes status ID` shows "
    "when it ends.",
    "not_in_group": "Only a member of the group can be elected; `spokes members GROUP` lists them.",
}


def refusal(exc: RuleViolation) -> ClientError:
    return rule_refusal(exc, _REFUSALS)


class Elections:
    """Elections and recalls in my groups."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)

    async def elect(self, group_text: str, member_text: str) -> dict[str, Any]:
        try:
            member = parse_member_id(member_text)
        except CryptoError:
            raise ClientError(
                "invalid_member_id", f"{member_text!r} is not a member id; see `spokes members`."
            ) from None
        state = await self.rosters.my_group(group_text)
        identity, network = self.client.state.identity, self.client.network_id()
        motion = make_elect_motion(identity, network, state, member, self.client.now())
        return await self._open(state, motion)

    async def recall(self, group_text: str) -> dict[str, Any]:
        state = await self.rosters.my_group(group_text)
        identity, network = self.client.state.identity, self.client.network_id()
        try:
            motion = make_recall_motion(identity, network, state, self.client.now())
        except RuleViolation as exc:
            raise refusal(exc) from None
        return await self._open(state, motion)

    async def _open(self, state: RosterState, motion: Motion) -> dict[str, Any]:
        quorum = await self.rosters.open_motion(state, motion, refusal)
        if not quorum.reached(frozenset({self.client.me})):
            return {"motion_id": b32e(motion.id), "status": "open"}
        seats = await self.carry_out(state, motion, [])  # a group of one (or two)
        return {"motion_id": b32e(motion.id), "status": "done", **seats_field(seats)}

    async def carry_out(
        self, state: RosterState, motion: Motion, signatures: Sequence[Statement]
    ) -> list[dict[str, str]]:
        """Post the `elect`/`recall` event with the signatures of current members (mine included),
        then carry it to the group's councils; what became of each seat (follow_seats).

        If the log moved on meanwhile, the roster is fetched again and the
        signatures of those no longer on it are left out; if that leaves the
        motion short of its quorum, it stays open.
        """

        async def carried(current: RosterState) -> dict[str, Value]:
            mine = [s for s in signatures if s.author in current.members]
            return motions.split_event_fields(motion, mine)

        await self.rosters.post_event(state, motion.kind, carried, refusal, tries=2)
        self.client.save()
        return await Councils(self.client).follow_seats(state.group)


def seats_field(seats: list[dict[str, str]]) -> dict[str, Any]:
    """The seat changes an election or recall brought about, where the group holds seats."""
    return {"seats": seats} if seats else {}
