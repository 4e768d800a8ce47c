"""Messages for one member: sending (with its outbox), catching up, reading.

The rule it keeps: a message counter is saved as used before the message
is sealed, so no key ever serves twice, and a sealed message is posted
again byte for byte until the server answers it (the caller holds the
home's lock, DESIGN §7); every event read is checked against the roster
log this client verified, and a message opens only with its sender's chain
of an epoch whose roster held them. Before sending, the group gets a
current epoch (client/epochs.py) and my profile is sealed under it
(client/profiles.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from client import api, verify
from client.epochs import Epochs
from client.errors import ClientError, ServerError
from client.groups import (
    EpochInfo,
    GroupRecord,
    ReadMessage,
    check_counter,
    check_head,
    check_previous,
    check_seqs,
    event_digest,
    lineage,
    lying,
    message_header,
    parse_message_body,
    previous_counter,
    readable_epochs,
)
from client.profiles import Profiles
from client.revocations import Revocations
from client.rosters import Rosters
from client.sdk import Client
from client.state import Outgoing
from crypto import alerts, relays, roster
from crypto.chains import RevocationHead
from crypto.encoding import Value, b32e, decode
from crypto.errors import CryptoError, DecryptionFailed, RuleViolation
from crypto.exclusion import open_self_revocation
from crypto.keys import member_id_text
from crypto.messages import Header, message_id, open_message, seal_message
from crypto.messages import verify_message as verify_sealed
from crypto.statements import verify_statement

PAGE = 500
RESEND_TRIES = 3
RESEND_DELAY_SECONDS = 0.5
# What the message layer seals in every message (PROTOCOL §12).
MESSAGE_FIELDS = frozenset({"text", "head", "sent_at", "prev", "revocations"})
MAX_GROUP_NAME = 64


class Messages:
    """Sending to and reading from my groups."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.epochs = Epochs(client)
        self.profiles = Profiles(client)
        self.revocations = Revocations(client)

    async def send(
        self,
        group_text: str,
        text: str,
        extra: Mapping[str, Value] | None = None,
        sent_at: int | None = None,
    ) -> dict[str, Any]:
        """Seal and post one message (the caller holds the home's lock throughout).

        `extra` is sealed beside the text (a proposal or an answer,
        client/proposals.py); it can't replace a field the message layer
        seals. `sent_at` fixes the sealed time (default: now), so a field
        computed from it (a proposal's deadline) agrees with it exactly.

        The order is what makes a key never serve twice: the message is
        sealed, then the chain's advance and the sealed message in the outbox
        are saved in one write, then it is posted; a post whose answer is lost
        is retried with the same bytes (the server answers it as stored), and
        what is still unanswered is posted again by the next send, before
        anything new is sealed.
        """
        if extra is not None and extra.keys() & MESSAGE_FIELDS:
            raise ValueError("extra fields may not replace a message's own")
        await self.flush_outbox()
        group = await self.rosters.group(group_text)
        self.rosters.writable(group)
        record, state = await self.rosters.sync_roster(group)
        state = await self.epochs.ready_to_send(record, state)
        await self.profiles.reseal(record, state)
        identity = self.client.state.identity
        for attempt in range(2):
            epoch_record = record.epochs[state.epoch]
            counter, message_key = epoch_record.next_for_sending()
            header = Header(group, state.epoch, self.client.me, counter)
            content: dict[str, Value] = {
                "text": text,
                "head": state.head,
                "sent_at": self.client.now() if sent_at is None else sent_at,
                "prev": record.sent.get(str(state.epoch), -1),
                # The revocation head I know, carried forward to every reader.
                "revocations": self.revocations.head(),
            }
            content.update(extra or {})
            outgoing = Outgoing(group, seal_message(identity, header, message_key, content))
            del message_key
            # One write: the counter spent and the sealed message in the outbox,
            # before it leaves this process (a crash before it loses a message
            # nobody saw, whose key was never used anywhere else).
            self._set_outbox((*self.client.state.outbox, outgoing))
            try:
                posted = await self._post(outgoing)
            except ServerError as exc:
                self._unqueue(outgoing)  # refused: it was not stored and never will be
                if exc.code not in ("rekey_required", "stale_epoch") or attempt == 1:
                    raise
                refused_epoch = state.epoch
                record, state = await self.rosters.sync_roster(group)
                # rekey_required with an unchanged roster: the epoch is retired by policy.
                retire = refused_epoch if exc.code == "rekey_required" else None
                state = await self.epochs.ready_to_send(record, state, retire=retire)
                await self.profiles.reseal(record, state)
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
                posted = api.parse_message_posted(await self.client.call(request))
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
        record = self.client.state.record(outgoing.group_id)
        epoch = str(header.epoch)
        record.sent[epoch] = max(record.sent.get(epoch, -1), header.counter)
        self._unqueue(outgoing)
        return {"message_id": posted.message_id, "cursor": posted.cursor}

    def _unqueue(self, outgoing: Outgoing) -> None:
        outbox = tuple(o for o in self.client.state.outbox if o != outgoing)
        if self.client.following is not None:
            # The relay daemon saves at the end of each unit; a crash before
            # that posts the same bytes again, which the server answers as stored.
            self.client.state = replace(self.client.state, outbox=outbox)
            return
        self._set_outbox(outbox)

    def _set_outbox(self, outbox: tuple[Outgoing, ...]) -> None:
        self.client.save(replace(self.client.state, outbox=outbox))

    async def catch_up(self, group: bytes) -> tuple[GroupRecord, list[ReadMessage]]:
        """Fetch, check and open every event after my cursor; keep what I could read.

        A follower (the relay daemon) catches a group up once per unit of work.
        """
        following = self.client.following is not None
        if following and group in self.client.caught_up:
            return self.client.state.record(group), []
        record = self.client.state.record(group)
        fetched: list[api.GroupEvent] = []
        # From the event at my cursor, which must be the one I read there.
        known = record.cursor_digest is not None and record.cursor > 0
        since = record.cursor - 1 if known else record.cursor
        while True:
            page = api.parse_events(await self.client.call(api.group_events(group, since, PAGE)))
            fetched += page
            if len(page) < PAGE:
                break
            since = page[-1].seq
        if known:
            fetched = check_cursor_event(record, fetched)
        # The log is fetched after the events, so it holds every roster event among them.
        record, state = await self.rosters.sync_roster(group)
        check_seqs(record.cursor, [e.seq for e in fetched])
        infos = readable_epochs(record, rules=self.client.rules())
        read = []
        for event in fetched:
            message = await self.absorb(record, infos, event)
            if message is not None:
                read.append(message)
            record.advance(event)
        if not state.needs_rekey and state.epoch in infos and self.client.me in state.members:
            await self.epochs.open_epoch(record, state.epoch, infos[state.epoch])
            await self.profiles.reseal(record, state)
        if self.client.me in state.members:
            await self._renew_name(record, state)
        self.client.save()
        if following:
            self.client.caught_up.add(group)
        return record, read

    async def _renew_name(self, record: GroupRecord, state: roster.RosterState) -> None:
        """A council's name, sealed again under its current key period if only older ones
        hold it, so that a new seat holder reads it too (as a profile is, client/profiles.py)."""
        if state.kind != "council":
            return
        named = current_name(record.history, {member_id_text(m) for m in state.members})
        if named is None or named.group_name is None:
            return
        if named.epoch == state.epoch and not state.needs_rekey:
            return  # readable by everyone seated now
        await self.send(
            b32e(state.group),
            f"The council's name: {named.group_name}",
            {"group_name": named.group_name},
        )

    async def absorb(
        self, record: GroupRecord, infos: dict[int, EpochInfo], event: api.GroupEvent
    ) -> ReadMessage | None:
        """Check one group event against the verified log; open it if it is a message to me."""
        if event.group.lower() != b32e(record.group_id):
            raise lying("the server relayed an event of another group")
        if event.kind in ("roster", "profile"):
            record.names_stale = True  # someone joined, left or changed their profile
        if event.kind == "roster":
            self._check_roster_event(record, event)
            return None
        if event.kind != "message":
            return None  # profiles, motions and signatures are read where they are used
        sealed = parse_message_body(event.body)
        header = message_header(sealed)
        if header.group != record.group_id or event.sender != b32e(header.sender):
            raise lying("a message's header names another group or sender than its event")
        cut_off = record.cut_off.get(header.sender)
        if cut_off is not None and event.seq > cut_off:
            raise lying(
                f"the server delivers a message from {member_id_text(header.sender)} after "
                "their removal on a revocation, or their freeze: their key signs nothing the "
                "group accepts now"
            )
        info = infos.get(header.epoch)
        member = None if info is None else info.members.get(header.sender)
        if info is None or member is None:
            raise lying(f"a message of key period {header.epoch} from someone outside its roster")
        with verify.checking("message signature"):
            verify_sealed(sealed, member.key)
        seen = previous_counter(record.counters, header.epoch, header.sender)
        check_counter(record.counters, header.epoch, header.sender, header.counter)
        keys = await self.epochs.open_epoch(record, header.epoch, info)
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
        self._take_held(content.get("duress"), header.sender)
        provenance = self._check_relay(record, content.get("relay"), head, header.sender)
        text = content.get("text")
        sent_at = content.get("sent_at")
        message = ReadMessage(
            message_id=b32e(message_id(sealed.header)),
            sender=member_id_text(header.sender),
            text=text if isinstance(text, str) else "",
            sent_at=sent_at if isinstance(sent_at, int) else event.created_at,
            cursor=event.seq,
            epoch=header.epoch,
            proposal=_sealed_record(content.get("proposal")),
            answer=_sealed_record(content.get("answer")),
            provenance=provenance,
            alert=_alert_record(content),
            # Only as a relay up: a spokesperson carrying their group's agreed proposal.
            mandate=_sealed_record(content.get("mandate")) if provenance is not None else None,
            group_name=group_name_of(content.get("group_name")),
        )
        record.remember(message)
        return message

    def _check_relay(
        self, record: GroupRecord, relay: Value | None, head: Value | None, sender: bytes
    ) -> dict[str, Value] | None:
        """A relayed message's provenance, if it has one: its sender may relay into this group.

        Judged on the roster as the sender saw it (the head their message
        names): up into a council from a seat holder, down from the group's
        spokesperson (crypto/relays.py).
        """
        if relay is None:
            return None
        position = next((i for i, e in enumerate(record.events) if e.id == head), None)
        if position is None:
            raise lying("a relayed message names a roster this client has not verified")
        state = roster.verify_log(record.events[: position + 1], rules=self.client.rules())
        try:
            provenance = relays.parse_provenance(relay)
            relays.check_relayer(state, sender, provenance)
        except RuleViolation as exc:
            raise lying(f"a relayed message does not hold ({exc})") from None
        return provenance.to_value()

    def _take_held(self, sealed: Value | None, sender: bytes) -> None:
        """A self-revocation a cellmate sealed for me to hold (`spokes duress make`): kept.

        Only the holder it names opens it; the others see a sealed note."""
        if not isinstance(sealed, dict) or sealed.get("holder") != self.client.me:
            return
        box = sealed.get("box")
        try:
            if not isinstance(box, bytes):
                raise RuleViolation("invalid_statement", "no box")
            held = open_self_revocation(
                box, self.client.network_id(), sender, self.client.me, self.client.state.kem
            )
        except CryptoError as exc:
            raise lying(f"a self-revocation sealed for you does not hold ({exc})") from None
        self.client.state.held[sender] = held

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
        await self.revocations.check_head(head, sender)

    def _check_roster_event(self, record: GroupRecord, event: api.GroupEvent) -> None:
        try:
            wire = decode(event.body)
            if not isinstance(wire, dict):
                raise lying("a roster event in the group's events is not a statement")
            body, signature = wire["body"], wire["sig"]
            if not isinstance(body, bytes) or not isinstance(signature, bytes):
                raise lying("a roster event in the group's events is not a statement")
            statement = verify_statement(body, signature, "roster", self.client.network_id())
        except (CryptoError, KeyError) as exc:
            raise lying(f"a roster event in the group's events does not verify ({exc})") from None
        seq = statement.fields.get("seq")
        if not isinstance(seq, int) or seq >= len(record.events):
            raise lying("the group's events hold a roster event its log lacks")
        if record.events[seq].id != statement.id:
            raise lying("the group's events and its roster log disagree")
        fields = statement.fields
        member = fields.get("member")
        op = fields.get("op")
        if isinstance(member, bytes) and (
            op == "freeze" or (op == "remove" and fields.get("reason") in ("revoked", "expelled"))
        ):
            record.cut_off[member] = event.seq
        elif isinstance(member, bytes) and op == "unfreeze":
            record.cut_off.pop(member, None)  # back among the readers from the next epoch

    async def read(self, group_text: str, since: int | None) -> list[ReadMessage]:
        """The group's messages after `since`, or after what `read` last showed.

        `read` has its own cursor, apart from the absorbed one and from
        `watch`'s: a message a watch printed is still new to `read`.
        """
        group = await self.rosters.group(group_text)
        record, _ = await self.catch_up(group)
        start = record.read_cursor if since is None else since
        shown = [m for m in record.history if m.cursor > start]
        if record.read_cursor < record.cursor:
            record.read_cursor = record.cursor
            self.client.save()
        return shown

    async def history(self, group_text: str) -> list[tuple[bytes, ReadMessage]]:
        """A group's kept messages, after those of the cells splits moved me out of to reach it.

        Oldest cell first, each up to the split that moved me out of it (the
        server serves me no more; client/groups.py `lineage`), then the group
        itself; each cell is caught up first, so messages sent before a split
        that this client never fetched are read now. What a cell shows is what
        this client decrypted and kept (the last HISTORY_LIMIT of each group):
        a message key is used once, so nothing is decrypted twice. Neither
        `read`'s cursor nor `watch`'s moves.
        """
        group = await self.rosters.group(group_text)
        kept = []
        for step in lineage(self.client.state.groups, group):
            record, _ = await self.catch_up(step)
            kept += [(step, m) for m in record.history]
        return kept


