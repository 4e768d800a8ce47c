"""Tests of client.history: a group's history and a member's exposure, from signed logs alone.

Every log here is built with crypto/ and replayed by the rule book, as a
client holds it after syncing; nothing comes from a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from client import seats
from client.cli.history import entry_data, entry_line, exposure_data, exposure_text
from client.errors import ClientError
from client.history import (
    ENTRIES,
    HeldLog,
    Step,
    describe,
    exposure_of,
    group_history,
    replay,
    stays,
)
from client.profiles import Names
from crypto import councils
from crypto.chains import make_revocation
from crypto.elections import make_elect_motion
from crypto.encoding import Value, b32e
from crypto.epochs import commitment
from crypto.errors import RuleViolation
from crypto.exclusion import (
    expulsion_grounds,
    make_expel_motion,
    make_freeze_motion,
    make_self_revocation,
    open_reason,
)
from crypto.keys import IdentityKey, member_id_text
from crypto.motions import Motion, make_split_motion, sign_motion, split_event_fields, split_terms
from crypto.network import Policy
from crypto.roster import GroupRules, RosterState, apply, make_group, sign_event
from crypto.statements import Statement, pack
from tests.crypto import test_councils as tc
from tests.crypto.helpers import T0, certified_add, fixed_bytes, fixed_key
from tests.crypto.test_roster import NETWORK, bundle, kem_key

A, B, C, D, E = (fixed_key(f"history {name}") for name in "ABCDE")
# A and B are the stewards who found the cell; everyone else has an invite line.
RULES = GroupRules(
    Policy(cell_min=2, cell_max=12, vouches=1, vetting_seconds=0, probation_seconds=0),
    frozenset({A.member_id, B.member_id}),
)
GROUP = fixed_bytes("history cell", 16)


@dataclass
class Log:
    """A cell's log as its members' clients hold it, grown one signed event at a time."""

    state: RosterState
    events: list[Statement] = field(default_factory=list)
    clock: int = T0

    @classmethod
    def found(cls, *keys: IdentityKey, group: bytes = GROUP) -> Log:
        made = make_group(keys[0], NETWORK, T0, [bundle(k) for k in keys], group=group, rules=RULES)
        return cls(made.state, [made.statement])

    def tick(self) -> int:
        self.clock += 10
        return self.clock

    def post(self, by: IdentityKey, op: str, fields: dict[str, Value]) -> Statement:
        event = sign_event(by, NETWORK, self.state, op, self.tick(), fields)
        self.state = apply(self.state, event, rules=RULES)
        self.events.append(event)
        return event

    def add(self, by: IdentityKey, newcomer: IdentityKey, *vouchers: IdentityKey) -> None:
        fields = certified_add(
            by, NETWORK, self.state.group, bundle(newcomer), self.clock, vouchers
        )
        self.post(by, "add", fields)

    def rekey(self, by: IdentityKey) -> None:
        number = self.state.epoch + 1
        secret = fixed_bytes(f"history epoch {number}", 32)
        fields: dict[str, Value] = {
            "epoch": number,
            "roster": self.state.roster_hash,
            "commitment": commitment(secret, self.state.group, number),
        }
        self.post(by, "epoch", fields)

    def signed(self, motion: Motion, signers: tuple[IdentityKey, ...]) -> list[Statement]:
        return [sign_motion(k, NETWORK, motion, self.tick()) for k in signers]

    def expel(self, subject: IdentityKey, opener: IdentityKey, *signers: IdentityKey) -> Motion:
        state = self.state
        motion = make_expel_motion(
            opener, NETWORK, state, subject.member_id, "met the police", self.tick()
        )
        grounds = expulsion_grounds(state, motion, self.signed(motion, signers))
        revocation = make_revocation(
            signers[-1], NETWORK, subject.member_id, self.tick(), grounds=grounds
        )
        fields: dict[str, Value] = {
            "member": subject.member_id,
            "reason": "expelled",
            "revocation": pack(revocation.statement),
        }
        self.post(signers[-1], "remove", fields)
        return motion

    def revoke(self, subject: IdentityKey, by: IdentityKey, grounds: dict[str, Value]) -> None:
        revocation = make_revocation(by, NETWORK, subject.member_id, self.tick(), grounds=grounds)
        fields: dict[str, Value] = {
            "member": subject.member_id,
            "reason": "revoked",
            "revocation": pack(revocation.statement),
        }
        self.post(by, "remove", fields)

    def elect(self, who: IdentityKey, opener: IdentityKey, *signers: IdentityKey) -> None:
        motion = make_elect_motion(opener, NETWORK, self.state, who.member_id, self.tick())
        self.post(opener, "elect", split_event_fields(motion, self.signed(motion, signers)))

    def split(self, *moved: IdentityKey) -> tuple[Statement, bytes]:
        ids = [k.member_id for k in moved]
        motion = make_split_motion(moved[0], NETWORK, self.state, ids, self.tick())
        fields = split_event_fields(motion, self.signed(motion, moved[1:]))
        _, new_group = split_terms(motion)
        return self.post(moved[0], "split", fields), new_group


def grown() -> Log:
    """A and B found the cell; A admits C, C admits D, D admits E; C is elected."""
    log = Log.found(A, B)
    log.add(A, C, B)  # 1
    log.rekey(A)  # 2: key period 1
    log.add(C, D, A, B)  # 3
    log.add(D, E, A, B, C)  # 4
    log.rekey(B)  # 5: key period 2
    log.elect(C, A, B, C, D)  # 6
    return log


def held(log: Log, current: bool = True) -> HeldLog:
    return HeldLog(log.state.group, tuple(log.events), current)


# --- spokes log ------------------------------------------------------------------------


def test_the_history_names_each_event_with_who_it_is_about() -> None:
    log = grown()
    entries = group_history(log.events, RULES)
    assert [e.type for e in entries] == [
        "founded", "admitted", "rekey", "admitted", "admitted", "rekey", "elected",
    ]  # fmt: skip
    assert [e.seq for e in entries] == list(range(7))
    founded, admitted_c, rekey, admitted_d = entries[:4]
    assert set(founded.members) == {A.member_id, B.member_id} and founded.origin is None
    assert (admitted_c.subject, admitted_c.issuer, admitted_c.vouchers) == (
        C.member_id,
        A.member_id,
        (B.member_id,),
    )
    assert (admitted_d.subject, admitted_d.issuer) == (D.member_id, C.member_id)
    assert (rekey.type, rekey.subject, rekey.epoch) == ("rekey", None, 1)
    elected = entries[-1]
    assert elected.subject == C.member_id and elected.author == A.member_id
    assert elected.signers == (A.member_id, B.member_id, C.member_id, D.member_id)
    assert all(e.at == event.time for e, event in zip(entries, log.events, strict=True))


def test_an_expulsion_shows_the_signers_its_revocation_carries_and_the_reason_sealed_to_me() -> (
    None
):
    log = Log.found(A, B)
    log.add(A, C, B)
    log.add(C, D, A, B)
    motion = log.expel(D, A, B)  # A opens, B's signature completes: 2 of the 3 others
    log.rekey(A)

    def reader(key: IdentityKey):  # type: ignore[no-untyped-def]
        return lambda m: open_reason(m, key.member_id, kem_key(key.member_id.hex()))

    expelled = group_history(log.events, RULES, reader(C))[3]
    assert (expelled.type, expelled.subject, expelled.grounds) == (
        "expelled",
        D.member_id,
        "expelled",
    )
    assert expelled.signers == (A.member_id, B.member_id) and expelled.author == B.member_id
    assert expelled.motion == motion.id and expelled.reason == "met the police"
    # Without a reader, or for the subject, no reason is shown.
    assert group_history(log.events, RULES)[3].reason is None
    assert group_history(log.events, RULES, reader(D))[3].reason is None


def test_leaving_and_revocations_by_a_steward_or_in_advance_are_told_apart() -> None:
    log = Log.found(A, B)
    log.add(A, C, B)
    log.add(A, D, B, C)
    log.add(A, E, B, C, D)
    log.revoke(C, A, {})  # A is a steward
    inner = make_self_revocation(D, NETWORK, E.member_id, log.tick())
    log.revoke(D, E, {"grounds": "self", "self": pack(inner)})  # D's own, published by E
    log.post(E, "remove", {"member": E.member_id, "reason": "left"})
    steward, own, left = group_history(log.events, RULES)[-3:]
    assert (steward.type, steward.subject, steward.grounds, steward.signers) == (
        "revoked",
        C.member_id,
        "steward",
        (A.member_id,),
    )
    assert (own.type, own.subject, own.grounds, own.signers) == (
        "revoked",
        D.member_id,
        "self",
        (E.member_id,),
    )
    assert (left.type, left.subject, left.author) == ("left", E.member_id, E.member_id)


def test_a_split_shows_whom_it_moved_and_to_which_cell() -> None:
    log = grown()
    event, new_group = log.split(D, E)
    (split,) = group_history(log.events, RULES)[-1:]
    assert (split.type, split.group, split.members) == (
        "split",
        new_group,
        tuple(sorted([D.member_id, E.member_id])),
    )
    assert split.signers == (D.member_id, E.member_id) and split.author == D.member_id


def test_an_operation_the_table_does_not_describe_is_shown_by_its_name() -> None:
    log = grown()
    last = replay(log.events, RULES)[-1]  # C's election: a motion about C, with signatures
    carried = {k: last.event.fields[k] for k in ("motion", "signatures")}
    names = Names({C.member_id: "Cy", A.member_id: "Ann"})
    signers = (A.member_id, B.member_id, C.member_id, D.member_id)
    for op, type_, line in (
        ("census", "census", "census Cy, signed by Ann"),  # not in the table: its name
        ("freeze", "frozen", "Cy frozen, signed by Ann"),  # one line in the table
    ):
        assert (op in ENTRIES) == (op != type_)
        event = sign_event(A, NETWORK, last.before, op, last.event.time, carried)
        entry = describe(Step(event, last.before, last.after), RULES)
        assert (entry.type, entry.op, entry.subject, entry.signers) == (
            type_,
            op,
            C.member_id,
            signers,
        )
        assert line in entry_line(entry, names)
    # An event naming its member without a motion (a freeze that lapsed).
    lapsed = sign_event(
        C, NETWORK, last.before, "unfreeze", last.event.time, {"member": C.member_id}
    )
    entry = describe(Step(lapsed, last.before, last.after), RULES)
    assert (entry.type, entry.subject, entry.signers) == ("unfrozen", C.member_id, ())
    assert "Cy's freeze lapsed" in entry_line(entry, names)


def test_a_log_that_does_not_verify_gives_no_history() -> None:
    log = grown()
    with pytest.raises(RuleViolation):
        group_history([log.events[0], *log.events[2:]], RULES)


def test_each_entry_has_the_same_keys_and_reads_as_one_line() -> None:
    log = grown()
    names = Names({A.member_id: "Ann", C.member_id: "Cy"})
    entries = group_history(log.events, RULES)
    data = [entry_data(e, names) for e in entries]
    assert len({tuple(d) for d in data}) == 1
    assert data[1]["subject"] == member_id_text(C.member_id) and data[1]["subject_name"] == "Cy"
    assert data[1]["issuer"] == member_id_text(A.member_id)
    assert data[2]["subject"] is None and data[2]["epoch"] == 1
    lines = [entry_line(e, names) for e in entries]
    assert lines[1].startswith("[1] ") and "Cy admitted: certificate by Ann, vouched by" in lines[1]
    assert "key period 2 began" in lines[5]
    assert "Cy elected spokesperson" in lines[6]


# --- spokes exposure -------------------------------------------------------------------


def test_a_member_is_exposed_to_their_cell_from_their_admission_and_next_key_period() -> None:
    log = grown()
    found = exposure_of(C.member_id, [held(log)], RULES)
    (cell,) = found.groups
    assert (cell.stay.group, cell.stay.since.seq, cell.stay.since.type) == (GROUP, 1, "admitted")
    assert cell.stay.first_epoch is not None
    assert (cell.stay.first_epoch.epoch, cell.stay.first_epoch.seq) == (1, 2)
    assert [e.epoch for e in cell.stay.epochs] == [1, 2]
    assert (cell.members, cell.spokesperson, cell.seat_for) == (5, True, None)
    assert found.invited_by == A.member_id and not found.steward
    assert [(i.member, i.direct, i.invited_by) for i in found.invitees] == [
        (D.member_id, True, C.member_id),
        (E.member_id, False, D.member_id),
    ]
    assert all(i.groups == (GROUP,) and i.last_seen is None for i in found.invitees)
    # The spokesperson may sit in a council this client does not see: said, not guessed.
    assert any("level-1 council you don't sit in" in u for u in found.unknown)


def test_a_member_admitted_after_the_last_key_period_has_none_sealed_to_them() -> None:
    log = grown()
    found = exposure_of(E.member_id, [held(log)], RULES)
    (cell,) = found.groups
    assert cell.stay.since.seq == 4 and [e.epoch for e in cell.stay.epochs] == [2]
    log.add(A, fixed_key("history F"), B, C, D, E)
    late = exposure_of(fixed_key("history F").member_id, [held(log)], RULES)
    assert late.groups[0].stay.first_epoch is None
    assert "no key period sealed to them there yet" in exposure_text(late, Names({}))


def test_a_steward_was_invited_by_nobody() -> None:
    found = exposure_of(A.member_id, [held(grown())], RULES)
    assert found.invited_by is None and found.steward
    assert [i.member for i in found.invitees if i.direct] == [C.member_id]
    assert "Invited by: nobody: a steward" in exposure_text(found, Names({}))


def test_a_member_on_none_of_my_groups_is_refused_not_guessed() -> None:
    log = grown()
    log.expel(E, A, B, C)
    for outsider in (E, fixed_key("history stranger")):
        with pytest.raises(ClientError) as refused:
            exposure_of(outsider.member_id, [held(log)], RULES)
        assert refused.value.code == "not_in_group"
    # A cell a split moved me out of is not a group I share with anyone now.
    with pytest.raises(ClientError):
        exposure_of(C.member_id, [held(log, current=False)], RULES)


def test_after_a_split_the_old_cell_is_a_past_stay_and_invitees_are_followed_to_it() -> None:
    old = grown()
    split, new_group = old.split(D, E)
    lines = {m: old.state.lines[m] for m in (D.member_id, E.member_id)}
    made = make_group(
        D, NETWORK, old.tick(), [bundle(D), bundle(E)], origin=split.id, group=new_group,
        lines=lines, since={m: T0 for m in lines}, rules=RULES,
    )  # fmt: skip
    new = Log(made.state, [made.statement], old.clock)
    new.rekey(D)
    logs = [held(old, current=False), held(new)]

    found = exposure_of(D.member_id, logs, RULES)
    (cell,) = found.groups
    assert (cell.stay.group, cell.stay.since.type, cell.stay.since.origin) == (
        new_group,
        "founded",
        split.id,
    )
    (before,) = found.past
    assert before.group == GROUP and before.until is not None
    assert (before.since.seq, before.until.seq, before.until.type) == (3, 7, "split")
    assert [e.epoch for e in before.epochs] == [2]
    assert found.invited_by == C.member_id  # from the add in the old cell's log
    assert not any("split of a cell whose log you don't hold" in u for u in found.unknown)

    # Without the old cell's log: the issuer comes from the invite lines, and what
    # came before the split is said to be unknown.
    alone = exposure_of(E.member_id, [held(new)], RULES)
    assert alone.invited_by == D.member_id and alone.past == ()
    assert any("split of a cell whose log you don't hold" in u for u in alone.unknown)

    # Seen from the old cell, C's invitees went to the new cell by the split.
    data = exposure_data(exposure_of(C.member_id, [held(old)], RULES), Names({}))
    seen = {i["member_id"]: i for i in data["invitees"]}
    last = seen[member_id_text(D.member_id)]["last_seen"]
    assert seen[member_id_text(D.member_id)]["groups"] == []
    assert (last["type"], last["seq"]) == ("split", 7)
    assert last["moved_to"] is not None and len(last["moved_to"]) == 26


def test_exposure_data_keeps_its_keys_whatever_the_member_holds() -> None:
    log = grown()
    shapes = {
        tuple(exposure_data(exposure_of(k.member_id, [held(log)], RULES), Names({})))
        for k in (A, C, E)
    }
    assert len(shapes) == 1


def test_stays_follow_a_member_off_and_back_onto_a_roster() -> None:
    log = grown()
    log.post(E, "remove", {"member": E.member_id, "reason": "left"})
    log.rekey(A)
    (stay,) = stays(E.member_id, log.events, RULES)
    assert stay.until is not None and stay.until.type == "left"
    assert [e.epoch for e in stay.epochs] == [2]  # not 3: sealed after they left


# --- councils --------------------------------------------------------------------------


def council_of(cell: tc.Cell, elected: Statement, holder: IdentityKey) -> tuple[Log, HeldLog]:
    """A council founded on `cell`'s election of `holder`, as a log this client holds."""
    event, state = councils.make_council(
        holder, tc.NETWORK, cell.tick(), 1, tc.bundle(holder), cell.state.group,
        tc.first_seat(cell, elected, holder), rules=tc.RULES,
        group=fixed_bytes("history council", 16),
    )  # fmt: skip
    log = Log(state, [event], cell.clock)
    return log, HeldLog(state.group, (event,), True)


