"""Tests of client.groups: the checks a client runs on what the server says about a group."""

from __future__ import annotations

import os

import pytest

from client.errors import VerificationFailed
from client.groups import (
    Equivocation,
    GroupRecord,
    ReadMessage,
    check_counter,
    check_head,
    check_seqs,
    epoch_infos,
    extend_log,
    lineage,
    new_epoch_record,
    readable_epochs,
)
from crypto import epochs, roster
from crypto.keys import IdentityKey
from crypto.network import KeyBundle, make_key_bundle
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import Statement
from tests.crypto.helpers import certified_add, group_rules

NETWORK = os.urandom(32)
NOW = 1_700_000_000
FOUNDER = IdentityKey.generate()
RULES = group_rules(FOUNDER)


def bundle(key: IdentityKey) -> KeyBundle:
    kem = KemPrivateKey.generate(KemSuite.X25519).public_key()
    return make_key_bundle(key, NETWORK, kem.suite.value, kem.public_bytes(), NOW, NOW + 10**6)


def grow(events: list[Statement], key: IdentityKey, op: str, fields: dict) -> list[Statement]:  # type: ignore[type-arg]
    state = roster.verify_log(events, rules=RULES)
    return [*events, roster.sign_event(key, NETWORK, state, op, NOW, fields)]


def epoch_fields(events: list[Statement]) -> dict:  # type: ignore[type-arg]
    state = roster.verify_log(events, rules=RULES)
    secret = epochs.new_epoch_secret()
    number = state.epoch + 1
    return {
        "epoch": number,
        "roster": state.roster_hash,
        "commitment": epochs.commitment(secret, state.group, number),
    }


@pytest.fixture
def log() -> tuple[IdentityKey, list[Statement]]:
    """A log of four events: create, epoch 1, add B, epoch 2."""
    founder, b = FOUNDER, IdentityKey.generate()
    events = [roster.make_group(founder, NETWORK, NOW, [bundle(founder)], rules=RULES).statement]
    events = grow(events, founder, "epoch", epoch_fields(events))
    group = events[0].fields["group"]
    assert isinstance(group, bytes)
    events = grow(events, founder, "add", certified_add(founder, NETWORK, group, bundle(b), NOW))
    events = grow(events, founder, "epoch", epoch_fields(events))
    return founder, events


def test_a_log_that_extends_what_was_verified_is_accepted(log) -> None:  # type: ignore[no-untyped-def]
    _, events = log
    state = extend_log(events[:2], events, rules=RULES)
    assert (state.seq, state.epoch, len(state.members)) == (3, 2, 2)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: e[:3],  # the newest event dropped after it was seen
        lambda e: [e[0], e[2], e[1], e[3]],  # reordered
        lambda e: [e[0], e[1], e[1], e[2], e[3]],  # an event replayed
    ],
)
def test_a_log_that_does_not_extend_what_was_verified_is_refused(log, tamper) -> None:  # type: ignore[no-untyped-def]
    _, events = log
    with pytest.raises((VerificationFailed, Equivocation)):
        extend_log(events, tamper(events), rules=RULES)


def test_a_forked_log_is_refused_even_when_it_verifies(log) -> None:  # type: ignore[no-untyped-def]
    founder, events = log
    fork = grow(events[:2], founder, "epoch", epoch_fields(events[:2]))  # another epoch 2
    assert roster.verify_log(fork, rules=RULES).seq == 2
    with pytest.raises(Equivocation) as alarm:
        extend_log(events[:3], fork, rules=RULES)
    assert alarm.value.code == "equivocation" and "fork" in str(alarm.value)


def test_a_fresh_client_refuses_a_log_with_a_gap(log) -> None:  # type: ignore[no-untyped-def]
    _, events = log
    with pytest.raises(VerificationFailed):
        extend_log([], [events[0], events[1], events[3]], rules=RULES)


def test_a_head_unknown_for_its_epoch_is_equivocation(log) -> None:  # type: ignore[no-untyped-def]
    founder, events = log
    infos = epoch_infos(events, rules=RULES)
    check_head(infos, 1, events[1].id)
    check_head(infos, 2, events[3].id)
    with pytest.raises(Equivocation) as caught:
        check_head(infos, 2, events[1].id)  # a real head, but of epoch 1
    assert caught.value.code == "equivocation"
    with pytest.raises(Equivocation):
        check_head(infos, 2, os.urandom(32))
    with pytest.raises(Equivocation):
        check_head(infos, 3, events[3].id)  # an epoch this log never started


def test_epoch_infos_record_who_each_epoch_covers(log) -> None:  # type: ignore[no-untyped-def]
    founder, events = log
    infos = epoch_infos(events, rules=RULES)
    assert sorted(infos) == [1, 2]
    assert list(infos[1].members) == [founder.member_id]
    assert len(infos[2].members) == 2


def test_counters_must_increase_within_an_epoch() -> None:
    last: dict[str, int] = {}
    alice, bob = os.urandom(32), os.urandom(32)
    check_counter(last, 1, alice, 0)
    check_counter(last, 1, alice, 2)  # a refused send leaves a gap; that is fine
    check_counter(last, 1, bob, 0)
    check_counter(last, 2, alice, 0)  # a new epoch starts a new chain
    with pytest.raises(VerificationFailed):
        check_counter(last, 1, alice, 1)  # reordered
    with pytest.raises(VerificationFailed):
        check_counter(last, 1, bob, 0)  # replayed


