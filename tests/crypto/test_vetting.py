"""Tests of crypto.vetting: vouches, blocks, and when a newcomer is admitted."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import pytest

from crypto.chains import Admission
from crypto.encoding import Value
from crypto.errors import InvalidStatement, RuleViolation
from crypto.motions import make_split_motion, sign_motion, split_event_fields
from crypto.network import KeyBundle, Policy, make_key_bundle
from crypto.roster import GroupRules, apply, make_group, sign_event
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import Statement, sign_statement
from crypto.vetting import (
    CellMember,
    Tenure,
    Verdict,
    check_verdict,
    evaluate,
    former_members_for_vetting,
    make_verdict,
    members_for_vetting,
    parse_verdict,
    roster_history,
)
from tests.crypto.helpers import (
    PROBATION,
    T0,
    VETTING,
    World,
    certified_add,
    fixed_bytes,
    fixed_key,
    reverify,
)

T1 = T0 + 1000
T2 = T1 + PROBATION
TA = T2 + PROBATION  # when the newcomer's certificate is signed


@pytest.fixture
def world() -> World:
    """F (steward) invited B and G; B invited D. All four are in F's cell."""
    w = World(policy=Policy(vouches=2, probation_seconds=PROBATION, vetting_seconds=VETTING))
    w.admit("F", "B", T1)
    w.admit("F", "G", T1)
    w.admit("B", "D", T2)
    return w


def verdict(
    world: World, kind: Literal["vouch", "block"], name: str, admission: Admission, at: int
) -> Verdict:
    return make_verdict(kind, world.members[name].key, world.network, admission, at)


def vouch(world: World, name: str, admission: Admission, at: int) -> Verdict:
    return verdict(world, "vouch", name, admission, at)


def block(world: World, name: str, admission: Admission, at: int) -> Verdict:
    return verdict(world, "block", name, admission, at)


# How many vouches


def test_a_small_split_cell_does_not_admit_on_every_members_vouch() -> None:
    # The review's one-person split: in a cell of one, a confederate would
    # have needed only the informant's certificate.
    world = World()
    e = world.admit("F", "E", TA)
    alone = world.cell_members("F")
    outcome = evaluate(world.policy, e.admission, [], alone, founding=False, now=TA + VETTING)
    assert (outcome.status, outcome.needed) == ("vetting", 2)


def test_founder_alone_admits_the_first_member_with_their_certificate() -> None:
    world = World()
    e = world.admit("F", "E", TA)
    outcome = evaluate(
        world.policy, e.admission, [], world.cell_members("F"), founding=True, now=TA
    )
    assert outcome.status == "admitted"
    assert outcome.needed == 1
    assert outcome.vouchers == (world.members["F"].id,)
    assert outcome.completes_at == TA


def test_small_founding_cell_needs_every_member() -> None:
    world = World(policy=Policy(vouches=3, probation_seconds=0))
    world.admit("F", "B", T1)
    e = world.admit("F", "E", TA)
    members = world.cell_members("F", "B")
    waiting = evaluate(world.policy, e.admission, [], members, founding=True, now=TA + 10 * VETTING)
    assert (waiting.status, waiting.needed, waiting.completes_at) == ("vetting", 2, None)
    done = evaluate(
        world.policy,
        e.admission,
        [vouch(world, "B", e.admission, TA + 5)],
        members,
        founding=True,
        now=TA + 5,
    )
    assert (done.status, done.completes_at) == ("admitted", TA + 5)


def test_inviters_certificate_counts_as_their_vouch(world: World) -> None:
    world.policy = Policy(vouches=1, probation_seconds=PROBATION, vetting_seconds=VETTING)
    e = world.admit("F", "E", TA)
    members = world.cell_members("F", "B", "D")
    outcome = evaluate(world.policy, e.admission, [], members, founding=True, now=TA + VETTING)
    assert outcome.status == "admitted"
    assert outcome.vouchers == (world.members["F"].id,)
    assert outcome.outside_needed is False  # everyone is in F's subtree


