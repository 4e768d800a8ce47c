"""Group proposals: raised, answered and decided by each member's own client.

The rule it keeps: an outcome is computed only from messages this client
verified and opened itself (client/messages.py), by `tally`, a function of
the group's kept history, the rosters of its key periods (from the verified
roster log) and the clock. The server sees only ciphertext: it can't add,
change or count an answer; what it can do, drop or replay a message, the
message layer's sequence checks catch (PROTOCOL §12), and before deciding
whether I already answered, this client checks that every message of mine
the server accepted was served back (client/groups.py `check_mine_served`).

A proposal is a message whose sealed content also carries
{"proposal": {"deadline": unix time}}; its id is the message's id. An answer
is a message in the same group carrying {"answer": {"proposal": id (16
bytes), "choice": "agree" | "stand-aside" | "block", "reason": text or
null}}; a block carries its reason. The rule of the outcome (PROTOCOL
§12, "Proposals"):

- Asked: the members of the roster of the key period the proposal was
  sealed in (exactly who could read it).
- An answer counts if it is the first well-formed answer of its sender to
  the proposal, in the group's order; its sender was asked; it was sealed
  before the deadline (its sealed `sent_at`), and no message before it in
  the group's order carries a `sent_at` at or past the deadline (such a
  message closes the proposal for everyone, whatever their clocks say).
- `blocked` as soon as one counted answer blocks; else `agreed` once
  everyone asked has answered with at least one agree, or at the deadline
  when more than half of those asked answered and at least one agreed;
  else `no_quorum` at the deadline (or once everyone stood aside); else `open`.

No I/O above `Proposals`: `proposal_of`, `answer_of` and `tally` decide.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from client.errors import ClientError
from client.groups import GroupRecord, ReadMessage, check_mine_served, readable_epochs
from client.messages import Messages
from client.rosters import Rosters
from client.sdk import Client
from crypto.encoding import Value, b32d, b32e
from crypto.keys import member_id_text

MINUTE, HOUR, DAY = 60, 3600, 86400
MIN_DEADLINE_SECONDS = 10 * MINUTE
MAX_DEADLINE_SECONDS = 30 * DAY
DEFAULT_DEADLINE_SECONDS = 48 * HOUR
CHOICES = ("agree", "stand-aside", "block")
PROPOSAL_ID_BYTES = 16  # a message id (crypto/messages.py)

AGREED, BLOCKED, OPEN, NO_QUORUM = "agreed", "blocked", "open", "no_quorum"
LATE, SECOND_ANSWER, NOT_ASKED = "late", "second_answer", "not_asked"


@dataclass(frozen=True)
class Proposal:
    """A proposal as its sender sealed it, read from a verified message."""

    proposal_id: str
    by: str
    text: str
    sent_at: int
    deadline: int
    cursor: int
    epoch: int


@dataclass(frozen=True)
class Answer:
    """One member's answer to a proposal, read from a verified message."""

    message_id: str
    by: str
    proposal_id: str
    choice: str
    reason: str | None
    sent_at: int
    cursor: int


@dataclass(frozen=True)
class Ignored:
    """An answer that does not count, and why: late, second_answer or not_asked."""

    answer: Answer
    why: str


@dataclass(frozen=True)
class Tally:
    """A proposal's outcome as this client computes it."""

    proposal: Proposal
    outcome: str
    asked: frozenset[str]
    counted: tuple[Answer, ...]
    ignored: tuple[Ignored, ...]
    # The group seq of the first message past the deadline, if one came: it
    # closed the proposal in the group's order, whatever the reader's clock says.
    closed_by: int | None
    closed: bool  # no answer can count any more (deadline passed, or closed_by)

    def count(self, choice: str) -> int:
        return sum(1 for a in self.counted if a.choice == choice)

    def first_answer_of(self, member: str) -> Answer | None:
        """The member's first answer, counted or not."""
        answers = [*self.counted, *(i.answer for i in self.ignored)]
        return min((a for a in answers if a.by == member), key=lambda a: a.cursor, default=None)