def test_a_council_seat_shows_as_a_group_with_its_seat_and_link_and_seat_events() -> None:
    one = tc.tracked(tc.A, tc.B, tc.C, name="history one")
    council, _ = council_of(one, one.elect(tc.A, tc.B, tc.B, tc.C), tc.A)
    two = tc.tracked(tc.D, tc.E, tc.F, name="history two")
    elected = two.elect(tc.D, tc.E, tc.E, tc.F)
    motion = councils.make_link_motion(tc.A, tc.NETWORK, council.state, two.state.group, two.tick())
    acceptance = councils.make_acceptance(
        tc.D, tc.NETWORK, council.state.group, two.state.group, two.tick()
    )
    fields = councils.link_fields(motion, [], acceptance, tc.first_seat(two, elected, tc.D))
    event = sign_event(tc.A, tc.NETWORK, council.state, "link", two.tick(), fields)
    council.state = apply(council.state, event, rules=tc.RULES)
    council.events.append(event)
    # Cell two recalls D and elects E: the seat changes hands.
    two.recall(tc.E, tc.E, tc.F)
    two.elect(tc.E, tc.F, tc.F, tc.E)
    found = seats.delegations([tc._create_of(two), *two.events], tc.RULES)
    (change,) = seats.seat_changes(found, council.state.seats[two.state.group].link) or []
    seat = councils.seat_fields(two.state.group, list(change.links), tc.bundle(tc.E))
    event = sign_event(tc.A, tc.NETWORK, council.state, "seat", two.tick(), seat)
    council.state = apply(council.state, event, rules=tc.RULES)
    council.events.append(event)

    founded, linked, seated = group_history(council.events, tc.RULES)
    assert (founded.type, founded.group, founded.members) == (
        "founded",
        one.state.group,
        (tc.A.member_id,),
    )
    assert (linked.type, linked.group, linked.subject) == (
        "linked",
        two.state.group,
        tc.D.member_id,
    )
    assert linked.signers == (tc.A.member_id,)
    assert (seated.type, seated.group, seated.subject, seated.members) == (
        "seat_changed",
        two.state.group,
        tc.E.member_id,
        (tc.D.member_id,),
    )

    # Seen by A, who holds cell one's seat: E shares only the council, for cell two.
    cell_one = HeldLog(one.state.group, (tc._create_of(one), *one.events), True)
    logs = [cell_one, HeldLog(council.state.group, tuple(council.events), True)]
    mine = exposure_of(tc.A.member_id, logs, tc.RULES)
    assert [(g.stay.kind, g.spokesperson, g.seat_for) for g in mine.groups] == [
        ("cell", True, None),
        ("council", False, one.state.group),
    ]
    assert not any("council you don't sit in" in u for u in mine.unknown)  # I sit in it
    theirs = exposure_of(tc.E.member_id, logs, tc.RULES)
    (shared,) = theirs.groups
    assert (shared.stay.since.type, shared.stay.since.seq, shared.seat_for) == (
        "seat_changed",
        2,
        two.state.group,
    )
    assert any(b32e(two.state.group) in u for u in theirs.unknown)  # cell two: not mine
    # D held that seat before E: on the council's roster from the link to the seat change.
    (held_seat,) = stays(tc.D.member_id, council.events, tc.RULES)
    assert held_seat.until is not None
    assert (held_seat.since.type, held_seat.until.type) == ("linked", "seat_changed")
    with pytest.raises(ClientError):
        exposure_of(tc.D.member_id, logs, tc.RULES)  # on no roster of mine now


# --- freezes ---------------------------------------------------------------------------


def test_a_frozen_member_is_shown_frozen_and_gets_no_key_period_while_frozen() -> None:
    log = Log.found(A, B)
    log.add(A, C, B)
    log.add(A, D, B, C)
    log.rekey(A)  # key period 1: all four
    motion = make_freeze_motion(A, NETWORK, log.state, D.member_id, "freeze", log.tick())
    fields: dict[str, Value] = {
        "member": D.member_id,
        **split_event_fields(motion, log.signed(motion, (B,))),
    }
    log.post(A, "freeze", fields)
    log.rekey(B)  # key period 2: not sealed to D
    frozen = group_history(log.events, RULES)[4]
    assert (frozen.type, frozen.subject, frozen.signers) == (
        "frozen",
        D.member_id,
        (A.member_id, B.member_id),
    )
    (cell,) = exposure_of(D.member_id, [held(log)], RULES).groups
    assert [e.epoch for e in cell.stay.epochs] == [1]
    assert cell.frozen_since == log.events[4].time
    assert "frozen since" in exposure_text(exposure_of(D.member_id, [held(log)], RULES), Names({}))