def _sealed_record(value: Value | None) -> dict[str, Value] | None:
    """A record its sender sealed beside the text, kept as sealed (client/proposals.py reads it)."""
    return value if isinstance(value, dict) else None


def group_name_of(value: Value | None) -> str | None:
    """A group name a message carries: 1 to MAX_GROUP_NAME characters, else none."""
    if isinstance(value, str) and 1 <= len(value.strip()) <= MAX_GROUP_NAME:
        return value.strip()
    return None


def current_name(history: list[ReadMessage], members: set[str]) -> ReadMessage | None:
    """The latest name a member of the group gave it, among the messages I could read."""
    return next(
        (m for m in reversed(history) if m.group_name is not None and m.sender in members), None
    )


def _alert_record(content: dict[str, Value]) -> dict[str, Value] | None:
    """The alert record a message carries, kept as {"kind", "id", …}; a malformed one is
    none (every reader drops it alike)."""
    for kind in alerts.KINDS:
        if kind in content:
            try:
                parsed = alerts.parse_alert_record(kind, content[kind])
            except RuleViolation:
                return None
            return {"kind": kind, **alerts.record_value(parsed)}
    return None


def _transient(exc: ClientError) -> bool:
    """No answer, or the server failed: the same bytes may be posted again."""
    if isinstance(exc, ServerError):
        return exc.status >= 500 or exc.status == 429
    return exc.code in ("server_unreachable", "bad_response")


def check_cursor_event(record: GroupRecord, fetched: list[api.GroupEvent]) -> list[api.GroupEvent]:
    """The events after my cursor, once the first one fetched is shown to be the very event
    I read at my cursor: a log rolled back (a database restored to an older point) or
    rewritten below it is the lying alarm, not silently skipped new events."""
    if (
        not fetched
        or fetched[0].seq != record.cursor
        or event_digest(fetched[0]) != record.cursor_digest
    ):
        raise lying(
            f"the server no longer holds the group's event {record.cursor} as this client read "
            "it: its log was rolled back (a restore to an older point?) or rewritten"
        )
    return fetched[1:]