def _int(value: Value | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def proposal_of(message: ReadMessage) -> Proposal | None:
    """The proposal a message carries, or None (a plain message, or a malformed proposal).

    Its deadline must fall 10 minutes to 30 days after its sealed sent_at: a
    member's client can't put a question nobody has time to block, or one
    that never closes. A message that carries an answer as well is neither.
    """
    sealed = message.proposal
    if sealed is None or message.answer is not None or message.epoch is None:
        return None
    deadline = _int(sealed.get("deadline"))
    if deadline is None:
        return None
    if not MIN_DEADLINE_SECONDS <= deadline - message.sent_at <= MAX_DEADLINE_SECONDS:
        return None
    return Proposal(
        message.message_id,
        message.sender,
        message.text,
        message.sent_at,
        deadline,
        message.cursor,
        message.epoch,
    )


def answer_of(message: ReadMessage) -> Answer | None:
    """The answer a message carries, or None (not one, or malformed: a block without reason)."""
    sealed = message.answer
    if sealed is None or message.proposal is not None:
        return None
    proposal, choice, reason = sealed.get("proposal"), sealed.get("choice"), sealed.get("reason")
    if not isinstance(proposal, bytes) or len(proposal) != PROPOSAL_ID_BYTES:
        return None
    if choice not in CHOICES or not (reason is None or isinstance(reason, str)):
        return None
    reason = (reason or "").strip() or None
    if choice == "block" and reason is None:
        return None
    return Answer(
        message.message_id,
        message.sender,
        b32e(proposal),
        str(choice),
        reason,
        message.sent_at,
        message.cursor,
    )


def outcome(agree: int, stand_aside: int, block: int, asked: int, closed: bool) -> str:
    """The outcome from counted answers (module docstring); final unless `open`."""
    if block:
        return BLOCKED
    answered = agree + stand_aside
    if closed or answered >= asked:
        return AGREED if agree and 2 * answered > asked else NO_QUORUM
    return OPEN


def tally(
    proposal: Proposal, later: Sequence[ReadMessage], asked: frozenset[str], now: int
) -> Tally:
    """The proposal's outcome from the messages after it, in the group's order.

    `asked`: member ids (text) of the roster of the proposal's key period.
    `now` only says whether the deadline has passed; which answers count
    depends on the messages alone, so every member computes the same.
    """
    counted: list[Answer] = []
    ignored: list[Ignored] = []
    closed_by: int | None = None
    for message in sorted(later, key=lambda m: m.cursor):
        if message.cursor <= proposal.cursor:
            continue
        answer = answer_of(message)
        if answer is not None and answer.proposal_id == proposal.proposal_id:
            why = None
            if answer.by not in asked:
                why = NOT_ASKED
            elif any(a.by == answer.by for a in counted) or any(
                i.answer.by == answer.by for i in ignored
            ):
                why = SECOND_ANSWER
            elif closed_by is not None or answer.sent_at >= proposal.deadline:
                why = LATE
            if why is None:
                counted.append(answer)
            else:
                ignored.append(Ignored(answer, why))
        if closed_by is None and message.sent_at >= proposal.deadline:
            closed_by = message.cursor
    closed = closed_by is not None or now >= proposal.deadline
    agree, stand_aside, block = (
        sum(1 for a in counted if a.choice == c) for c in ("agree", "stand-aside", "block")
    )
    return Tally(
        proposal,
        outcome(agree, stand_aside, block, len(asked), closed),
        asked,
        tuple(counted),
        tuple(ignored),
        closed_by,
        closed,
    )


def tallies(
    history: Sequence[ReadMessage], rosters: Mapping[int, frozenset[str]], now: int
) -> list[Tally]:
    """Every proposal in a group's history, oldest first, with its outcome.

    `rosters`: per key period, the member ids (text) of its roster.
    """
    ordered = sorted(history, key=lambda m: m.cursor)
    found = []
    for position, message in enumerate(ordered):
        proposal = proposal_of(message)
        if proposal is not None:
            asked = rosters.get(proposal.epoch, frozenset())
            found.append(tally(proposal, ordered[position + 1 :], asked, now))
    return found


def parse_proposal_id(text: str) -> bytes:
    try:
        raw = b32d(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != PROPOSAL_ID_BYTES:
        raise ClientError(
            "invalid_proposal_id",
            f"{text!r} is not a proposal id; `spokes proposals GROUP` lists them.",
        )
    return raw


def check_deadline(seconds: int) -> None:
    if not MIN_DEADLINE_SECONDS <= seconds <= MAX_DEADLINE_SECONDS:
        raise ClientError(
            "invalid_deadline",
            "A proposal's deadline is 10 minutes to 30 days away (48h unless you say); "
            "nothing was sent.",
        )


class Proposals:
    """Proposals in my groups: raising, answering, and each one's outcome."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.rosters = Rosters(client)
        self.messages = Messages(client)

    async def propose(
        self, group_text: str, text: str, seconds: int = DEFAULT_DEADLINE_SECONDS
    ) -> dict[str, object]:
        """Send a proposal to the group; its deadline is `seconds` after its sealed time."""
        if not text.strip():
            raise ClientError("empty_proposal", "Say what you propose; nothing was sent.")
        check_deadline(seconds)
        now = self.client.now()
        fields: dict[str, Value] = {"proposal": {"deadline": now + seconds}}
        sent = await self.messages.send(group_text, text, fields, sent_at=now)
        return {
            "proposal_id": sent["message_id"],
            "group": b32e(self.rosters.resolve(group_text)),
            "seq": sent["cursor"],
            "deadline": now + seconds,
        }

    async def answer(
        self, proposal_text: str, choice: str, reason: str | None
    ) -> dict[str, object]:
        """Answer a proposal once, before it closes; refused before anything is sent otherwise."""
        if choice not in CHOICES:
            raise ClientError(
                "invalid_choice", f"Answer agree, stand-aside or block, not {choice!r}."
            )
        reason = (reason or "").strip() or None
        if choice == "block" and reason is None:
            raise ClientError(
                "reason_required",
                'A block says why: run it again with --reason "…". Nothing was sent.',
            )
        proposal_id = b32e(parse_proposal_id(proposal_text))
        # An answer of mine left unconfirmed by an earlier run is posted first,
        # so that it is among what is read below.
        await self.messages.flush_outbox()
        group, record = await self._holding(proposal_id)
        self.rosters.writable(group)
        check_mine_served(record, self.client.me)
        now = self.client.now()
        found = self._tally(record, proposal_id, now)
        me = member_id_text(self.client.me)
        mine = found.first_answer_of(me)
        if mine is not None:
            raise ClientError(
                "already_answered",
                f"You already answered this proposal ({mine.choice}, group seq {mine.cursor}); "
                "only a member's first answer counts, so nothing was sent.",
            )
        if found.closed:
            raise ClientError(
                "proposal_closed",
                f"This proposal closed ({_closing(found)}); nothing was sent. "
                f"`spokes proposals {b32e(group)}` shows its outcome.",
            )
        if me not in found.asked:
            raise ClientError(
                "not_asked",
                "This proposal was put to the group before you were on its roster, so your "
                "answer would not count; nothing was sent.",
            )
        text = choice if reason is None else f"{choice}: {reason}"
        fields: dict[str, Value] = {
            "answer": {"proposal": b32d(proposal_id), "choice": choice, "reason": reason}
        }
        sent = await self.messages.send(b32e(group), text, fields, sent_at=now)
        return {
            "proposal_id": proposal_id,
            "answer": choice,
            "group": b32e(group),
            "seq": sent["cursor"],
        }

    async def proposals(self, group_text: str) -> tuple[bytes, list[Tally]]:
        """Every proposal this client kept of the group, with the outcome it computes."""
        group = await self.rosters.group(group_text)
        record, _ = await self.messages.catch_up(group)
        if record.left_at is None:
            check_mine_served(record, self.client.me)
        return group, self.tallies(record, self.client.now())

    def tallies(self, record: GroupRecord, now: int) -> list[Tally]:
        """The group's proposals from its kept history and its verified roster log."""
        infos = readable_epochs(record, rules=self.client.rules())
        rosters = {
            n: frozenset(member_id_text(m) for m in info.members) for n, info in infos.items()
        }
        return tallies(record.history, rosters, now)

    async def mandate(self, proposal_text: str, council_text: str) -> dict[str, object]:
        """Carry an agreed proposal of a group I speak for up to its council, as a relay that
        names the proposal and its outcome (the council sees the counts, never who answered)."""
        from client.relays import Relays  # noqa: PLC0415 - relays.py imports messages only

        proposal_id = b32e(parse_proposal_id(proposal_text))
        group, record = await self._holding(proposal_id)
        found = self._tally(record, proposal_id, self.client.now())
        if found.outcome != AGREED:
            raise ClientError(
                "not_agreed",
                f"This proposal is {found.outcome}, not agreed: only an agreed proposal is a "
                "mandate. Nothing was sent.",
            )
        mandate: dict[str, Value] = {
            "proposal": b32d(proposal_id),
            "outcome": found.outcome,
            "asked": len(found.asked),
            "agree": found.count("agree"),
            "stand_aside": found.count("stand-aside"),
            "block": found.count("block"),
        }
        message = next(m for m in record.history if m.message_id == proposal_id)
        sent = await Relays(self.client).relay(
            b32e(group), message.cursor, council_text, None, extra={"mandate": mandate}
        )
        return {"proposal_id": proposal_id, "group": sent["group"], "seq": sent["seq"]}

    def _tally(self, record: GroupRecord, proposal_id: str, now: int) -> Tally:
        for found in self.tallies(record, now):
            if found.proposal.proposal_id == proposal_id:
                return found
        raise AssertionError("unreachable: _holding found it")

    async def _holding(self, proposal_id: str) -> tuple[bytes, GroupRecord]:
        """The group whose kept history holds the proposal, caught up first."""
        for group in await self.rosters.sync_groups():
            await self.messages.catch_up(group)
        groups = [*self.rosters.verified_groups(), *(r.group_id for r in self.rosters.left_cells())]
        for group in groups:
            record = self.client.state.record(group)
            for message in record.history:
                if message.message_id != proposal_id:
                    continue
                if proposal_of(message) is None:
                    raise ClientError(
                        "not_a_proposal",
                        "That id names a message that is not a proposal; "
                        "`spokes proposals GROUP` lists the proposals.",
                    )
                return group, record
        raise ClientError(
            "proposal_not_found",
            "No proposal with that id in your groups' messages (a proposal put before you "
            "joined is sealed to those who were there). `spokes proposals GROUP` lists them.",
        )


def _closing(found: Tally) -> str:
    deadline = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(found.proposal.deadline))
    if found.closed_by is not None:
        return (
            f"its deadline is {deadline}, and a message sealed after it came "
            f"at group seq {found.closed_by}"
        )
    return f"its deadline passed at {deadline}"