def test_newcomer_without_a_certificate_awaits_admission(world: World) -> None:
    outcome = evaluate(
        world.policy, None, [], world.cell_members("F", "B", "D"), founding=True, now=TA
    )
    assert outcome.status == "awaiting-admission"
    assert outcome.needed == 2
    assert outcome.completes_at is None


# Who may vouch


def test_vouch_from_someone_outside_the_cell_is_refused(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D")  # G is not in this cell
    stray = vouch(world, "G", e.admission, TA + 1)
    with pytest.raises(RuleViolation) as caught:
        check_verdict(stray, e.admission, members)
    assert caught.value.code == "not_in_cell"
    with pytest.raises(RuleViolation) as caught:
        evaluate(world.policy, e.admission, [stray], members, founding=True, now=TA + 1)
    assert caught.value.code == "not_in_cell"


def test_vouch_for_another_cell_is_refused(world: World) -> None:
    e = world.admit("B", "E", TA)
    fields: dict[str, Value] = {
        "subject": e.id,
        "cell": fixed_bytes("another cell", 16),
        "admission": e.admission.statement.id,
    }
    elsewhere = parse_verdict(
        sign_statement(world.members["D"].key, "vouch", world.network, TA + 1, fields)
    )
    with pytest.raises(RuleViolation) as caught:
        check_verdict(elsewhere, e.admission, world.cell_members("F", "B", "D"))
    assert caught.value.code == "not_in_cell"


def test_vouch_for_another_admission_is_refused(world: World) -> None:
    e = world.admit("B", "E", TA)
    h = world.admit("B", "H", TA)
    with pytest.raises(RuleViolation) as caught:
        check_verdict(
            vouch(world, "D", h.admission, TA + 1), e.admission, world.cell_members("F", "B", "D")
        )
    assert caught.value.code == "wrong_admission"


def test_vouch_for_an_earlier_certificate_of_the_same_newcomer_is_refused(world: World) -> None:
    first = world.certify(world.members["B"].key, world.members["D"].public, TA)
    second = world.certify(world.members["B"].key, world.members["D"].public, TA + 1)
    with pytest.raises(RuleViolation) as caught:
        check_verdict(vouch(world, "F", first, TA + 2), second, world.cell_members("F", "B"))
    assert caught.value.code == "wrong_admission"


def test_inviter_cannot_vouch_a_second_time(world: World) -> None:
    e = world.admit("B", "E", TA)
    with pytest.raises(RuleViolation) as caught:
        check_verdict(
            vouch(world, "B", e.admission, TA + 1), e.admission, world.cell_members("F", "B", "D")
        )
    assert caught.value.code == "already_vouched"


def test_inviter_may_still_block(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D")
    check_verdict(block(world, "B", e.admission, TA + 1), e.admission, members)


def test_certificate_from_outside_the_cell_is_refused(world: World) -> None:
    e = world.admit("G", "E", TA)
    with pytest.raises(RuleViolation) as caught:
        evaluate(
            world.policy, e.admission, [], world.cell_members("F", "B", "D"), founding=True, now=TA
        )
    assert caught.value.code == "not_in_cell"


# Branch diversity


def test_vouches_from_the_inviters_own_subtree_alone_do_not_admit(world: World) -> None:
    # Cell {F, B, D}: B invited D, so D stands in B's subtree; F does not.
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D")
    outcome = evaluate(
        world.policy,
        e.admission,
        [vouch(world, "D", e.admission, TA + 10)],
        members,
        founding=True,
        now=TA + 10 * VETTING,
    )
    assert outcome.status == "vetting"
    assert outcome.outside_needed is True
    assert outcome.completes_at is None
    assert set(outcome.vouchers) == {world.members["B"].id, world.members["D"].id}


def test_vouch_from_outside_the_inviters_subtree_completes_the_admission(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D")
    verdicts = [vouch(world, "D", e.admission, TA + 10), vouch(world, "F", e.admission, TA + 20)]
    # Every member has vouched, so there is no need to wait for the window.
    before = evaluate(world.policy, e.admission, verdicts, members, founding=True, now=TA + 19)
    assert before.status == "vetting" and before.completes_at == TA + 20
    after = evaluate(world.policy, e.admission, verdicts, members, founding=True, now=TA + 20)
    assert after.status == "admitted"


def test_outsider_vouch_alone_meets_the_count_but_waits_for_the_window(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    verdicts = [vouch(world, "G", e.admission, TA + 10)]
    # The window opens with the first vouch from outside the inviter's subtree
    # (a time the inviter can't date back), not with the certificate.
    outcome = evaluate(
        world.policy, e.admission, verdicts, members, founding=True, now=TA + 10 + VETTING - 1
    )
    assert outcome.status == "vetting"
    assert outcome.completes_at == TA + 10 + VETTING
    outcome = evaluate(
        world.policy, e.admission, verdicts, members, founding=True, now=TA + 10 + VETTING
    )
    assert outcome.status == "admitted"


def test_a_late_outside_vouch_opens_the_window_then(world: World) -> None:
    # D is in the inviter's subtree; G, from outside it, vouches late: the
    # window runs from G's vouch, whatever time the certificate names.
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    late = TA + VETTING + 100
    verdicts = [vouch(world, "D", e.admission, TA + 1), vouch(world, "G", e.admission, late)]
    ends = late + VETTING
    assert (
        evaluate(world.policy, e.admission, verdicts, members, founding=True, now=ends - 1).status
        == "vetting"
    )
    outcome = evaluate(world.policy, e.admission, verdicts, members, founding=True, now=ends)
    assert (outcome.status, outcome.completes_at) == ("admitted", ends)


def test_no_outsider_needed_when_the_whole_cell_is_in_the_inviters_subtree(world: World) -> None:
    e = world.admit("F", "E", TA)
    members = world.cell_members("F", "B", "D")
    verdicts = [vouch(world, "D", e.admission, TA + 1)]
    outcome = evaluate(
        world.policy, e.admission, verdicts, members, founding=True, now=TA + VETTING
    )
    assert outcome.outside_needed is False
    assert outcome.status == "admitted"


# Blocks and timing


def test_block_before_completion_blocks(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    verdicts = [
        vouch(world, "G", e.admission, TA + 10),
        block(world, "D", e.admission, TA + VETTING - 1),
    ]
    outcome = evaluate(
        world.policy, e.admission, verdicts, members, founding=True, now=TA + 2 * VETTING
    )
    assert outcome.status == "blocked"
    assert outcome.blocked_by == (world.members["D"].id,)


def test_block_with_no_vouches_blocks(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    outcome = evaluate(
        world.policy,
        e.admission,
        [block(world, "F", e.admission, TA + 1)],
        members,
        founding=True,
        now=TA + 1,
    )
    assert outcome.status == "blocked"


def test_block_after_completion_is_ignored(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    verdicts = [
        vouch(world, "G", e.admission, TA + 10),
        block(world, "D", e.admission, TA + 10 + VETTING),
    ]
    outcome = evaluate(
        world.policy, e.admission, verdicts, members, founding=True, now=TA + 2 * VETTING
    )
    assert outcome.status == "admitted"
    assert outcome.blocked_by == ()


def test_block_after_everyone_vouched_is_ignored(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D")
    verdicts = [
        vouch(world, "D", e.admission, TA + 1),
        vouch(world, "F", e.admission, TA + 2),
        block(world, "D", e.admission, TA + 3),
    ]
    assert (
        evaluate(world.policy, e.admission, verdicts, members, founding=True, now=TA + 3).status
        == "admitted"
    )


def test_completes_only_after_the_window_unless_everyone_vouched(world: World) -> None:
    e = world.admit("F", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    some = [vouch(world, "B", e.admission, TA + 1)]
    outcome = evaluate(
        world.policy, e.admission, some, members, founding=True, now=TA + VETTING - 1
    )
    assert (outcome.status, outcome.completes_at) == ("vetting", TA + VETTING)
    everyone = some + [
        vouch(world, "D", e.admission, TA + 2),
        vouch(world, "G", e.admission, TA + 3),
    ]
    outcome = evaluate(world.policy, e.admission, everyone, members, founding=True, now=TA + 3)
    assert (outcome.status, outcome.completes_at) == ("admitted", TA + 3)


def test_vouch_dated_before_the_certificate_counts_from_the_certificate(world: World) -> None:
    e = world.admit("B", "E", TA)
    members = world.cell_members("F", "B", "D")
    verdicts = [vouch(world, "D", e.admission, TA - 50), vouch(world, "F", e.admission, TA - 40)]
    outcome = evaluate(world.policy, e.admission, verdicts, members, founding=True, now=TA)
    assert (outcome.status, outcome.completes_at) == ("admitted", TA)


def test_repeated_vouches_by_one_member_count_once(world: World) -> None:
    e = world.admit("F", "E", TA)
    members = world.cell_members("F", "B", "D", "G")
    verdicts = [vouch(world, "B", e.admission, TA + t) for t in (1, 2, 3)]
    outcome = evaluate(
        world.policy, e.admission, verdicts, members, founding=True, now=TA + VETTING
    )
    assert len(outcome.vouchers) == 2
    assert outcome.status == "admitted"


# Verdict statements


def test_verdict_round_trips_and_names_the_admission(world: World) -> None:
    e = world.admit("B", "E", TA)
    kinds: tuple[Literal["vouch", "block"], ...] = ("vouch", "block")
    for kind in kinds:
        made = verdict(world, kind, "D", e.admission, TA + 1)
        again = parse_verdict(reverify(made.statement, kind, world.network))
        assert again.subject == e.id
        assert again.cell == world.cell
        assert again.admission == e.admission.statement.id
        assert again.author == world.members["D"].id


def test_other_statements_are_not_verdicts(world: World) -> None:
    with pytest.raises(InvalidStatement):
        parse_verdict(sign_statement(world.members["D"].key, "admission", world.network, TA, {}))


def test_cell_members_know_their_invite_line(world: World) -> None:
    d: CellMember = world.members["D"].as_cell_member()
    assert d.in_subtree_of(world.members["B"].id)
    assert d.in_subtree_of(world.members["F"].id)
    assert d.in_subtree_of(d.member_id)
    assert not d.in_subtree_of(world.members["G"].id)


def test_members_who_joined_after_the_certificate_do_not_count_unless_they_spoke(
    world: World,
) -> None:
    e = world.admit("F", "E", TA)
    late = world.admit("F", "L", TA + 10)  # admitted after E's certificate was signed
    current = [
        (
            world.members[n].as_cell_member(),
            world.members[n].chain[0].statement.time if world.members[n].chain else T0,
        )
        for n in ("F", "B", "D")
    ]
    current.append((late.as_cell_member(), late.chain[0].statement.time))
    counted = members_for_vetting(e.admission, current, [])
    assert {m.member_id for m in counted} == {
        world.members[n].key.member_id for n in ("F", "B", "D")
    }
    spoke = members_for_vetting(e.admission, current, [block(world, "L", e.admission, TA + 20)])
    assert late.key.member_id in {m.member_id for m in spoke}
    assert members_for_vetting(None, current, []) == [m for m, _ in current]


# Members who have left the cell: counted only as its roster log shows.


def small_cells(world: World) -> GroupRules:
    """The world's rules with cells of two allowed, so that four members can split."""
    return GroupRules(replace(world.policy, cell_min=2), world.genesis.steward_ids)


def _log_of_split_cell(world: World) -> tuple[list[Statement], Admission]:
    """F's cell: F, then B added at T1, G and K at T1 + 5; B and G split away at TA + 50.

    E's certificate (by B) is signed at TA, between the add and the split.
    """

    def bundle(name: str) -> KeyBundle:
        kem = KemPrivateKey.generate(KemSuite.X25519).public_key().public_bytes()
        key = fixed_key(name)
        return make_key_bundle(key, world.network, KemSuite.X25519.value, kem, T0, T0 + 10**8)

    f, b, g, k = (fixed_key(n) for n in "FBGK")
    rules = small_cells(world)
    creation = make_group(f, world.network, T1, [bundle("F")], group=world.cell, rules=rules)
    log = [creation.statement]
    state = creation.state
    # B joins at T1, G and K (who stays with F) at T1 + 5, each vouched by every member.
    for name, at, vouchers in (("B", T1, ()), ("G", T1 + 5, (b,)), ("K", T1 + 5, (b, g))):
        fields = certified_add(f, world.network, world.cell, bundle(name), at, vouchers)
        log.append(sign_event(f, world.network, state, "add", at, fields))
        state = apply(state, log[-1], rules=rules)
    motion = make_split_motion(b, world.network, state, [b.member_id, g.member_id], TA + 40)
    fields = split_event_fields(motion, [sign_motion(g, world.network, motion, TA + 45)])
    log.append(sign_event(g, world.network, state, "split", TA + 50, fields))
    return log, world.admit("B", "E", TA).admission


def test_roster_history_notes_each_members_tenure_and_the_split(world: World) -> None:
    log, _ = _log_of_split_cell(world)
    history = roster_history(log, rules=small_cells(world))
    f, b, g = (world.members[n].key.member_id for n in "FBG")
    assert history.tenures[f] == (Tenure(T1, None),)
    assert history.tenures[b] == (Tenure(T1, TA + 50),)
    assert history.tenures[g] == (Tenure(T1 + 5, TA + 50),)
    (split,) = history.splits.values()
    assert split.moved == {b, g} and split.event_id == log[-1].id
    assert history.member_at(g, TA) and not history.member_at(g, TA + 51)
    assert not history.member_at(g, T1)


def test_a_former_member_counts_only_while_the_log_shows_them(world: World) -> None:
    log, admission = _log_of_split_cell(world)
    history = roster_history(log, rules=small_cells(world))
    f, b, g = (world.members[n] for n in "FBG")
    former = [CellMember(m.key.member_id, frozenset()) for m in (b, g)]
    in_time = [vouch(world, "G", admission, TA + 10)]
    counted = former_members_for_vetting(admission, former, in_time, history)
    # B issued the certificate while on the roster; G vouched while on it.
    assert [m.member_id for m in counted] == [b.key.member_id, g.key.member_id]
    too_late = [vouch(world, "G", admission, TA + 60)]
    counted = former_members_for_vetting(admission, former, too_late, history)
    assert [m.member_id for m in counted] == [b.key.member_id]
    members = [CellMember(f.key.member_id, frozenset()), *counted]
    with pytest.raises(RuleViolation) as info:
        evaluate(world.policy, admission, too_late, members, TA + VETTING, founding=True)
    assert info.value.code == "not_in_cell"


def test_a_member_the_log_never_shows_is_not_counted(world: World) -> None:
    log, admission = _log_of_split_cell(world)
    history = roster_history(log, rules=small_cells(world))
    d = world.members["D"].key.member_id  # admitted by certificate, never on the roster
    stranger = CellMember(d, frozenset())
    verdicts = [vouch(world, "D", admission, TA + 10)]
    assert former_members_for_vetting(admission, [stranger], verdicts, history) == []
    # Without the cell's log nobody who left counts.
    b = CellMember(world.members["B"].key.member_id, frozenset())
    assert former_members_for_vetting(admission, [b], [], history) == [b]
    assert former_members_for_vetting(admission, [b], [], None) == []