def test_events_must_follow_the_cursor_without_gaps() -> None:
    assert check_seqs(4, [5, 6, 7]) == 7
    assert check_seqs(4, []) == 4
    for seqs in ([6, 7], [5, 7], [5, 5], [4, 5]):
        with pytest.raises(VerificationFailed):
            check_seqs(4, seqs)


def test_a_group_record_round_trips_with_its_chains(log) -> None:  # type: ignore[no-untyped-def]
    founder, events = log
    group = roster.verify_log(events, rules=RULES).group
    keys = epochs.derive_epoch_keys(os.urandom(32), group, 2, [founder.member_id])
    record = GroupRecord(group, events, cursor=9, profile_epoch=2)
    record.epochs[2] = new_epoch_record(keys, founder.member_id)
    record.epochs[2].next_for_sending()
    record.epochs[2].keys.chains[founder.member_id].key_for(3)  # leaves skipped keys
    record.counters["2:ab"] = 3
    record.heads_seen[2] = {events[3].id}
    record.unreadable.add(1)
    record.profile_versions[founder.member_id] = 4
    record.remember(ReadMessage("id", "sender", "hi", NOW, 9))
    again = GroupRecord.from_value(group, record.to_value(), NETWORK)
    assert again.to_value() == record.to_value()
    assert again.profile_versions == {founder.member_id: 4}
    assert [e.id for e in again.events] == [e.id for e in events]
    assert again.epochs[2].sending is not None and again.epochs[2].sending.counter == 1
    assert sorted(again.epochs[2].keys.chains[founder.member_id].skipped) == [0, 1, 2]


def test_read_and_watch_keep_their_own_cursors_and_an_old_keystore_gets_defaults(log) -> None:  # type: ignore[no-untyped-def]
    _, events = log
    group = roster.verify_log(events, rules=RULES).group
    record = GroupRecord(group, events, cursor=9, read_cursor=4, watch_cursor=7)
    again = GroupRecord.from_value(group, record.to_value(), NETWORK)
    assert (again.cursor, again.read_cursor, again.watch_cursor) == (9, 4, 7)
    # A keystore written before the views had cursors: read has shown what was
    # absorbed, and a first watch starts from what is absorbed.
    old = record.to_value()
    del old["read_cursor"], old["watch_cursor"]
    again = GroupRecord.from_value(group, old, NETWORK)
    assert (again.read_cursor, again.watch_cursor) == (9, None)


def test_each_message_must_name_the_senders_previous_one() -> None:
    from client.groups import check_previous, previous_counter

    seen: dict[str, int] = {}
    sender = b"\x01" * 32
    assert previous_counter(seen, 1, sender) == -1
    check_previous(-1, previous_counter(seen, 1, sender), 1)  # the first message
    check_counter(seen, 1, sender, 0)
    check_previous(0, previous_counter(seen, 1, sender), 1)
    check_counter(seen, 1, sender, 3)  # counters 1 and 2 were refused sends: fine
    with pytest.raises(VerificationFailed, match="was dropped"):
        check_previous(2, previous_counter(seen, 1, sender), 1)  # it follows a message never seen


def test_a_left_cell_reads_no_message_naming_the_roster_after_the_split(log) -> None:  # type: ignore[no-untyped-def]
    _, events = log
    group = roster.verify_log(events, rules=RULES).group
    # As if the event at seq 2 had moved me out: the kept log ends there.
    record = GroupRecord(group, events[:3], left_at=2)
    readable = readable_epochs(record, rules=RULES)
    check_head(readable, 1, events[1].id)  # written before I left: read
    with pytest.raises(Equivocation):
        check_head(readable, 1, events[2].id)  # names the roster after I left
    assert events[2].id in epoch_infos(events[:3], rules=RULES)[1].heads  # uncut, it would be
    again = GroupRecord.from_value(group, record.to_value(), NETWORK)
    assert again.left_at == 2
    old = record.to_value()  # a keystore from before cells were kept after a split
    del old["left_at"]
    assert GroupRecord.from_value(group, old, NETWORK).left_at is None


def test_lineage_walks_back_only_through_cells_a_split_moved_me_out_of(log) -> None:  # type: ignore[no-untyped-def]
    founder, events = log
    old = roster.verify_log(events, rules=RULES).group
    made = roster.make_group(
        founder, NETWORK, NOW, [bundle(founder)], origin=events[-1].id, rules=RULES
    ).statement
    new = made.fields["group"]
    assert isinstance(new, bytes)
    left = GroupRecord(old, events, left_at=len(events) - 1)
    records = {old: left, new: GroupRecord(new, [made])}
    assert lineage(records, new) == [old, new]
    assert lineage(records, old) == [old]
    # A cell this client never kept as left (it never verified the split moved it) is no step.
    records[old] = GroupRecord(old, events)
    assert lineage(records, new) == [new]
