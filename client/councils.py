"""Councils for one member: founding one, linking a group, taking a seat, following seats.

The rule it keeps: every seat this client asks a council to give rests on an
election in a roster log it verified itself (client/seats.py builds the
evidence from it, crypto/ checks it before anything is posted), every
council it acts in is one whose log it replayed with the rule book, and what
the server says of seats (GET /v1/groups/{g}/seats) is only a hint of where
to post: the council's rule book, run by the server and by every council
member's client, decides. Who may post a seat change is the rule book's
too: a council member, or the member the change seats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from client import api, verify
from client.errors import ClientError, ServerError
from client.groups import GroupRecord, bundle_of, lying
from client.messages import MAX_GROUP_NAME, Messages, current_name, group_name_of
from client.rosters import Rosters
from client.sdk import Client
from client.seats import (
    Delegations,
    SeatChange,
    council_position,
    delegations,
    first_seat,
    my_delegation,
    seat_changes,
)
from crypto import motion_rules, motions, roster
from crypto.councils import (
    COUNCIL,
    link_fields,
    link_terms,
    make_acceptance,
    make_council,
    make_link_motion,
    seat_fields,
)
from crypto.encoding import b32d, b32e
from crypto.errors import CryptoError, RuleViolation
from crypto.keys import member_id_text, parse_member_id
from crypto.motions import Motion
from crypto.network import GROUP_ID_BYTES
from crypto.roster import RosterState
from crypto.statements import Statement


def refused(exc: RuleViolation) -> ClientError:
    """The rule book refused what this client was about to post: nothing was sent."""
    return ClientError(exc.code, f"{exc}. Nothing was sent.")


@dataclass(frozen=True)
class CouncilView:
    """A council I sit in, as its verified log shows it (`spokes tree`)."""

    group: str
    level: int
    seats: int
    spokesperson: str | None
    name: str | None = None  # as a member named it (`council create --name`), if I can read it


class Councils:
    """The councils I found, link groups to, sit in, and carry my groups' seat changes to."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)

    # Founding, linking, accepting.

    async def create(self, group_text: str, name: str | None = None) -> dict[str, str]:
        """Found a council (one level up) with my seat for a group I am spokesperson of.

        A name is sealed to the council as a message (client/messages.py keeps
        it sealed under each new key period), never shown to the server.
        """
        if name is not None and group_name_of(name) is None:
            raise ClientError(
                "invalid_name",
                f"A council's name is 1 to {MAX_GROUP_NAME} characters. Nothing was created.",
            )
        group = await self.rosters.group(group_text)
        self.rosters.writable(group)
        record, state = await self.rosters.sync_roster(group)
        rules, network, me = self.client.rules(), self.client.network_id(), self.client.me
        link = my_delegation(delegations(record.events, rules), state, me)
        bundle = bundle_of(record.events, me, network)
        try:
            event, council = make_council(
                self.client.state.identity,
                network,
                self.client.now(),
                state.level + 1,
                bundle,
                group,
                first_seat(link, bundle),
                rules=rules,
            )
        except RuleViolation as exc:
            raise refused(exc) from None
        created = api.parse_group_id(await self.client.call(api.create_council(event)))
        if created.lower() != b32e(council.group):
            raise ClientError("bad_response", "The server answered with another council id.")
        await self.rosters.sync_council(council.group)
        self.client.save()
        if name is not None:
            await Messages(self.client).send(
                b32e(council.group), f"The council's name: {name.strip()}", {"group_name": name}
            )
        return {"group_id": b32e(council.group)}

    async def link(self, council_text: str, group_text: str) -> dict[str, str]:
        """Open a council motion to give `group` a seat; its spokesperson then accepts."""
        council = await self.rosters.group(council_text)
        _, state = await self.rosters.sync_roster(council)
        if state.kind != COUNCIL:
            raise ClientError(
                "not_a_council", "Only a council links groups; `spokes tree` shows yours."
            )
        group = self.rosters.group_id(group_text)
        identity, network = self.client.state.identity, self.client.network_id()
        motion = make_link_motion(identity, network, state, group, self.client.now())
        try:
            quorum = motion_rules.check_opening(
                state, motion, self.client.rules(), motion.statement.time
            )
        except RuleViolation as exc:
            raise ClientError(
                exc.code, f"{exc}: that group already has a seat here. Nothing was signed."
            ) from None
        opened = api.parse_motion_id(
            await self.client.call(api.open_motion(council, motion.statement))
        )
        if opened.lower() != b32e(motion.id):
            raise ClientError("bad_response", "The server answered with another motion id.")
        reached = quorum.reached(frozenset({self.client.me}))
        return {
            "motion_id": b32e(motion.id),
            "status": "open",
            "waiting_for": "acceptance" if reached else "signatures",
        }

    async def accept(self, council_text: str) -> dict[str, str]:
        """Take the seat a council's motion offers the group I am spokesperson of."""
        council = self.rosters.group_id(council_text)
        await self.rosters.sync_cell()
        rules, network, me = self.client.rules(), self.client.network_id(), self.client.me
        for attempt in range(2):
            try:
                invitation = api.parse_invitation(
                    await self.client.call(api.council_invitation(council))
                )
            except ServerError as exc:
                if exc.code != "not_found":
                    raise
                raise ClientError(
                    "no_invitation",
                    f"Council {b32e(council)} has no open motion to link a group you are "
                    "spokesperson of: a member of it opens one with `spokes council link "
                    "COUNCIL GROUP`. Nothing was signed.",
                ) from None
            state, motion, signatures = self._check_invitation(council, invitation)
            group = link_terms(motion)
            record, below = await self._my_group(group)
            if state.level != below.level + 1:
                raise ClientError(
                    "invalid_delegation",
                    f"A level-{state.level} council seats groups of level {state.level - 1}; "
                    f"yours is level {below.level}. Nothing was signed.",
                )
            link = my_delegation(delegations(record.events, rules), below, me)
            bundle = bundle_of(record.events, me, network)
            identity, now = self.client.state.identity, self.client.now()
            acceptance = make_acceptance(identity, network, council, group, now)
            fields = link_fields(motion, signatures, acceptance, first_seat(link, bundle))
            event = roster.sign_event(identity, network, state, "link", now, fields)
            try:
                roster.apply(state, event, rules=rules)
            except RuleViolation as exc:
                raise refused(exc) from None
            try:
                await self.client.call(api.post_roster_event(council, event))
            except ServerError as exc:
                if exc.code != "stale_head" or attempt == 1:
                    raise
                continue  # the council's log moved on: its invitation again
            break
        await self.rosters.sync_council(council)
        self.client.save()
        return {"group_id": b32e(council), "linked": b32e(group), "status": "done"}

    def _check_invitation(
        self, council: bytes, invitation: api.InvitationWire
    ) -> tuple[RosterState, Motion, list[Statement]]:
        """The council's log replayed, its motion to link my group, and the signatures of
        its members that carry it: the council's quorum, or nothing is signed."""
        rules, network = self.client.rules(), self.client.network_id()
        events = [verify.statement(w, "roster", network) for w in invitation.roster]
        try:
            state = roster.verify_log(events, rules=rules)
        except CryptoError as exc:
            raise lying(f"the council's roster log does not verify ({exc})") from None
        if state.group != council or state.kind != COUNCIL:
            raise lying("the server sent another group's log as the council's")
        with verify.checking("motion"):
            motion = motions.parse_motion(verify.statement(invitation.motion, "motion", network))
            signed = [verify.statement(w, "motion-sign", network) for w in invitation.signatures]
            group = link_terms(motion)
        if motion.group != council or b32e(group) != invitation.group_id.lower():
            raise lying("the server's invitation names another council or group than its motion")
        counted: dict[bytes, Statement] = {}
        for signature in signed:
            if (
                signature.fields.get("motion") == motion.id
                and signature.author in state.members
                and signature.author != motion.statement.author
            ):
                counted.setdefault(signature.author, signature)
        quorum = motion_rules.quorum_for(state, motion, rules)
        signers = motion_rules.signed_by(motion, list(counted.values()), state)
        if not quorum.reached(signers):
            raise ClientError(
                "quorum_not_reached",
                f"The council's motion to link your group has {quorum.counted(signers)} of the "
                f"{quorum.needed} signatures of its members it needs; accept once they have "
                "signed (`spokes sign MOTION` on their side). Nothing was signed.",
            )
        return state, motion, list(counted.values())

    async def _my_group(self, group: bytes) -> tuple[GroupRecord, RosterState]:
        """A group of mine by its id: my cell, or a council whose seat of mine verifies."""
        _, cell_id = self.client.network()
        if group == cell_id:
            return await self.rosters.sync_roster(group)
        try:
            return await self.rosters.sync_council(group)
        except ClientError as exc:
            if exc.code not in ("not_found", "not_seated"):
                raise
        raise ClientError(
            "not_spokesperson",
            f"The council moved to link {b32e(group)}, which is not a group of yours. "
            "Nothing was signed.",
        )

    # Seat changes.

    async def follow_seats(self, group: bytes) -> list[dict[str, str]]:
        """Carry `group`'s elections and recalls to every council where it holds a seat.

        Run by the client that carried out an election or recall, and by a
        spokesperson's upkeep. A council member signs on the council's own
        log and checks the event with the rule book first; anyone else signs
        on the position the seats answer gives, and the council's rule book
        judges it. A server that takes a seat change only from a council
        member or the member it seats leaves it to them (`left_to_holder`).
        """
        record, _ = await self.rosters.sync_roster(group)
        found = delegations(record.events, self.client.rules())
        seats = api.parse_seats(await self.client.call(api.group_seats(group)))
        results = []
        for seat in seats:
            council = verify.parse_id(seat.council_id, GROUP_ID_BYTES, "council id")
            status = await self._follow(council, seat, group, record, found)
            results.append({"council": b32e(council), "status": status})
        if results:
            self.client.save()
        return results

    async def _follow(
        self,
        council: bytes,
        seat: api.SeatWire,
        group: bytes,
        record: GroupRecord,
        found: Delegations,
    ) -> str:
        for attempt in range(2):
            if _member(seat.holder) == self.client.me:
                # A member of the council: where its seat stands, from its own log.
                _, state = await self.rosters.sync_roster(council)
                anchor = state.seats.get(group)
                if anchor is None:
                    return "refused: not_in_group"
                seat = replace(
                    seat, link_id=anchor.link, council_seq=state.seq, council_head=state.head
                )
            changes = seat_changes(found, seat.link_id)
            if changes is None:
                # The seats answer is a hint; it names an election my log lacks.
                return "unknown_anchor"
            if not changes:
                return "up_to_date"
            try:
                return await self._post_changes(council, seat, group, record, changes)
            except ServerError as exc:
                if exc.code not in ("stale_head", "stale_motion") or attempt == 1:
                    return exc.code if exc.code == "stale_motion" else f"refused: {exc.code}"
            # Someone else may have posted it meanwhile: ask where the seat stands now.
            fresh = [
                s
                for s in api.parse_seats(await self.client.call(api.group_seats(group)))
                if s.council_id.lower() == b32e(council)
            ]
            if not fresh:
                return "up_to_date"
            seat = fresh[0]
        raise AssertionError("unreachable")

    async def _post_changes(
        self,
        council: bytes,
        seat: api.SeatWire,
        group: bytes,
        record: GroupRecord,
        changes: Sequence[SeatChange],
    ) -> str:
        me, network = self.client.me, self.client.network_id()
        holder = _member(seat.holder)
        position = council_position(council, seat)
        for change in changes:
            bundle = (
                None if change.holder is None else bundle_of(record.events, change.holder, network)
            )
            fields = seat_fields(group, list(change.links), bundle)
            state = position
            if holder == me:  # a member: sign on the log itself, and check before posting
                _, state = await self.rosters.sync_roster(council)
            event = roster.sign_event(
                self.client.state.identity, network, state, "seat", self.client.now(), fields
            )
            if holder == me:
                try:
                    roster.apply(state, event, rules=self.client.rules())
                except RuleViolation as exc:
                    return "stale_motion" if exc.code == "stale_motion" else f"refused: {exc.code}"
            try:
                await self.client.call(api.post_roster_event(council, event))
            except ServerError as exc:
                if exc.code != "not_in_group":
                    raise
                # This server takes a seat change only from a council member or the
                # member it seats: theirs to post (`upkeep`, at their next `spokes tree`).
                return "left_to_holder"
            holder = change.holder
            position = _advanced(position, event)
        try:
            await self.rosters.sync_council(council)
        except ClientError as exc:
            if exc.code not in ("not_seated", "not_found"):
                raise
        return "posted"

    async def upkeep(self) -> list[dict[str, str]]:
        """A spokesperson's duty: the seats of the groups I speak for follow their elections.

        For my cell and the councils I sit in, where I am spokesperson (or was
        just recalled, and still hold the seat the recall empties).
        """
        results = []
        rules = self.client.rules()
        for group in self.rosters.verified_groups():
            record = self.client.state.record(group)
            state = roster.verify_log(record.events, rules=rules)
            if state.last_link is None:
                continue
            last = delegations(record.events, rules).links[-1]
            if state.spokesperson == self.client.me or last.names == self.client.me:
                results += await self.follow_seats(group)
        return results

    # Where am I.

    async def tree(self) -> dict[str, Any]:
        """My cell and its spokesperson, and each council I sit in (`spokes tree`)."""
        views = await self.rosters.cells()
        cell = next((v for v in views if v.current_cell), None)
        if cell is None:
            raise ClientError(
                "not_admitted",
                "You are on no cell's signed roster yet; `spokes status` shows where you stand.",
            )
        messages = Messages(self.client)
        councils = []
        for view in sorted(views, key=lambda v: (v.level, v.group_id)):
            if view.kind != COUNCIL:
                continue
            record, _ = await messages.catch_up(b32d(view.group_id))
            state = roster.verify_log(record.events, rules=self.client.rules())
            named = current_name(record.history, {member_id_text(m) for m in state.members})
            name = None if named is None else named.group_name
            councils.append(
                CouncilView(view.group_id, view.level, view.seats, view.spokesperson, name)
            )
        return {
            "cell": cell.group_id,
            "spokesperson": cell.spokesperson,
            "councils": [vars(c) for c in councils],
        }


def _member(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return parse_member_id(text)
    except CryptoError:
        raise lying("the server's seats answer names a malformed member id") from None


def _advanced(position: RosterState, event: Statement) -> RosterState:
    return RosterState(
        position.group, COUNCIL, 0, None, position.seq + 1, event.id, {}, 0, None, None
    )
