"""The outcome of a proposal, computed from verified messages alone (client/proposals.py).

Messages here are what the message layer hands over once it verified and
opened them (client/messages.py): senders already checked against the
roster of the message's key period, seqs already checked to follow one by one.
"""

from __future__ import annotations

import argparse
import os

import pytest

from client.cli.proposals import deadline, marked_text, sealed_data
from client.errors import ClientError, VerificationFailed
from client.groups import GroupRecord, ReadMessage, check_mine_served
from client.proposals import (
    AGREED,
    BLOCKED,
    NO_QUORUM,
    OPEN,
    Proposal,
    answer_of,
    check_deadline,
    proposal_of,
    tallies,
    tally,
)
from crypto.encoding import Value, b32e, decode
from crypto.keys import member_id_text

T = 1_700_000_000
HOUR = 3600
DEADLINE = T + 48 * HOUR
ANA, BO, CY, DI, EVE = (member_id_text(bytes([n]) * 32) for n in range(1, 6))
CELL = frozenset({ANA, BO, CY, DI})  # the roster the proposal was sealed to
PROPOSAL_RAW = os.urandom(16)
PROPOSAL_ID = b32e(PROPOSAL_RAW)


def proposed(
    *, deadline: int = DEADLINE, sent_at: int = T, cursor: int = 10, epoch: int = 1
) -> ReadMessage:
    return ReadMessage(
        PROPOSAL_ID, ANA, "Move the meeting to Thursdays", sent_at, cursor, epoch,
        proposal={"deadline": deadline},
    )  # fmt: skip


def answered(
    by: str,
    choice: str,
    cursor: int,
    *,
    sent_at: int = T + HOUR,
    reason: str | None = None,
    to: bytes = PROPOSAL_RAW,
) -> ReadMessage:
    sealed: dict[str, Value] = {"proposal": to, "choice": choice, "reason": reason}
    return ReadMessage(b32e(os.urandom(16)), by, choice, sent_at, cursor, 1, answer=sealed)


def said(by: str, cursor: int, sent_at: int) -> ReadMessage:
    return ReadMessage(b32e(os.urandom(16)), by, "hello", sent_at, cursor, 1)


def the_proposal() -> Proposal:
    found = proposal_of(proposed())
    assert found is not None
    return found


def outcome_of(*later: ReadMessage, now: int = T + 2 * HOUR, asked: frozenset[str] = CELL) -> str:
    return tally(the_proposal(), list(later), asked, now).outcome


# --- The rule of the outcome ----------------------------------------------------


def test_a_proposal_is_open_until_its_deadline_and_agreed_at_it_with_a_majority() -> None:
    answers = [
        answered(ANA, "agree", 11),
        answered(BO, "agree", 12),
        answered(CY, "stand-aside", 13),
    ]
    before = tally(the_proposal(), answers, CELL, DEADLINE - 1)
    assert (before.outcome, before.closed) == (OPEN, False)
    assert (before.count("agree"), before.count("stand-aside"), before.count("block")) == (2, 1, 0)
    after = tally(the_proposal(), answers, CELL, DEADLINE)
    assert (after.outcome, after.closed) == (AGREED, True)


def test_one_block_blocks_at_once_and_for_good() -> None:
    block = answered(DI, "block", 12, reason="It clashes with the night shift")
    assert outcome_of(answered(ANA, "agree", 11), block) == BLOCKED
    assert outcome_of(answered(ANA, "agree", 11), block, answered(BO, "agree", 13)) == BLOCKED
    assert outcome_of(answered(ANA, "agree", 11), block, now=DEADLINE + 1) == BLOCKED
    found = tally(the_proposal(), [block], CELL, T)
    assert [(a.by, a.reason) for a in found.counted] == [(DI, "It clashes with the night shift")]


def test_a_block_without_a_reason_is_no_answer() -> None:
    for reason in (None, "", "   "):
        silent = answered(DI, "block", 12, reason=reason)
        assert answer_of(silent) is None
        assert outcome_of(answered(ANA, "agree", 11), silent) == OPEN


def test_everyone_answering_without_a_block_decides_before_the_deadline() -> None:
    answers = [answered(m, "agree", 11 + n) for n, m in enumerate(sorted(CELL))]
    assert outcome_of(*answers[:3]) == OPEN  # Di could still block
    assert outcome_of(*answers) == AGREED
    answers[1] = answered(sorted(CELL)[1], "stand-aside", 12)
    assert outcome_of(*answers) == AGREED


