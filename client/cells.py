"""Cells and councils for one member: roster logs, epochs, messages, profiles.

Motions (splits) are in client/motions.py.

The rule it keeps: every group fact comes from a roster log this client has
replayed itself (client/groups.py decides; this module fetches and posts),
and the client does its share of the group's upkeep without being asked
(DESIGN §7): the first cell member whose client notices that a newcomer's
admission completed adds them to the roster; the first sender after the
roster changed commits the new epoch; after a new epoch, it seals its
profile again under the new key. Secrets are forgotten as soon as the keys
they yield are derived; a message counter is saved as used before the
message is sealed, so no key is ever used twice (DESIGN §7: the caller
holds the home's lock; `watch` takes it, and re-reads, per batch of events).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from client import api, verify
from client.errors import ClientError, ServerError
from client.groups import (
    EpochInfo,
    EpochRecord,
    GroupRecord,
    ReadMessage,
    admission_ids,
    check_counter,
    check_head,
    check_previous,
    check_seqs,
    epoch_infos,
    extend_log,
    lying,
    message_header,
    new_epoch_record,
    parse_message_body,
    previous_counter,
)
from client.sdk import Client
from client.state import Outgoing
from crypto import epochs, roster
from crypto.chains import Revocation, RevocationHead
from crypto.encoding import Value, b32d, b32e, decode
from crypto.errors import CryptoError, DecryptionFailed, RuleViolation
from crypto.keys import member_id_text, roster_fingerprint
from crypto.messages import (
    Header,
    message_id,
    open_message,
    open_profile,
    seal_message,
    seal_profile,
)
from crypto.messages import verify_message as verify_sealed
from crypto.network import GROUP_ID_BYTES
from crypto.roster import RosterState
from crypto.statements import Statement, get_bytes, pack, verify_statement

PAGE = 500
RESEND_TRIES = 3
RESEND_DELAY_SECONDS = 0.5
CELL_WORD = "cell"


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
    # What members compare when they meet (crypto.keys.roster_fingerprint): the
    # same number is the same roster log; another at the same seq is a fork.
    roster_seq: int
    fingerprint: str


@dataclass(frozen=True)
class MemberView:
    member_id: str
    name: str | None
    contact: str | None
    notes: str | None


@dataclass(frozen=True)
class MyCell:
    """My own evidence: my cell as the server lists it (chains verified), the
    verified revocations, and the roster logs of cells I was moved out of."""

    cell: verify.VerifiedCell
    revocations: dict[bytes, Revocation]
    logs: dict[bytes, list[Statement]]


class Cells:
    """The group side of one member's client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    # Local facts.

    @property
    def _me(self) -> bytes:
        return self.client.state.member_id

    def _network_id(self) -> bytes:
        genesis, _ = self.client._network()
        return genesis.network_id

    def _rules(self) -> roster.GroupRules:
        genesis, _ = self.client._network()
        return roster.GroupRules.of(genesis)

    def _now(self) -> int:
        return self.client._clock()

    def _record(self, group: bytes) -> GroupRecord:
        records = self.client.state.groups
        if group not in records:
            records[group] = GroupRecord(group)
        return records[group]

    def _save(self) -> None:
        self.client._save(self.client.state)

    def resolve(self, text: str) -> bytes:
        """A group id in b32, or the word `cell` for my current cell."""
        if text.strip().lower() == CELL_WORD:
            _, cell_id = self.client._network()
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

    # The roster log.

    async def sync_roster(self, group: bytes) -> tuple[GroupRecord, RosterState]:
        """Fetch the group's log and accept it only if it extends what was verified."""
        try:
            data = await self.client._call(api.group_roster(group))
        except ServerError as exc:
            if exc.code == "not_found":
                raise ClientError(
                    "not_found",
                    f"No group {b32e(group)} that you belong to. `spokes cells` lists yours.",
                ) from None
            raise
        network = self._network_id()
        events = [verify.statement(w, "roster", network) for w in api.parse_roster(data)]
        record = self._record(group)
        state = extend_log(record.events, events, rules=self._rules())
        if state.group != group:
            raise lying("the server answered with the roster log of another group")
        # An add's vetting window is judged by the event's signed time; one
        # from the future would let a member add a newcomer before it closed.
        late = self._now() + roster.MAX_FUTURE_SECONDS
        fresh = events[len(record.events) :]
        if any(event.time > late for event in fresh):
            raise lying("the group's roster log holds an event signed in the future")
        self._check_my_blocks(fresh)
        record.events = list(events)
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

    # Duty (a): add newcomers whose admission completed.

    async def sync_cell(self) -> None:
        """Follow my cell (across a split) and add members whose vetting completed."""
        genesis, cell_id = self.client._network()
        mine = await self._my_cell_evidence()
        cell, revocations = mine.cell, mine.revocations
        server_cell = cell.group.group_id
        if server_cell != cell_id:
            await self._follow_split(server_cell, mine.logs)
            cell_id = server_cell
        try:
            record, state = await self.sync_roster(cell_id)
        except ClientError as exc:
            if exc.code == "not_found":
                return  # not on the roster yet: someone else's client adds me
            raise
        if self._me not in state.members:
            return
        for member_id in [m for m in state.members if m in revocations]:
            state = await self._remove_revoked(state, revocations[member_id])
            record = self._record(cell_id)
        self._check_chains(record, state, cell)
        for member in cell.members:
            if member not in state.members:
                state = await self._add_member(record, state, member)
        self._save()

    async def _follow_split(self, new_cell: bytes, logs: dict[bytes, list[Statement]]) -> None:
        """The server says I am in another cell: believe it only through a verified split.

        The new cell's create event must name, as its origin, a split event in
        the log of my current cell that moved me and made exactly this cell
        (crypto.roster.check_split_creation); anything else, such as a cell an
        informant founded around me, is refused. Once moved I am no longer on
        the old cell's roster, so its log comes with my evidence (up to the
        split) and must extend the log this client verified before.
        """
        _, old_cell = self.client._network()
        rules = self._rules()
        if old_cell in logs:  # what the server shows of my old cell extends what I saw
            extend_log(self._record(old_cell).events, logs[old_cell], rules=rules)
        record, _ = await self.sync_roster(new_cell)
        step = roster.parse_group_creation(record.events[0], rules=rules)
        # Walk back from the new cell to mine, one split at a time (I may have
        # been moved more than once since this client last looked).
        for _ in range(len(logs)):
            origin = step.statement.fields.get("origin")
            parent = next((log for log in logs.values() if any(e.id == origin for e in log)), None)
            if parent is None or self._me not in step.state.members:
                break
            try:
                roster.find_split_creation(parent, step, rules=rules)
            except RuleViolation as exc:
                raise lying(
                    f"the server moved you to a cell that no split of your cell made ({exc})"
                ) from None
            if parent[0].fields.get("group") == old_cell:
                self.client._save(replace(self.client.state, cell_id=new_cell))
                return
            step = roster.parse_group_creation(parent[0], rules=rules)
        raise lying("the server moved you to a cell that no split of your cell made")

    async def _remove_revoked(self, state: RosterState, revocation: Revocation) -> RosterState:
        """Take a revoked member off the roster, the steward's revocation as the reason.

        Any member may post it (crypto.roster checks the revocation); the
        removal makes the epoch stale, so nothing more is sent that the
        revoked member could read.
        """
        fields: dict[str, Value] = {
            "member": revocation.subject,
            "reason": "revoked",
            "revocation": pack(revocation.statement),
        }
        event = roster.sign_event(
            self.client.state.identity, self._network_id(), state, "remove", self._now(), fields
        )
        try:
            await self.client._call(api.post_roster_event(state.group, event))
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

    async def _my_cell_evidence(self) -> MyCell:
        """My cell's members as the server lists them, each with a verified chain.

        Only the chains are checked here, not my own vetting: a finished
        vetting is not re-run on every message.
        """
        genesis, _ = self.client._network()
        evidence = api.parse_evidence(
            await self.client._call(api.member_evidence(self.client.state.member_id))
        )
        if evidence.network_id.lower() != b32e(genesis.network_id):
            raise lying("the server's evidence is about another network")
        # The chain must extend the one this client verified before (rollback, fork).
        listed = verify.revocation_list(genesis, evidence.revocations)
        self.client.known_revocations(listed)
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
        for member_id, admission in admission_ids(record.events, self._network_id()).items():
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
        report = await self.client._evidence(member_id_text(member))
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
                self.client.state.identity, self._network_id(), state, "add", self._now(), fields
            )
            try:
                # The rule book judges the add against this log's own members
                # before anything is signed away: the server's word that this
                # member belongs here counts for nothing.
                roster.apply(state, event, rules=self._rules())
            except RuleViolation as exc:
                if exc.code == "not_vetted":
                    return state  # vetting not complete by this log's members yet
                raise lying(
                    f"the server lists {member_id_text(member)} as a member of your cell, "
                    f"but their admission does not hold in its roster log ({exc})"
                ) from None
            try:
                await self.client._call(api.post_roster_event(state.group, event))
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

    # Duty (b): commit an epoch when the roster changed; (c): reseal my profile.

    async def ready_to_send(
        self, record: GroupRecord, state: RosterState, *, retire: int | None = None
    ) -> RosterState:
        """Make sure the group has a current epoch that I hold keys for.

        `retire` names an epoch the server refused as past the policy's age or
        message limit: if it is still the current one, commit the next.
        """
        if state.needs_rekey or (retire is not None and state.epoch == retire):
            state = await self._commit_epoch(record, state)
        if state.needs_rekey:
            raise ClientError(
                "rekey_failed", "The group's new epoch could not be committed; try again."
            )
        infos = epoch_infos(record.events, rules=self._rules())
        await self._open_epoch(record, state.epoch, infos[state.epoch])
        await self._reseal_profile(record, state)
        return state

    async def _commit_epoch(self, record: GroupRecord, state: RosterState) -> RosterState:
        identity = self.client.state.identity
        for attempt in range(2):
            secret = epochs.new_epoch_secret()
            epoch, group = state.epoch + 1, state.group
            commit = epochs.commit_next_epoch(secret, state)
            event = roster.sign_event(
                identity, self._network_id(), state, "epoch", self._now(), commit.fields
            )
            try:
                await self.client._call(api.post_roster_event(group, event, commit.boxes))
            except ServerError as exc:
                if exc.code != "stale_head" or attempt == 1:
                    raise
                # Another member changed the log first: look again, once.
                before = state.epoch
                record, state = await self.sync_roster(group)
                if not state.needs_rekey and state.epoch > before:
                    return state
                continue
            keys = epochs.derive_epoch_keys(secret, group, epoch, state.members)
            del secret  # the chains and profile key are all that is kept
            record.epochs[epoch] = new_epoch_record(keys, self._me)
            self._save()
            break
        _, state = await self.sync_roster(state.group)
        return state

    async def _open_epoch(
        self, record: GroupRecord, epoch: int, info: EpochInfo
    ) -> EpochRecord | None:
        """My keys of `epoch`, from my sealed box; None for an epoch from before I joined."""
        if epoch in record.epochs:
            return record.epochs[epoch]
        if self._me not in info.members:
            record.unreadable.add(epoch)
            return None
        group = record.group_id
        try:
            sealed = api.parse_sealed(await self.client._call(api.epoch_secret(group, epoch)))
        except ServerError as exc:
            if exc.code == "not_found":
                raise lying(
                    f"the server withholds your key of epoch {epoch}, whose signed roster "
                    "includes you"
                ) from None
            raise
        try:
            secret = epochs.open_secret(
                self.client.state.kem,
                sealed,
                group,
                epoch,
                info.roster_hash,
                self._me,
                info.commitment,
            )
        except CryptoError:
            raise lying(
                f"your sealed key of epoch {epoch} does not match the commitment its signed "
                "epoch event carries (someone other than a member sealed it)"
            ) from None
        keys = epochs.derive_epoch_keys(secret, group, epoch, info.members)
        del secret
        record.epochs[epoch] = new_epoch_record(keys, self._me)
        return record.epochs[epoch]

    async def _reseal_profile(self, record: GroupRecord, state: RosterState) -> bool:
        profile = self.client.state.profile
        if profile is None or state.needs_rekey or state.epoch == 0:
            return False
        if record.profile_epoch == state.epoch:
            return True
        keys = record.epochs.get(state.epoch)
        if keys is None:
            return False
        content: dict[str, Value] = {k: v for k, v in profile.items()}
        sealed = seal_profile(
            keys.keys.profile_key,
            state.group,
            state.epoch,
            self.client.state.identity,
            content,
            version=max(1, self.client.state.profile_version),  # the same profile keeps it
        )
        await self.client._call(api.put_profile(state.group, state.epoch, sealed))
        record.profile_epoch = state.epoch
        self._save()
        return True

    # Reading.

    async def catch_up(self, group: bytes) -> tuple[GroupRecord, list[ReadMessage]]:
        """Fetch, check and open every event after my cursor; keep what I could read."""
        record = self._record(group)
        fetched: list[api.GroupEvent] = []
        since = record.cursor
        while True:
            page = api.parse_events(await self.client._call(api.group_events(group, since, PAGE)))
            fetched += page
            if len(page) < PAGE:
                break
            since = page[-1].seq
        # The log is fetched after the events, so it holds every roster event among them.
        record, state = await self.sync_roster(group)
        check_seqs(record.cursor, [e.seq for e in fetched])
        infos = epoch_infos(record.events, rules=self._rules())
        read = []
        for event in fetched:
            message = await self.absorb(record, infos, event)
            if message is not None:
                read.append(message)
            record.cursor = event.seq
        if not state.needs_rekey and state.epoch in infos and self._me in state.members:
            await self._open_epoch(record, state.epoch, infos[state.epoch])
            await self._reseal_profile(record, state)
        self._save()
        return record, read

    async def absorb(
        self, record: GroupRecord, infos: dict[int, EpochInfo], event: api.GroupEvent
    ) -> ReadMessage | None:
        """Check one group event against the verified log; open it if it is a message to me."""
        if event.group.lower() != b32e(record.group_id):
            raise lying("the server relayed an event of another group")
        if event.kind == "roster":
            self._check_roster_event(record, event)
            return None
        if event.kind != "message":
            return None  # profiles, motions and signatures are read where they are used
        sealed = parse_message_body(event.body)
        header = message_header(sealed)
        if header.group != record.group_id or event.sender != b32e(header.sender):
            raise lying("a message's header names another group or sender than its event")
        info = infos.get(header.epoch)
        member = None if info is None else info.members.get(header.sender)
        if info is None or member is None:
            raise lying(f"a message of epoch {header.epoch} from someone outside its roster")
        with verify.checking("message signature"):
            verify_sealed(sealed, member.key)
        seen = previous_counter(record.counters, header.epoch, header.sender)
        check_counter(record.counters, header.epoch, header.sender, header.counter)
        keys = await self._open_epoch(record, header.epoch, info)
        if keys is None:
            return None  # sent before I joined: never sealed to me
        try:
            message_key = keys.keys.chains[header.sender].key_for(header.counter)
            content = open_message(sealed, message_key)
        except (RuleViolation, DecryptionFailed) as exc:
            raise lying(f"a message does not open with its sender's chain ({exc})") from None
        check_previous(content.get("prev"), seen, header.epoch)
        head = content.get("head")
        check_head(infos, header.epoch, head)
        record.heads_seen.setdefault(header.epoch, set()).add(head)  # type: ignore[arg-type]
        await self._check_revocations(content.get("revocations"), header.sender)
        text = content.get("text")
        sent_at = content.get("sent_at")
        message = ReadMessage(
            message_id=b32e(message_id(sealed.header)),
            sender=member_id_text(header.sender),
            text=text if isinstance(text, str) else "",
            sent_at=sent_at if isinstance(sent_at, int) else event.created_at,
            cursor=event.seq,
        )
        record.remember(message)
        return message

    async def _check_revocations(self, claimed: Value | None, sender: bytes) -> None:
        """A message names the revocation head its sender knew: my chain must hold it.

        None: the sender knew no revocation (or wrote before heads were carried).
        """
        if claimed is None:
            return
        try:
            head = RevocationHead.from_value(claimed)
        except CryptoError:
            raise lying("a message names a malformed revocation head") from None
        await self.client.check_revocation_head(head, sender)

    def _check_roster_event(self, record: GroupRecord, event: api.GroupEvent) -> None:
        try:
            wire = decode(event.body)
            if not isinstance(wire, dict):
                raise lying("a roster event in the group's events is not a statement")
            body, signature = wire["body"], wire["sig"]
            if not isinstance(body, bytes) or not isinstance(signature, bytes):
                raise lying("a roster event in the group's events is not a statement")
            statement = verify_statement(body, signature, "roster", self._network_id())
        except (CryptoError, KeyError) as exc:
            raise lying(f"a roster event in the group's events does not verify ({exc})") from None
        seq = statement.fields.get("seq")
        if not isinstance(seq, int) or seq >= len(record.events):
            raise lying("the group's events hold a roster event its log lacks")
        if record.events[seq].id != statement.id:
            raise lying("the group's events and its roster log disagree")

    async def read(self, group_text: str, since: int | None) -> list[ReadMessage]:
        group = await self._group(group_text)
        before = self._record(group).cursor
        record, _ = await self.catch_up(group)
        start = before if since is None else since
        return [m for m in record.history if m.cursor > start]

    async def _group(self, text: str) -> bytes:
        await self.sync_cell()
        return self.resolve(text)

    # Sending.

    async def send(self, group_text: str, text: str) -> dict[str, Any]:
        """Seal and post one message (the caller holds the home's lock throughout).

        The order is what makes a key never serve twice: the chain's advance
        is saved, then the message is sealed, put in the outbox and saved,
        then posted; a post whose answer is lost is retried with the same
        bytes (the server answers it as stored), and what is still unanswered
        is posted again by the next send, before anything new is sealed.
        """
        await self.flush_outbox()
        group = await self._group(group_text)
        record, state = await self.sync_roster(group)
        state = await self.ready_to_send(record, state)
        identity = self.client.state.identity
        for attempt in range(2):
            epoch_record = record.epochs[state.epoch]
            counter, message_key = epoch_record.next_for_sending()
            self._save()  # this counter is spent on disk before its key seals anything
            header = Header(group, state.epoch, self._me, counter)
            content: dict[str, Value] = {
                "text": text,
                "head": state.head,
                "sent_at": self._now(),
                "prev": record.sent.get(str(state.epoch), -1),
                # The revocation head I know, carried forward to every reader.
                "revocations": self.client.revocation_head(),
            }
            outgoing = Outgoing(group, seal_message(identity, header, message_key, content))
            del message_key
            self._set_outbox((*self.client.state.outbox, outgoing))
            try:
                posted = await self._post(outgoing)
            except ServerError as exc:
                self._unqueue(outgoing)  # refused: it was not stored and never will be
                if exc.code not in ("rekey_required", "stale_epoch") or attempt == 1:
                    raise
                refused_epoch = state.epoch
                record, state = await self.sync_roster(group)
                # rekey_required with an unchanged roster: the epoch is retired by policy.
                retire = refused_epoch if exc.code == "rekey_required" else None
                state = await self.ready_to_send(record, state, retire=retire)
                continue
            return self._delivered(outgoing, posted)
        raise AssertionError("unreachable")

    async def flush_outbox(self) -> None:
        """Post again, byte for byte and oldest first, what earlier sends left unanswered.

        The server answers a message it already stored with its id and cursor,
        so the cell reads it once and my next message names it as `prev`;
        a message it refuses was never stored, and is dropped.
        """
        for outgoing in self.client.state.outbox:
            try:
                posted = await self._post(outgoing)
            except ServerError:
                self._unqueue(outgoing)
                continue
            self._delivered(outgoing, posted)

    async def _post(self, outgoing: Outgoing) -> api.MessagePosted:
        """Post a sealed message, retrying a lost answer with the very same bytes.

        Raises the server's refusal (a non-transient ServerError), or
        `send_unconfirmed` when no answer came: the message stays in the outbox.
        """
        sealed = outgoing.message
        request = api.post_message(
            outgoing.group_id, sealed.header, sealed.ciphertext, sealed.signature
        )
        for attempt in range(RESEND_TRIES):
            try:
                posted = api.parse_message_posted(await self.client._call(request))
            except ClientError as exc:
                if not _transient(exc):
                    raise
                if attempt + 1 == RESEND_TRIES:
                    raise ClientError(
                        "send_unconfirmed",
                        f"No answer from the server ({exc.code}): the message may or may not "
                        "have arrived. It is kept, sealed, and your next `spokes send` from "
                        "this home posts it again first; your cell will read it once.",
                    ) from None
                await asyncio.sleep(RESEND_DELAY_SECONDS * (attempt + 1))
                continue
            if posted.message_id != b32e(message_id(sealed.header)):
                raise lying("the server acknowledged another message than the one sent")
            return posted
        raise AssertionError("unreachable")

    def _delivered(self, outgoing: Outgoing, posted: api.MessagePosted) -> dict[str, Any]:
        header = outgoing.header
        record = self._record(outgoing.group_id)
        epoch = str(header.epoch)
        record.sent[epoch] = max(record.sent.get(epoch, -1), header.counter)
        self._unqueue(outgoing)
        return {"message_id": posted.message_id, "cursor": posted.cursor}

    def _unqueue(self, outgoing: Outgoing) -> None:
        self._set_outbox(tuple(o for o in self.client.state.outbox if o != outgoing))

    def _set_outbox(self, outbox: tuple[Outgoing, ...]) -> None:
        self.client._save(replace(self.client.state, outbox=outbox))

    # Groups, members, profiles.

    async def cells(self) -> list[GroupView]:
        await self.sync_cell()
        _, cell_id = self.client._network()
        views = []
        for summary in api.parse_groups(await self.client._call(api.my_groups())):
            group = verify.parse_id(summary.group_id, GROUP_ID_BYTES, "group id")
            record, state = await self.sync_roster(group)
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
                    roster_seq=state.seq,
                    fingerprint=roster_fingerprint(group, state.head),
                )
            )
        self._save()
        return views

    async def members(self, group_text: str) -> list[MemberView]:
        group = await self._group(group_text)
        record, state = await self.sync_roster(group)
        infos = epoch_infos(record.events, rules=self._rules())
        sealed = {
            p.member_id.lower(): p
            for p in api.parse_profiles(await self.client._call(api.group_profiles(group)))
        }
        views = []
        for member in sorted(state.members):
            profile: dict[str, Value] = {}
            found = sealed.get(member_id_text(member))
            info = None if found is None else infos.get(found.epoch)
            if found is not None and info is not None:
                keys = await self._open_epoch(record, found.epoch, info)
                if keys is not None:
                    try:
                        profile, version = open_profile(
                            keys.keys.profile_key,
                            group,
                            found.epoch,
                            state.members[member].key,
                            found.sealed,
                        )
                    except DecryptionFailed:
                        profile = {}
                    else:
                        self._check_profile_version(record, member, version)
            views.append(
                MemberView(
                    member_id=member_id_text(member),
                    name=_text(profile.get("name")),
                    contact=_text(profile.get("contact")),
                    notes=_text(profile.get("notes")),
                )
            )
        self._save()
        return views

    @staticmethod
    def _check_profile_version(record: GroupRecord, member: bytes, version: int) -> None:
        """Refuse a profile older than one already seen from this member in this group.

        A member's client seals every change with a higher version and re-seals
        the same profile for a new epoch with the same one, and the server keeps
        one profile per member and group: an older version served is a replay,
        and raises the alarm rather than being shown as current.
        """
        seen = record.profile_versions.get(member, 0)
        if version < seen:
            raise lying(
                f"the server served version {version} of {member_id_text(member)}'s profile, "
                f"older than version {seen} this client already saw"
            )
        record.profile_versions[member] = version

    async def set_profile(self, name: str, contact: str | None, notes: str | None) -> int:
        profile: dict[str, str | None] = {"name": name, "contact": contact, "notes": notes}
        # A new version for every change, saved before anything is sealed with it.
        version = max(1, self.client.state.profile_version + 1)
        self.client._save(replace(self.client.state, profile=profile, profile_version=version))
        await self.sync_cell()
        uploaded = 0
        for summary in api.parse_groups(await self.client._call(api.my_groups())):
            group = verify.parse_id(summary.group_id, GROUP_ID_BYTES, "group id")
            record, state = await self.sync_roster(group)
            record.profile_epoch = 0  # the profile changed: seal it again everywhere
            state = await self.ready_to_send(record, state)
            uploaded += 1
        self._save()
        return uploaded

    # Live delivery.

    async def watch(
        self, count: int | None, seconds: float, emit: Callable[[str, ReadMessage], None]
    ) -> int:
        """Print messages as they arrive on the socket, resuming from the stored cursors.

        The home's lock is not held while the socket is waited on: each batch
        of events is read under the lock against the keystore re-read from
        disk, and saved before the lock is let go, so other commands from this
        home (a send) can run meanwhile and nothing stale is written back.
        """
        deadline = time.monotonic() + seconds
        async with self.client.fresh():
            await self.sync_cell()
            cursors = {}
            for summary in api.parse_groups(await self.client._call(api.my_groups())):
                group = verify.parse_id(summary.group_id, GROUP_ID_BYTES, "group id")
                record, _ = await self.sync_roster(group)
                cursors[b32e(group)] = record.cursor
            self._save()
            feed = await self._open_feed()
        infos: dict[bytes, tuple[int, dict[int, EpochInfo]]] = {}
        received = 0
        try:
            await feed.send({"type": "subscribe", "cursors": cursors})
            while count is None or received < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                data = await feed.receive(left)
                if data is None:
                    break
                batch = [data]
                while feed.buffered:  # the rest of a batch frame, already here
                    more = await feed.receive(0)
                    if more is not None:
                        batch.append(more)
                read: list[tuple[str, ReadMessage]] = []
                async with self.client.fresh():
                    for item in batch:
                        if count is not None and received + len(read) >= count:
                            break
                        found = await self._live_event(item, infos)
                        if found is not None:
                            read.append(found)
                    self._save()
                for group_text, message in read:
                    emit(group_text, message)
                received += len(read)
        finally:
            await feed.close()
        return received

    async def _live_event(
        self, data: dict[str, Any], infos: dict[bytes, tuple[int, dict[int, EpochInfo]]]
    ) -> tuple[str, ReadMessage] | None:
        """One event from the live feed, against the keystore just re-read (lock held)."""
        kind = data.get("type")
        if kind == "error":
            raise ClientError(
                str(data.get("code") or "feed_error"),
                f"The live feed refused: {data.get('message')}",
            )
        if kind != "event":
            return None
        event = api.parse_event(data)
        group = verify.parse_id(event.group, GROUP_ID_BYTES, "group id")
        record = self._record(group)
        if event.seq <= record.cursor:
            return None  # another command from this home read it meanwhile
        check_seqs(record.cursor, [event.seq])
        if event.kind == "roster":
            record, _ = await self.sync_roster(group)
        known = infos.get(group)
        if known is None or known[0] != len(record.events):
            known = (len(record.events), epoch_infos(record.events, rules=self._rules()))
            infos[group] = known
        message = await self.absorb(record, known[1], event)
        record.cursor = event.seq
        return None if message is None else (b32e(group), message)

    async def _open_feed(self) -> Any:
        transport = self.client._transport
        try:
            return await transport.open_feed("/v1/ws", await self.client._token())
        except ServerError as exc:
            if exc.status != 401:
                raise
        return await transport.open_feed("/v1/ws", await self.client.login())


def _transient(exc: ClientError) -> bool:
    """No answer, or the server failed: the same bytes may be posted again."""
    if isinstance(exc, ServerError):
        return exc.status >= 500 or exc.status == 429
    return exc.code in ("server_unreachable", "bad_response")


def _text(value: Value | None) -> str | None:
    return value if isinstance(value, str) else None
