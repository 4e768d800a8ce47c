"""Roster logs for one member: fetching them, following my cell, and its upkeep.

The rule it keeps: every group fact comes from a roster log this client
has replayed itself (client/groups.py decides; this module fetches and
posts), and the client does its share of the cell's upkeep without being
asked (DESIGN §7): the first cell member whose client notices that a
newcomer's admission completed adds them to the roster, a revoked member
is taken off it, and a move to another cell is believed only through a
verified split of my own cell. The cell such a split moved me out of is
kept, read-only, its log cut at the split: what I could read there before
the split I still can, and nothing after it (PROTOCOL §11, "History after a
split"). A council is one of my groups only once its log verifies and the
seat it gives me rests on an election in my own verified group's log
(`sync_council`, PROTOCOL §15 "A council for its members").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from client import api, verify
from client.errors import ClientError, ServerError, VerificationFailed
from client.groups import GroupRecord, admission_ids, extend_log, lying
from client.revocations import Revocations
from client.sdk import Client
from client.seats import council_level, council_position, delegations
from client.vetting import Vetting
from crypto import motion_rules, roster
from crypto.chains import Revocation
from crypto.councils import COUNCIL
from crypto.encoding import Value, b32d, b32e
from crypto.errors import RuleViolation
from crypto.keys import member_id_text, roster_fingerprint
from crypto.motions import Motion
from crypto.network import GROUP_ID_BYTES
from crypto.review import direct_issuer, reviewed_by
from crypto.roster import GroupCreation, RosterState
from crypto.splits import find_split_creation
from crypto.statements import Statement, get_bytes, pack

CELL_WORD = "cell"
# How often a follower (the relay daemon) looks at its cell in full: its
# admissions and the network's revocations, which no roster event of the
# cell announces until a cellmate's client carries them out. It does so when
# idle every CELL_RECHECK_S (client/daemon.py), and in any case before it
# acts once CELL_RECHECK_MAX_S passed; a roster event of the cell, at once.
# (Every 2 s, a hundred daemons' looks kept the server busy at 1,000 members.)
CELL_RECHECK_S = 30.0
CELL_RECHECK_MAX_S = 60.0


@dataclass(frozen=True)
class GroupView:
    group_id: str
    kind: str
    level: int
    members: int
    epoch: int
    needs_rekey: bool
    current_cell: bool
    unread_events: int
    # The spokesperson a verified `elect` event made (None: none elected).
    spokesperson: str | None
    # What members compare when they meet (crypto.keys.roster_fingerprint): the
    # same number is the same roster log; another at the same seq is a fork.
    roster_seq: int
    fingerprint: str
    # A council's seats (the groups it links); 0 for a cell.
    seats: int = 0


@dataclass(frozen=True)
class MyCell:
    """My own evidence: my cell as the server lists it (chains verified), the
    verified revocations, and the roster logs of cells I was moved out of."""

    cell: verify.VerifiedCell
    revocations: dict[bytes, Revocation]
    logs: dict[bytes, list[Statement]]


class Rosters:
    """The roster logs of my groups, and my cell's upkeep."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.vetting = Vetting(client)
        self.revocations = Revocations(client)

    def verified(self, group: bytes) -> bool:
        """Did this process verify my membership of `group` (now or before a split)?"""
        return group in self.client.verified_groups

    def verified_groups(self) -> list[bytes]:
        """The groups I may act in: my cell, once sync_cell verified how it was made, and
        the councils whose seat of mine this process verified (sync_council), lowest first."""
        _, cell_id = self.client.network()
        cells = [cell_id] if cell_id in self.client.verified_groups else []
        return cells + self.councils()

    def councils(self) -> list[bytes]:
        """The councils this process verified I sit in, by level."""
        found = []
        for group in self.client.verified_groups:
            level = council_level(self.client.state.groups.get(group))
            if level is not None:
                found.append((level, group))
        return [group for _, group in sorted(found)]

    def left_cells(self) -> list[GroupRecord]:
        """The cells verified splits moved me out of, kept read-only up to the split."""
        return [r for r in self.client.state.groups.values() if r.left_at is not None]

    def writable(self, group: bytes) -> None:
        """Refuse to act in a cell a split moved me out of: it is only read."""
        if self.client.state.record(group).left_at is not None:
            raise ClientError(
                "read_only",
                f"A split moved you out of {b32e(group)}: you can read its messages up to the "
                f"split (`spokes read {b32e(group)}`), but not send or act there. Your cell "
                "now is `cell`.",
            )

    def resolve(self, text: str) -> bytes:
        """A group id in b32, or the word `cell` for my current cell.

        A cell a verified split moved me out of resolves too, for reading:
        `writable` refuses anything more there. So does a council this
        keystore holds the log of; `group` verifies my seat in it first.
        """
        raw = self.group_id(text)
        _, cell_id = self.client.network()
        known = self.client.state.groups.get(raw)
        if (
            raw != cell_id
            and (known is None or known.left_at is None)
            and council_level(known) is None
        ):
            raise ClientError(
                "not_found",
                f"No group {b32e(raw)} that you belong to. `spokes cells` lists yours.",
            )
        return raw

    def group_id(self, text: str) -> bytes:
        """The id `text` names (b32, or `cell` for my current cell), whether mine or not."""
        if text.strip().lower() == CELL_WORD:
            _, cell_id = self.client.network()
            return cell_id
        try:
            raw = b32d(text.strip().lower())
        except ValueError:
            raw = b""
        if len(raw) != GROUP_ID_BYTES:
            raise ClientError(
                "invalid_group",
                f"{text!r} is not a group id; copy one from `spokes cells`, or say `cell`.",
            )
        return raw

    async def group(self, text: str) -> bytes:
        """Follow my cell first (it may have split), then resolve `text` as `resolve` does;
        any other group must be a council whose seat of mine verifies (sync_council)."""
        await self.sync_cell()
        raw = self.group_id(text)
        _, cell_id = self.client.network()
        known = self.client.state.groups.get(raw)
        if raw != cell_id and (known is None or known.left_at is None):
            await self.sync_council(raw)
        return self.resolve(text)

    async def sync_council(
        self, council: bytes, level: int | None = None
    ) -> tuple[GroupRecord, RosterState]:
        """A council's log, believed one of my groups only if my seat in it verifies.

        The log must verify with the rule book (as any group's), and the seat
        it gives me must rest on a link that is in my own verified log of the
        group I hold it for: my cell for a level-1 council, a council I sit in
        one level down for a higher one (checked the same way, so `level`
        falls by one at each step and the walk ends at my cell). A seat on an
        election my group never recorded is the lying alarm; no seat at all
        (the group recalled me, or the server answers with another group) is
        `not_seated`/`not_found`, and the council is no longer one of mine.
        """
        known = council in self.client.state.groups
        try:
            record, state = await self.sync_roster(council)
            if state.kind != COUNCIL or (level is not None and state.level != level):
                raise ClientError(
                    "not_found",
                    f"No group {b32e(council)} that you belong to. `spokes cells` lists yours.",
                )
            await self._check_seat(state)
            for member_id in [m for m in state.members if m in self.client.revoked]:
                state = await self._remove_revoked(state, self.client.revoked[member_id])
                record = self.client.state.record(council)
        except ClientError:
            self.client.verified_groups.discard(council)
            if not known:
                self.client.state.groups.pop(council, None)  # keep nothing of a stranger's group
            raise
        self.client.verified_groups.add(council)
        return record, state

    async def _check_seat(self, state: RosterState) -> None:
        me = self.client.me
        seat = next((a for a in state.seats.values() if a.holder == me), None)
        if seat is None:
            raise ClientError(
                "not_seated",
                f"You hold no seat in council {b32e(state.group)} now (your group recalled you, "
                "or its seat went to the next spokesperson); what you read there before stays "
                "kept. `spokes tree` shows where you sit.",
            )
        below = await self._seat_group(seat.group, state.level - 1)
        if below is None:
            raise ClientError(
                "not_seated",
                f"Council {b32e(state.group)} seats you for a group you are not in; "
                "`spokes tree` shows where you sit.",
            )
        rules = self.client.rules()
        if seat.link not in delegations(below.events, rules).link_ids:
            # My log of that group may lag the council's: fetch it once more.
            below, _ = await self.sync_roster(seat.group)
            if seat.link not in delegations(below.events, rules).link_ids:
                raise lying(
                    f"council {b32e(state.group)} seats you on an election that your own "
                    "group's signed log does not hold"
                )

    async def _seat_group(self, group: bytes, level: int) -> GroupRecord | None:
        """My verified record of the group a council seats me for, at `level`; None if it
        is not a group of mine."""
        _, cell_id = self.client.network()
        if level == 0:
            if group != cell_id:
                return None
            if cell_id not in self.client.verified_groups:
                await self.sync_cell()
            return self.client.state.record(group) if self.verified(group) else None
        if level < 0 or group == cell_id:
            return None
        try:
            record, _ = await self.sync_council(group, level)
        except VerificationFailed:
            raise
        except ClientError as exc:
            if exc.code == "equivocation" or isinstance(exc, ServerError):
                raise
            return None
        return record

    async def sync_groups(self) -> list[bytes]:
        """My cell (sync_cell) and every council the server lists me in whose seat of mine
        verifies; one I hold no seat in is left out here (`spokes cells` raises the alarm
        on it), one whose log does not verify raises the alarm at once."""
        await self.sync_cell()
        _, cell_id = self.client.network()
        for summary in api.parse_groups(await self.client.call(api.my_groups())):
            group = verify.parse_id(summary.group_id, GROUP_ID_BYTES, "group id")
            if group == cell_id or summary.kind != COUNCIL:
                continue
            try:
                await self.sync_council(group)
            except VerificationFailed:
                raise
            except ClientError as exc:
                if exc.code == "equivocation" or isinstance(exc, ServerError):
                    raise
        return self.verified_groups()

    async def listed_council(self, group: bytes) -> tuple[GroupRecord, RosterState]:
        """A group the server lists me in besides my cell: believed only as a council whose
        seat of mine verifies; anything else is the lying alarm."""
        try:
            return await self.sync_council(group)
        except VerificationFailed:
            raise
        except ClientError as exc:
            if exc.code == "equivocation" or isinstance(exc, ServerError):
                raise
            raise lying(
                f"the server lists you in group {b32e(group)}, which no verified event puts you in"
            ) from None

    async def sync_roster(self, group: bytes) -> tuple[GroupRecord, RosterState]:
        """Fetch the group's log and accept it only if it extends what was verified.

        A follower (`Client.following`) reuses the state it verified while the
        log it holds still ends where that state does.
        """
        following = self.client.following
        if following is not None:
            kept = following.get(group)
            record = self.client.state.groups.get(group)
            if kept is not None and record is not None and record.events:
                if record.events[-1].id == kept.head:
                    return record, kept
        try:
            data = await self.client.call(api.group_roster(group))
        except ServerError as exc:
            if exc.code == "not_found" and group == self.client.state.cell_id:
                raise ClientError(
                    "not_admitted",
                    "You are not on your cell's signed roster yet: once your vetting has "
                    "completed, a cellmate's client adds you the next time they run a command. "
                    "Try again later; `spokes status` shows where you stand.",
                ) from None
            if exc.code == "not_found":
                raise ClientError(
                    "not_found",
                    f"No group {b32e(group)} that you belong to. `spokes cells` lists yours.",
                ) from None
            raise
        network = self.client.network_id()
        events = [verify.statement(w, "roster", network) for w in api.parse_roster(data)]
        record = self.client.state.record(group)
        state = extend_log(record.events, events, rules=self.client.rules())
        if state.group != group:
            raise lying("the server answered with the roster log of another group")
        if record.left_at is not None and len(events) > record.left_at + 1:
            raise lying(
                f"the server sent the roster log of {b32e(group)}, a cell a split moved you "
                "out of, past that split: what it did after you left is not yours to see"
            )
        # An add's vetting window is judged by the event's signed time; one
        # from the future would let a member add a newcomer before it closed.
        late = self.client.now() + roster.MAX_FUTURE_SECONDS
        fresh = events[len(record.events) :]
        if any(event.time > late for event in fresh):
            raise lying("the group's roster log holds an event signed in the future")
        self._check_my_blocks(fresh)
        record.events = list(events)
        if following is not None and group in self.client.followed:
            following[group] = state
        return record, state

    def _check_my_blocks(self, events: list[Statement]) -> None:
        """An add can't show that nobody blocked; the blocker's own client can.

        A newcomer added by an event signed after my block on their admission
        was added over it: the server kept my block from the cell.
        """
        blocked = self.client.state.blocked
        for event in events:
            certificate = roster.carried_certificate(event)
            if certificate is None:
                continue
            at = blocked.get(certificate.id)
            if at is not None and at <= event.time:
                raise lying(
                    "the roster adds a newcomer you blocked before they were added: your block "
                    "was kept from the cell"
                )

    async def sync_cell(self) -> None:
        """Follow my cell (across a split) and add members whose vetting completed.

        A follower does it in full once CELL_RECHECK_MAX_S passed since the
        last time (or sooner, `recheck_cell`), and at once after its feed
        brought a roster event of the cell (which drops the kept state): in
        between its cell's log is the one its feed verified.
        """
        following = self.client.following
        if following is not None:
            cell = self.client.state.cell_id
            recent = time.monotonic() - self.client.cell_checked_at < CELL_RECHECK_MAX_S
            if recent and cell is not None and cell in following:
                return
        await self._sync_cell()
        if following is not None:
            self.client.cell_checked_at = time.monotonic()

    async def recheck_cell(self) -> None:
        """A follower's full look at its cell now (sync_cell), whatever it keeps."""
        self.client.cell_checked_at = float("-inf")
        await self.sync_cell()

    async def _sync_cell(self) -> None:
        genesis, cell_id = self.client.network()
        mine = await self._my_cell_evidence()
        cell, revocations = mine.cell, mine.revocations
        server_cell = cell.group.group_id
        if server_cell != cell_id:
            await self._follow_split(server_cell, mine.logs)
            cell_id = server_cell
        try:
            record, state = await self.sync_roster(cell_id)
        except ClientError as exc:
            if exc.code == "not_admitted":
                return  # not on the roster yet: someone else's client adds me
            raise
        self._check_origin(record.events[0], mine.logs)
        # Councils come with their own proof of membership (sync_council).
        self.client.verified_groups.add(cell_id)
        if self.client.me not in state.members:
            return
        for member_id in [m for m in state.members if m in revocations]:
            state = await self._remove_revoked(state, revocations[member_id])
            record = self.client.state.record(cell_id)
        window = self.client.rules().policy.freeze_seconds
        for member_id in [m for m, t in state.frozen.items() if self.client.now() >= t + window]:
            state = await self._duty(state, "unfreeze", {"member": member_id})
            record = self.client.state.record(cell_id)
        state = await self._review_duties(state, revocations)
        record = self.client.state.record(cell_id)
        if state.spokesperson in state.review:
            await self._seat_under_review(state, revocations, cell)
        self._check_chains(record, state, cell)
        for member in cell.members:
            if member not in state.members:
                state = await self._add_member(record, state, member)
        self.client.save()

    async def _follow_split(self, new_cell: bytes, logs: dict[bytes, list[Statement]]) -> None:
        """The server says I am in another cell: believe it only through a verified split.

        The new cell's create event must name, as its origin, a split event in
        the log of my current cell that moved me and made exactly this cell
        (crypto.splits.check_split_creation); anything else, such as a cell an
        informant founded around me, is refused. Once moved I am no longer on
        the old cell's roster, so its log comes with my evidence (up to the
        split) and must extend the log this client verified before.
        """
        _, old_cell = self.client.network()
        rules = self.client.rules()
        if old_cell in logs:  # what the server shows of my old cell extends what I saw
            extend_log(self.client.state.record(old_cell).events, logs[old_cell], rules=rules)
        record, _ = await self.sync_roster(new_cell)
        step = roster.parse_group_creation(record.events[0], rules=rules)
        # Walk back from the new cell to mine, one split at a time (I may have
        # been moved more than once since this client last looked).
        for _ in range(len(logs)):
            origin = step.statement.fields.get("origin")
            parent = _log_holding(logs, origin)
            if parent is None or self.client.me not in step.state.members:
                break
            try:
                find_split_creation(parent, step, rules=rules)
            except RuleViolation as exc:
                raise lying(
                    f"the server moved you to a cell that no split of your cell made ({exc})"
                ) from None
            self._keep_left_cell(parent, step)
            if parent[0].fields.get("group") == old_cell:
                self.client.save(replace(self.client.state, cell_id=new_cell))
                return
            step = roster.parse_group_creation(parent[0], rules=rules)
        raise lying("the server moved you to a cell that no split of your cell made")

    def _check_origin(self, create: Statement, logs: dict[bytes, list[Statement]]) -> None:
        """My cell is the stewards' founding cell, or a split of a cell I can see made it.

        A create event with an origin is only a claim: anyone can sign one
        around a member. The log of the cell it split from (cut at the split)
        comes with my evidence, and the split in it must have made exactly
        this cell, with the consent of everyone it moved.
        """
        rules = self.client.rules()
        creation = roster.parse_group_creation(create, rules=rules)
        origin = create.fields.get("origin")
        if origin is None:
            return  # the founding cell: the rule book admits only stewards to it
        parent = _log_holding(logs, origin)
        if parent is None:
            raise lying("the server shows no split that made your cell")
        try:
            find_split_creation(parent, creation, rules=rules)
        except RuleViolation as exc:
            raise lying(f"your cell was not made by the split it names ({exc})") from None
        if self.client.me in creation.state.members:  # the split moved me: keep what I read
            self._keep_left_cell(parent, creation)

    def _keep_left_cell(self, log: list[Statement], creation: GroupCreation) -> None:
        """Keep the cell a verified split moved me out of, read-only, its log cut at the split.

        `creation` is the create event of the cell the split made, already
        checked against the split in `log` (find_split_creation) and holding
        me. The log kept must extend what this client verified of that cell;
        later, the server serves me that cell only up to the split, and a log
        that goes past it is a lie (sync_roster).
        """
        origin = creation.statement.fields.get("origin")
        cut = next(i for i, event in enumerate(log) if event.id == origin)
        kept = list(log[: cut + 1])
        record = self.client.state.record(get_bytes(kept[0].fields, "group", GROUP_ID_BYTES))
        if record.left_at is not None:
            return
        extend_log(record.events, kept, rules=self.client.rules())
        record.events, record.left_at = kept, cut
        self.client.save()

    async def _remove_revoked(self, state: RosterState, revocation: Revocation) -> RosterState:
        """Take a revoked member off the roster, the revocation as the reason (`expelled`
        for an expulsion, `revoked` for a steward's or the member's own).

        Any member may post it (crypto.roster checks the revocation); the
        removal makes the epoch stale, so nothing more is sent that the
        revoked member could read.
        """
        fields: dict[str, Value] = {
            "member": revocation.subject,
            "reason": "expelled" if revocation.grounds == "expelled" else "revoked",
            "revocation": pack(revocation.statement),
        }
        event = roster.sign_event(
            self.client.state.identity,
            self.client.network_id(),
            state,
            "remove",
            self.client.now(),
            fields,
        )
        try:
            await self.client.call(api.post_roster_event(state.group, event))
        except ServerError as exc:
            if exc.code not in ("stale_head", "not_in_group"):
                raise
            # Another cellmate's client was first, or the log moved on: look again.
        _, state = await self.sync_roster(state.group)
        if revocation.subject in state.members:
            raise ClientError(
                "revocation_pending",
                f"{member_id_text(revocation.subject)} is revoked but still on the roster; "
                "nothing was sent. Run the command again.",
            )
        return state

    async def my_group(self, text: str) -> RosterState:
        """A group of mine I may write to, its log verified now, with me on its roster."""
        group = await self.group(text)
        self.writable(group)
        _, state = await self.sync_roster(group)
        if self.client.me not in state.members:
            raise ClientError("not_in_group", "You are not on this group's roster.")
        return state

    async def open_motion(
        self, state: RosterState, motion: Motion, refuse: Callable[[RuleViolation], ClientError]
    ) -> motion_rules.Quorum:
        """Post a motion the rule book lets me open in `state` (`refuse` words a refusal,
        and nothing is sent); its quorum."""
        try:
            quorum = motion_rules.check_opening(
                state, motion, self.client.rules(), motion.statement.time
            )
        except RuleViolation as exc:
            raise refuse(exc) from None
        opened = api.parse_motion_id(
            await self.client.call(api.open_motion(state.group, motion.statement))
        )
        if opened.lower() != b32e(motion.id):
            raise ClientError("bad_response", "The server answered with another motion id.")
        return quorum

    async def post_event(
        self,
        state: RosterState,
        op: str,
        fields_for: Callable[[RosterState], Awaitable[dict[str, Value]]],
        refuse: Callable[[RuleViolation], ClientError],
        *,
        tries: int = 3,
    ) -> Statement:
        """Sign and post the roster event `op` with the fields made for the current state,
        checked by the rule book first (`refuse` words a refusal); made again on a moved
        head, `tries` times at most. The log is fetched again after it."""
        identity, network = self.client.state.identity, self.client.network_id()
        for attempt in range(tries):
            fields = await fields_for(state)
            event = roster.sign_event(identity, network, state, op, self.client.now(), fields)
            try:
                roster.apply(state, event, rules=self.client.rules())
            except RuleViolation as exc:
                raise refuse(exc) from None
            try:
                await self.client.call(api.post_roster_event(state.group, event))
            except ServerError as exc:
                if exc.code != "stale_head" or attempt == tries - 1:
                    raise
                _, state = await self.sync_roster(state.group)
                continue
            break
        await self.sync_roster(state.group)
        return event

    async def _review_duties(
        self, state: RosterState, revocations: Mapping[bytes, Revocation]
    ) -> RosterState:
        """What an expulsion asks of my cell's log, posted by whichever member's client sees it
        first (crypto/review.py): its review, once; a suspension once a review's window passed."""
        rules = self.client.rules()
        for revocation in revocations.values():
            if revocation.grounds != "expelled" or revocation.statement.id in state.reviewed:
                continue
            subject = revocation.subject
            touched = reviewed_by(state, subject, rules) or (
                subject in state.lines
                and direct_issuer(state.lines, subject, rules.stewards) in state.members
            )
            if touched:
                fields: dict[str, Value] = {"revocation": pack(revocation.statement)}
                state = await self._duty(state, "review", fields)
        window = rules.policy.review_seconds
        for member_id, (since, _) in list(state.review.items()):
            if member_id not in state.suspended and self.client.now() >= since + window:
                state = await self._duty(state, "suspend", {"member": member_id})
        return state

    async def _seat_under_review(
        self,
        state: RosterState,
        revocations: Mapping[bytes, Revocation],
        cell: verify.VerifiedCell,
    ) -> None:
        """My cell's spokesperson came under review: they lose every council seat they hold
        for it. Carried by whichever member's client sees it (a council takes it from the
        seat's cell), with the expulsion and their certificates up to the expelled member
        (crypto/review.py `check_seat_review`); a seat already empty answers an error, no harm."""
        holder = state.spokesperson
        if holder is None:
            return
        _, expelled = state.review[holder]
        revocation = next((r for r in revocations.values() if r.subject == expelled), None)
        member = cell.members.get(holder)
        if revocation is None or member is None:
            return
        line = []
        for link in member.chain:
            line.append(pack(link.statement))
            if link.issuer == expelled:
                break
        else:
            return  # the chain does not lead to the expelled member: nothing to carry
        fields: dict[str, Value] = {
            "member": holder,
            "reason": "review",
            "seat_group": state.group,
            "revocation": pack(revocation.statement),
            "chain": line,
        }
        for seat in api.parse_seats(await self.client.call(api.group_seats(state.group))):
            if seat.holder is None or verify.parse_id(seat.holder, 32, "member id") != holder:
                continue
            council = verify.parse_id(seat.council_id, GROUP_ID_BYTES, "council id")
            event = roster.sign_event(
                self.client.state.identity,
                self.client.network_id(),
                council_position(council, seat),
                "remove",
                self.client.now(),
                fields,
            )
            try:
                await self.client.call(api.post_roster_event(council, event))
            except ServerError:
                pass  # another client was first, or the seat moved on: its council judges

    async def _duty(self, state: RosterState, op: str, fields: dict[str, Value]) -> RosterState:
        """A roster event any member may post when its time has come (a freeze lapsing, a
        review, a suspension); another member's client being first is no error."""
        event = roster.sign_event(
            self.client.state.identity,
            self.client.network_id(),
            state,
            op,
            self.client.now(),
            fields,
        )
        try:
            roster.apply(state, event, rules=self.client.rules())
        except RuleViolation:
            return state  # not (or no longer) due by the rules: nothing to post
        try:
            await self.client.call(api.post_roster_event(state.group, event))
        except ServerError as exc:
            if exc.code not in ("stale_head", "stale_motion", "not_frozen", "not_in_review"):
                raise
        _, state = await self.sync_roster(state.group)
        return state

    async def _my_cell_evidence(self) -> MyCell:
        """My cell's members as the server lists them, each with a verified chain.

        Only the chains are checked here, not my own vetting: a finished
        vetting is not re-run on every message.
        """
        genesis, _ = self.client.network()
        evidence = api.parse_evidence(
            await self.client.call(api.member_evidence(self.client.state.member_id))
        )
        if evidence.network_id.lower() != b32e(genesis.network_id):
            raise lying("the server's evidence is about another network")
        # The chain must extend the one this client verified before (rollback, fork).
        listed = verify.revocation_list(genesis, evidence.revocations)
        self.revocations.accept(listed)
        revocations = listed.by_subject
        revoked = {m: r.statement.time for m, r in revocations.items()}
        logs: dict[bytes, list[Statement]] = {}
        for log in evidence.cell_history:
            events = [verify.statement(w, "roster", genesis.network_id) for w in log]
            if events:
                logs[get_bytes(events[0].fields, "group", GROUP_ID_BYTES)] = events
        return MyCell(verify.verify_cell(genesis, evidence, revoked), revocations, logs)

    def _check_chains(
        self, record: GroupRecord, state: RosterState, cell: verify.VerifiedCell
    ) -> None:
        """Every roster member of my cell has a chain to the genesis, and the add named it."""
        if state.group != cell.group.group_id:
            return
        for member_id in state.members:
            verified = cell.members.get(member_id)
            if verified is None:
                raise lying(
                    f"the roster lists {member_id_text(member_id)}, whom the server shows "
                    "with no chain to the genesis"
                )
        for member_id, admission in admission_ids(record.events, self.client.network_id()).items():
            verified = cell.members.get(member_id)
            if (
                verified is not None
                and verified.chain
                and verified.chain[0].statement.id != admission
            ):
                raise lying(
                    f"the roster added {member_id_text(member_id)} with another admission "
                    "certificate than their chain's"
                )

    async def _add_member(
        self, record: GroupRecord, state: RosterState, member: bytes
    ) -> RosterState:
        report = await self.vetting.evidence(member_id_text(member))
        if report.status not in ("probation", "active") or report.newcomer is None:
            return state
        if report.admission is None:
            return state
        vouches = [
            v.statement
            for v in report.verdicts
            if v.statement.type == "vouch" and v.author in state.members
        ]
        fields = roster.add_fields(report.newcomer.key_bundle, report.admission, vouches)
        for attempt in range(2):
            event = roster.sign_event(
                self.client.state.identity,
                self.client.network_id(),
                state,
                "add",
                self.client.now(),
                fields,
            )
            try:
                # The rule book judges the add against this log's own members
                # before anything is signed away: the server's word that this
                # member belongs here counts for nothing.
                roster.apply(state, event, rules=self.client.rules())
            except RuleViolation as exc:
                if exc.code == "not_vetted":
                    return state  # vetting not complete by this log's members yet
                raise lying(
                    f"the server lists {member_id_text(member)} as a member of your cell, "
                    f"but their admission does not hold in its roster log ({exc})"
                ) from None
            try:
                await self.client.call(api.post_roster_event(state.group, event))
            except ServerError as exc:
                if exc.code == "stale_head" and attempt == 0:
                    record, state = await self.sync_roster(state.group)
                    if member in state.members:
                        return state  # another member's client was first
                    continue
                if exc.code in ("not_admitted", "stale_head", "already_in_group"):
                    return state  # the server's view lags or someone was first: next time
                raise
            break
        _, state = await self.sync_roster(state.group)
        return state

    async def cells(self, at: int | None = None) -> list[GroupView]:
        """My groups as their verified roster logs show them (`spokes cells`).

        `at` shows each roster's fingerprint as it stood at that roster seq:
        two members whose logs have grown to different lengths compare at the
        lower one (a fork kept at different lengths shows there).
        """
        await self.sync_cell()
        _, cell_id = self.client.network()
        views = []
        summaries = api.parse_groups(await self.client.call(api.my_groups()))
        # The server's levels only order the checks: a council below is verified first.
        for summary in sorted(summaries, key=lambda s: s.level):
            group = verify.parse_id(summary.group_id, GROUP_ID_BYTES, "group id")
            if group == cell_id and self.verified(group):
                record, state = await self.sync_roster(group)
            else:
                record, state = await self.listed_council(group)
            views.append(
                GroupView(
                    group_id=b32e(group),
                    kind=state.kind,
                    level=state.level,
                    members=len(state.members),
                    epoch=state.epoch,
                    needs_rekey=state.needs_rekey,
                    current_cell=group == cell_id,
                    unread_events=max(0, summary.last_seq - record.cursor),
                    spokesperson=None
                    if state.spokesperson is None
                    else member_id_text(state.spokesperson),
                    roster_seq=state.seq if at is None else at,
                    fingerprint=roster_fingerprint(group, _head_at(record.events, at)),
                    seats=len(state.seats),
                )
            )
        self.client.save()
        return views


def _head_at(events: list[Statement], at: int | None) -> bytes:
    """The id of the log's event at roster seq `at` (the last one for None)."""
    if at is None:
        return events[-1].id
    if not 0 <= at < len(events):
        raise ClientError(
            "invalid_seq",
            f"Your log holds roster seq 0 to {len(events) - 1}; compare at a seq both of you have.",
        )
    return events[at].id


def _log_holding(logs: dict[bytes, list[Statement]], event_id: object) -> list[Statement] | None:
    """The log, among those my evidence brought, that holds the event `event_id`."""
    return next((log for log in logs.values() if any(e.id == event_id for e in log)), None)