def test_stand_asides_count_toward_the_quorum_but_do_not_agree() -> None:
    everyone_aside = [answered(m, "stand-aside", 11 + n) for n, m in enumerate(sorted(CELL))]
    assert outcome_of(*everyone_aside) == NO_QUORUM  # final: nobody is left to agree
    one_agrees = [answered(ANA, "agree", 11), answered(BO, "stand-aside", 12)]
    assert outcome_of(*one_agrees, now=DEADLINE) == NO_QUORUM  # 2 of 4 is not more than half
    one_agrees.append(answered(CY, "stand-aside", 13))
    assert outcome_of(*one_agrees, now=DEADLINE) == AGREED  # 3 of 4 answered, one agreed


def test_too_few_answers_by_the_deadline_is_no_quorum() -> None:
    assert outcome_of(now=DEADLINE) == NO_QUORUM
    assert outcome_of(answered(ANA, "agree", 11), now=DEADLINE) == NO_QUORUM


def test_only_a_members_first_answer_counts() -> None:
    first, second = answered(BO, "agree", 11), answered(BO, "block", 12, reason="changed my mind")
    found = tally(the_proposal(), [second, first], CELL, T)  # in the group's order, whatever given
    assert [a.choice for a in found.counted] == ["agree"]
    assert [(i.answer.choice, i.why) for i in found.ignored] == [("block", "second_answer")]
    assert found.outcome == OPEN
    assert found.first_answer_of(BO) == answer_of(first)
    # A first answer that came too late still makes a later one a second answer.
    late = answered(CY, "agree", 13, sent_at=DEADLINE)
    again = answered(CY, "agree", 14, sent_at=DEADLINE - 1)
    found = tally(the_proposal(), [late, again], CELL, T)
    assert [i.why for i in found.ignored] == ["late", "second_answer"]


def test_an_answer_sealed_at_or_after_the_deadline_does_not_count() -> None:
    found = tally(the_proposal(), [answered(BO, "agree", 11, sent_at=DEADLINE)], CELL, DEADLINE)
    assert found.counted == () and [i.why for i in found.ignored] == ["late"]
    assert found.outcome == NO_QUORUM
    assert outcome_of(answered(BO, "agree", 11, sent_at=DEADLINE - 1)) == OPEN


def test_a_backdated_answer_after_a_message_past_the_deadline_is_late() -> None:
    # Cy's message is sealed past the deadline: in the group's order the
    # proposal closed there, whatever the answer's own sent_at claims.
    found = tally(
        the_proposal(),
        [
            answered(ANA, "agree", 11),
            answered(BO, "agree", 12),
            said(CY, 13, DEADLINE + 5),
            answered(DI, "block", 14, sent_at=DEADLINE - 60, reason="backdated"),
        ],
        CELL,
        DEADLINE - 3600,  # this reader's clock is behind: the order decides
    )
    assert found.closed and found.closed_by == 13
    assert [(i.answer.by, i.why) for i in found.ignored] == [(DI, "late")]
    assert found.outcome == NO_QUORUM  # 2 of 4 answered


def test_answers_from_members_the_proposal_was_not_put_to_do_not_count() -> None:
    found = tally(the_proposal(), [answered(EVE, "block", 11, reason="I joined later")], CELL, T)
    assert found.counted == () and [(i.answer.by, i.why) for i in found.ignored] == [
        (EVE, "not_asked")
    ]
    assert found.outcome == OPEN


def test_answers_to_another_proposal_or_before_it_do_not_count() -> None:
    other = answered(BO, "block", 11, reason="other", to=os.urandom(16))
    earlier = answered(CY, "block", 9, reason="before it existed")
    found = tally(the_proposal(), [other, earlier], CELL, T)
    assert found.counted == () and found.ignored == ()


def test_the_outcome_is_the_same_whenever_a_member_counts_after_the_close() -> None:
    answers = [answered(ANA, "agree", 11), answered(BO, "agree", 12), answered(CY, "agree", 13)]
    outcomes = {
        tally(the_proposal(), answers, CELL, now).outcome
        for now in (DEADLINE, DEADLINE + 1, DEADLINE + 30 * 86400)
    }
    assert outcomes == {AGREED}


def test_a_proposal_needs_a_deadline_10_minutes_to_30_days_after_it_was_sealed() -> None:
    assert proposal_of(proposed(deadline=T + 600)) is not None
    assert proposal_of(proposed(deadline=T + 30 * 86400)) is not None
    for bad in (T + 599, T + 30 * 86400 + 1, T - 1):
        assert proposal_of(proposed(deadline=bad)) is None
    for sealed in ({}, {"deadline": "tomorrow"}, {"deadline": True}):
        message = ReadMessage(PROPOSAL_ID, ANA, "x", T, 10, 1, proposal=sealed)  # type: ignore[arg-type]
        assert proposal_of(message) is None
    both = ReadMessage(
        PROPOSAL_ID, ANA, "x", T, 10, 1, proposal={"deadline": DEADLINE},
        answer={"proposal": PROPOSAL_RAW, "choice": "agree", "reason": None},
    )  # fmt: skip
    assert proposal_of(both) is None and answer_of(both) is None
    assert proposal_of(said(ANA, 10, T)) is None


