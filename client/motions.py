"""Motions for one member: listing, signing and opening them, and carrying out a split.

The quorum is crypto.quorum's to decide; this module verifies each motion
against the roster log it replayed itself, signs, and, when its own
signature completes a split that moves it, posts the split with the new
cell's create event. A council's `link` motion is signed here too, but never
carried out by a signature: the linked group's spokesperson takes the seat
(`spokes council accept`, client/councils.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from client import api, verify
from client.elections import Elections, seats_field
from client.errors import ClientError, ServerError
from client.exclusion import Exclusion
from client.groups import GroupRecord, bundle_of, lying
from client.rosters import Rosters
from client.sdk import Client
from crypto import motion_rules, motions, quorum, roster
from crypto.councils import COUNCIL, link_terms
from crypto.encoding import b32e
from crypto.errors import CryptoError, RuleViolation
from crypto.exclusion import expel_terms, open_reason
from crypto.keys import member_id_text, parse_member_id
from crypto.motions import Motion
from crypto.network import GROUP_ID_BYTES
from crypto.quorum import check_split_sizes
from crypto.roster import RosterState
from crypto.statements import Statement, get_bytes


@dataclass(frozen=True)
class MotionView:
    motion_id: str
    kind: str
    group_id: str
    signatures: int
    needed: int
    moved: list[str]
    new_group: str  # a split's; "" for other kinds
    signed_by_me: bool
    member: str | None = None  # whom an election or a recall names
    links: str | None = None  # the group a council's link motion gives a seat
    reason: str | None = None  # an expulsion's reason, as sealed to me (never to its subject)


# Motions about one member whose event carries the motion and its signatures.
MEMBER_MOTIONS = ("freeze", "unfreeze", "clear", "restore")


class Motions:
    """The motions of my groups: listing, signing, opening, carrying out."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)

    async def _verified_motion(
        self,
        wire: api.MotionWire,
        synced: dict[bytes, tuple[GroupRecord, RosterState]] | None = None,
    ) -> tuple[Motion, list[Statement], RosterState, GroupRecord]:
        """The motion and its signatures, checked against its group's log (fetched once per
        group when `synced` keeps the logs fetched during one listing)."""
        network = self.client.network_id()
        group = verify.parse_id(wire.group_id, GROUP_ID_BYTES, "group id")
        if synced is not None and group in synced:
            record, state = synced[group]
        else:
            record, state = await self.rosters.sync_roster(group)
            if state.kind == COUNCIL:  # one of mine only while my seat in it verifies
                record, state = await self.rosters.sync_council(group)
            if synced is not None:
                synced[group] = (record, state)
        with verify.checking("motion"):
            motion = motions.parse_motion(verify.statement(wire.motion, "motion", network))
            signatures = [verify.statement(w, "motion-sign", network) for w in wire.signatures]
        if b32e(motion.id) != wire.motion_id.lower() or motion.group != group:
            raise lying("the server listed a motion under another id or group")
        mine = [
            s
            for s in signatures
            if s.fields.get("motion") == motion.id and s.author in state.members
        ]
        return motion, mine, state, record

    def _motion_view(
        self, motion: Motion, signatures: list[Statement], state: RosterState
    ) -> MotionView:
        with verify.checking("motion"):
            needed = motion_rules.quorum_for(state, motion, self.client.rules())
            signers = motion_rules.signed_by(motion, signatures, state)
            moved: frozenset[bytes] = frozenset()
            new_group, member, links, reason = b"", None, None, None
            if motion.kind == "split":
                moved, new_group = motions.split_terms(motion)
            elif motion.kind == "link":
                links = b32e(link_terms(motion))
            elif motion.kind in MEMBER_MOTIONS:
                member = member_id_text(get_bytes(motion.terms, "member", 32))
            elif motion.kind == "expel":
                member = member_id_text(expel_terms(motion).member)
                reason = open_reason(motion, self.client.me, self.client.state.kem)
            else:
                member = member_id_text(motions.election_terms(motion).member)
        return MotionView(
            motion_id=b32e(motion.id),
            kind=motion.kind,
            group_id=b32e(motion.group),
            signatures=needed.counted(signers),
            needed=needed.needed,
            moved=[member_id_text(m) for m in sorted(moved)],
            new_group=b32e(new_group) if new_group else "",
            signed_by_me=self.client.me in signers,
            member=member,
            links=links,
            reason=reason,
        )

    async def motions(self) -> list[MotionView]:
        views = []
        synced: dict[bytes, tuple[GroupRecord, RosterState]] = {}
        for wire in api.parse_motions(await self.client.call(api.open_motions())):
            motion, signatures, state, _ = await self._verified_motion(wire, synced)
            views.append(self._motion_view(motion, signatures, state))
        self.client.save()
        return views

    async def sign(self, motion_text: str) -> dict[str, Any]:
        wanted = motion_text.strip().lower()
        listed = [
            w
            for w in api.parse_motions(await self.client.call(api.open_motions()))
            if w.motion_id.lower() == wanted
        ]
        if not listed:
            raise ClientError(
                "not_found", "No open motion with that id in your groups; see `spokes motions`."
            )
        motion, signatures, state, record = await self._verified_motion(listed[0])
        view = self._motion_view(motion, signatures, state)
        if motion.kind == "split" and self.client.me not in quorum.required_signers(state, motion):
            # A signature the quorum does not count would read as consent it is not.
            raise ClientError(
                "not_a_signer",
                "You stay in this cell, and only the members who move sign a split (no one is "
                "moved without their own signature), so nothing was signed and there is "
                "nothing for you to do. It takes effect once every member who moves has signed "
                f"({view.signatures} of {view.needed} so far; `spokes motions` shows it).",
            )
        if (motion.kind == "expel" and self.client.me == expel_terms(motion).member) or (
            motion.kind in MEMBER_MOTIONS
            and self.client.me == get_bytes(motion.terms, "member", 32)
        ):
            raise ClientError(
                "not_allowed", "You can't sign a motion about yourself; nothing was signed."
            )
        if view.signed_by_me:
            raise ClientError(
                "already_signed",
                "You already signed this motion; `spokes motions` shows who else still has to.",
            )
        network = self.client.network_id()
        signature = motions.sign_motion(
            self.client.state.identity, network, motion, self.client.now()
        )
        await self.client.call(api.sign_motion(motion.id, signature))
        signatures.append(signature)
        if motion.kind == "link":
            # Never carried out here: the linked group's spokesperson accepts the seat.
            signed = motion_rules.signed_by(motion, signatures, state)
            reached = motion_rules.quorum_for(state, motion, self.client.rules()).reached(signed)
            return {
                "motion_id": view.motion_id,
                "status": "open",
                "kind": "link",
                "waiting_for": "acceptance" if reached else "signatures",
            }
        if motion.kind != "split":
            signed = motion_rules.signed_by(motion, signatures, state)
            if not motion_rules.quorum_for(state, motion, self.client.rules()).reached(signed):
                return {"motion_id": view.motion_id, "status": "open", "kind": motion.kind}
            if motion.kind in MEMBER_MOTIONS:
                done = await Exclusion(self.client).carry_out_about(state, motion, signatures)
                return {"motion_id": view.motion_id, "status": "done", "kind": motion.kind, **done}
            if motion.kind == "expel":
                done = await Exclusion(self.client).carry_out(state, motion, signatures)
                return {"motion_id": view.motion_id, "status": "done", "kind": "expel", **done}
            seats = await Elections(self.client).carry_out(state, motion, signatures)
            return {
                "motion_id": view.motion_id,
                "status": "done",
                "kind": motion.kind,
                **seats_field(seats),
            }
        moved, new_group = motions.split_terms(motion)
        if self.client.me in moved:
            splits = {**self.client.state.splits, new_group: motion.group}
            self.client.save(replace(self.client.state, splits=splits))
        needed = quorum.required_signers(state, motion)
        if (
            not needed <= quorum.valid_signers(motion, signatures, state)
            or self.client.me not in moved
        ):
            return {"motion_id": view.motion_id, "status": "open", "kind": "split"}
        await self._carry_out_split(record, state, motion, signatures)
        return {"motion_id": view.motion_id, "status": "done", "kind": "split"}

    async def _carry_out_split(
        self,
        record: GroupRecord,
        state: RosterState,
        motion: Motion,
        signatures: list[Statement],
    ) -> None:
        """Post the split with the new cell's create event (I am one of the moved)."""
        identity, network = self.client.state.identity, self.client.network_id()
        moved, new_group = motions.split_terms(motion)
        for attempt in range(2):
            now = self.client.now()
            event = roster.sign_event(
                identity,
                network,
                state,
                "split",
                now,
                motions.split_event_fields(motion, signatures),
            )
            bundles = [bundle_of(record.events, m, network) for m in sorted(moved)]
            create = roster.make_group(
                identity,
                network,
                now,
                bundles,
                kind=state.kind,
                level=state.level,
                parent=state.parent,
                origin=event.id,
                lines=state.lines,
                since=state.since,
                group=new_group,
                rules=self.client.rules(),
            )
            try:
                await self.client.call(
                    api.post_roster_event(state.group, event, create=create.statement)
                )
            except ServerError as exc:
                if exc.code != "stale_head" or attempt == 1:
                    raise
                record, state = await self.rosters.sync_roster(state.group)
                continue
            break
        if state.group == self.client.state.cell_id:
            self.client.save(replace(self.client.state, cell_id=new_group))
        await self.rosters.sync_roster(new_group)
        self.client.save()

    async def split(self, group_text: str, member_texts: list[str]) -> dict[str, str]:
        group = await self.rosters.group(group_text)
        self.rosters.writable(group)
        record, state = await self.rosters.sync_roster(group)
        moved = []
        for text in member_texts:
            try:
                moved.append(parse_member_id(text))
            except CryptoError:
                raise ClientError(
                    "invalid_member_id", f"{text!r} is not a member id; see `spokes members`."
                ) from None
        identity, network = self.client.state.identity, self.client.network_id()
        motion = motions.make_split_motion(identity, network, state, moved, self.client.now())
        try:
            needed = quorum.required_signers(state, motion)
        except RuleViolation as exc:
            raise ClientError(
                "invalid_motion", f"{exc}: name some, but not all, members of the group."
            ) from None
        try:
            check_split_sizes(self.client.rules(), len(state.members) - len(needed), len(needed))
        except RuleViolation as exc:
            raise ClientError(
                "below_minimum",
                f"{exc}. Nothing was signed; a smaller cell waits until it has grown.",
            ) from None
        opened = api.parse_motion_id(
            await self.client.call(api.open_motion(group, motion.statement))
        )
        _, new_group = motions.split_terms(motion)
        if self.client.me in moved:
            splits = {**self.client.state.splits, new_group: group}
            self.client.save(replace(self.client.state, splits=splits))
        if needed <= {self.client.me}:
            await self._carry_out_split(record, state, motion, [])
        return {"motion_id": opened, "group_id": b32e(new_group)}