def test_malformed_answers_are_no_answers() -> None:
    for sealed in (
        {"proposal": PROPOSAL_RAW, "choice": "maybe", "reason": None},
        {"proposal": PROPOSAL_RAW[:8], "choice": "agree", "reason": None},
        {"proposal": PROPOSAL_ID, "choice": "agree", "reason": None},
        {"proposal": PROPOSAL_RAW, "choice": "agree", "reason": 3},
    ):
        message = ReadMessage("m", BO, "x", T, 11, 1, answer=sealed)  # type: ignore[arg-type]
        assert answer_of(message) is None


def test_each_proposal_is_put_to_the_roster_of_its_key_period() -> None:
    # Eve joined in key period 2: she is asked the second proposal, not the first.
    first = proposed(cursor=10, epoch=1)
    second_id = os.urandom(16)
    second = ReadMessage(
        b32e(second_id), BO, "Print flyers", T + 100, 20, 2, proposal={"deadline": DEADLINE}
    )
    history = [
        first,
        answered(EVE, "agree", 21, to=PROPOSAL_RAW),
        second,
        answered(EVE, "agree", 22, to=second_id),
    ]
    found = tallies(history, {1: CELL, 2: CELL | {EVE}}, T)
    assert [t.proposal.text for t in found] == ["Move the meeting to Thursdays", "Print flyers"]
    assert [len(t.asked) for t in found] == [4, 5]
    assert [[i.why for i in t.ignored] for t in found] == [["not_asked"], []]
    assert [t.count("agree") for t in found] == [0, 1]


# --- What is kept, what is checked, how it is shown ---------------------------------


def test_proposals_and_answers_are_kept_in_a_groups_history_and_old_ones_load() -> None:
    record = GroupRecord(os.urandom(16))
    record.remember(proposed())
    record.remember(answered(BO, "block", 11, reason="no"))
    record.remember(said(CY, 12, T))
    value = record.to_value()
    again = GroupRecord.from_value(record.group_id, value, None)
    assert again.history == record.history
    kept_history = decode(value["history"])  # type: ignore[arg-type]
    plain = kept_history[2]  # type: ignore[index]
    assert "proposal" not in plain and "answer" not in plain  # type: ignore[operator]
    # A keystore from before kept the history as a list, and before that without epochs.
    old = {k: v for k, v in plain.items() if k != "epoch"}  # type: ignore[union-attr]
    value["history"] = [old]
    (kept,) = GroupRecord.from_value(record.group_id, value, None).history
    assert (kept.epoch, kept.proposal, kept.answer) == (None, None, None)


def test_a_message_of_mine_the_server_accepted_but_did_not_serve_is_caught() -> None:
    me = bytes([9]) * 32
    record = GroupRecord(os.urandom(16))
    record.sent["1"] = 4
    record.counters[f"1:{me.hex()}"] = 4
    check_mine_served(record, me)
    record.sent["1"] = 5  # accepted, and never served back
    with pytest.raises(VerificationFailed, match="missing from the group's events"):
        check_mine_served(record, me)


def test_read_and_watch_mark_proposals_and_answers() -> None:
    message = proposed()
    assert marked_text(message).startswith(f"[proposal {PROPOSAL_ID}, open until ")
    assert sealed_data(message) == {
        "proposal": {"proposal_id": PROPOSAL_ID, "deadline": DEADLINE},
        "answer": None,
    }
    block = answered(DI, "block", 12, reason="night shift")
    assert marked_text(block) == f"[answer: block to proposal {PROPOSAL_ID[:10]}] night shift"
    assert sealed_data(block)["answer"] == {
        "proposal_id": PROPOSAL_ID,
        "choice": "block",
        "reason": "night shift",
    }
    assert marked_text(said(CY, 13, T)) == "hello"
    assert sealed_data(said(CY, 13, T)) == {"proposal": None, "answer": None}


def test_a_deadline_is_typed_as_a_duration_of_10_minutes_to_30_days() -> None:
    assert deadline("48h") == 48 * HOUR
    assert deadline("1d12h") == 36 * HOUR
    assert deadline("10m") == 600 and deadline("30d") == 30 * 86400
    for bad in ("9m", "31d", "soon", "48", "-1h"):
        with pytest.raises(argparse.ArgumentTypeError):
            deadline(bad)
    check_deadline(600)
    with pytest.raises(ClientError) as refused:
        check_deadline(599)
    assert refused.value.code == "invalid_deadline"
