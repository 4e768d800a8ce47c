"""Tests of client.verify: the client's own judgement of evidence.

Every statement here is built with crypto/ in the test; the Evidence JSON is
what a server would send. No server runs.
"""

from __future__ import annotations

from typing import Any

import pytest

from client import api
from client.errors import ClientError, VerificationFailed
from client.verify import evaluate_member
from crypto.chains import make_admission, make_revocation
from crypto.invites import InviteCode
from crypto.keys import IdentityKey
from crypto.network import DAY, Policy
from crypto.roster import (
    GroupCreation,
    make_group,
)
from tests.client.helpers import T0, Person, World


def test_founder_is_active() -> None:
    world = World(Policy())
    report = world.judge(world.founder, T0 + 10)
    assert report.status == "active"


def test_newcomer_without_certificate_is_pending_whatever_the_server_says() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    report = world.judge(b, T0 + 20, status="active")
    assert report.status == "pending"
    assert report.admission is None


def test_founding_cell_of_one_admits_on_the_founders_certificate() -> None:
    world = World(Policy(vouches=2, probation_seconds=30 * DAY))
    b = world.newcomer(world.founder, T0 + 10)
    world.admit(b, world.founder, T0 + 20)
    report = world.judge(b, T0 + 30)
    assert report.status == "probation"
    assert report.admitted_at == T0 + 20
    assert report.probation_ends_at == T0 + 20 + 30 * DAY
    assert world.judge(b, T0 + 20 + 30 * DAY).status == "active"


def test_second_newcomer_needs_a_vouch_from_the_other_member() -> None:
    world = World(Policy(vouches=2))
    b = world.newcomer(world.founder, T0 + 10)
    world.admit(b, world.founder, T0 + 20)
    world.members.append(b)
    c = world.newcomer(world.founder, T0 + 30)
    world.admit(c, world.founder, T0 + 40)
    assert world.judge(c, T0 + 50).status == "pending"
    world.vouch(c, b, T0 + 60)
    assert world.judge(c, T0 + 70).status == "probation"
    # B's own admission still reads as complete once the cell has grown.
    world.members.append(c)
    assert world.judge(b, T0 + 80).status == "probation"


def test_branch_diversity_needs_a_voucher_outside_the_inviters_subtree() -> None:
    world = World(Policy(vouches=2, probation_seconds=0))
    f = world.founder
    b = world.newcomer(f, T0 + 10)
    world.admit(b, f, T0 + 20)
    world.members.append(b)
    d = world.newcomer(b, T0 + 30)
    world.admit(d, b, T0 + 40)
    world.vouch(d, f, T0 + 50)
    assert world.judge(d, T0 + 60).status == "active"
    world.members.append(d)
    e = world.newcomer(b, T0 + 70)
    world.admit(e, b, T0 + 80)
    world.vouch(e, d, T0 + 90)
    report = world.judge(e, T0 + 100)
    assert report.status == "pending"
    assert report.outcome.outside_needed
    world.vouch(e, f, T0 + 110)
    assert world.judge(e, T0 + 120).status == "active"


def test_block_before_completion_blocks() -> None:
    world = World(Policy(vouches=2))
    b = world.newcomer(world.founder, T0 + 10)
    world.admit(b, world.founder, T0 + 20)
    world.members.append(b)
    c = world.newcomer(world.founder, T0 + 30)
    world.admit(c, world.founder, T0 + 40)
    world.vouch(c, b, T0 + 50, kind="block")
    assert world.judge(c, T0 + 60).status == "blocked"


def test_revoked_member_is_shown_revoked() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    world.admit(b, world.founder, T0 + 20)
    world.revocations.append(
        make_revocation(world.founder_key, world.network, b.key.member_id, T0 + 30)
    )
    assert world.judge(b, T0 + 40).status == "revoked"


def _refused(world: World, person: Person) -> None:
    with pytest.raises(VerificationFailed) as caught:
        world.judge(person, T0 + 100)
    assert caught.value.code == "verification_failed"


def test_certificate_over_another_key_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    assert b.invite is not None and b.join is not None
    stranger = IdentityKey.generate()
    b.admission = make_admission(
        world.founder_key,
        world.network,
        stranger.public_key(),
        world.cell.group_id,
        b.invite.lookup_id,
        b.join.statement.id,
        T0 + 20,
    )
    b.chain = [b.admission]
    _refused(world, b)


def test_certificate_by_a_non_member_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    outsider = Person(IdentityKey.generate(), world.founder.bundle)
    world.admit(b, outsider, T0 + 20)
    _refused(world, b)


def test_proof_made_with_another_code_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    assert b.join is not None
    b.proof = InviteCode.generate().prove(b.join.statement)
    _refused(world, b)


def test_vouch_from_outside_the_cell_is_refused() -> None:
    world = World(Policy(vouches=1))
    b = world.newcomer(world.founder, T0 + 10)
    world.admit(b, world.founder, T0 + 20)
    stranger = Person(IdentityKey.generate(), world.founder.bundle)
    world.vouch(b, stranger, T0 + 30)
    _refused(world, b)


def test_evidence_from_another_network_is_refused() -> None:
    world, other = World(Policy()), World(Policy())
    b = other.newcomer(other.founder, T0 + 10)
    evidence = api.parse_evidence(other.evidence(b))
    with pytest.raises(VerificationFailed):
        evaluate_member(world.genesis, evidence, T0 + 20)


def test_chain_by_an_issuer_in_probation_is_refused() -> None:
    world = World(Policy(probation_seconds=30 * DAY))
    b = world.newcomer(world.founder, T0 + 10)
    world.admit(b, world.founder, T0 + 20)
    world.members.append(b)
    d = world.newcomer(b, T0 + 30)
    world.admit(d, b, T0 + 40)
    _refused(world, d)


def test_malformed_evidence_is_a_bad_response() -> None:
    world = World(Policy())
    data = world.evidence(world.founder)
    del data["cell"]
    with pytest.raises(ClientError) as caught:
        api.parse_evidence(data)
    assert caught.value.code == "bad_response"


def _split_cell() -> tuple[World, dict[str, Person], GroupCreation]:
    """F, B, C and D on one roster (D vouched by B and C); then B and C split away."""
    world = World(Policy(cell_min=2, vouches=3, probation_seconds=0))
    f = world.founder
    b = world.newcomer(f, T0 + 10)
    world.admit(b, f, T0 + 20)
    world.members.append(b)
    world.add_to_roster(b, f, T0 + 25)
    c = world.newcomer(f, T0 + 30)
    world.admit(c, f, T0 + 40)
    world.vouch(c, b, T0 + 45)
    world.members.append(c)
    world.add_to_roster(c, f, T0 + 50)
    d = world.newcomer(f, T0 + 60)
    world.admit(d, f, T0 + 70)
    world.vouch(d, b, T0 + 80)
    world.vouch(d, c, T0 + 90)
    world.members.append(d)
    world.add_to_roster(d, f, T0 + 95)
    before = world.judge(d, T0 + 99)
    assert before.status == "active" and before.admitted_at == T0 + 90
    new_cell = world.split([b, c], T0 + 100)
    world.members = [f, d]
    return world, {"F": f, "B": b, "C": c, "D": d}, new_cell


def test_vouches_of_members_split_away_count_as_the_cell_log_shows() -> None:
    world, p, _ = _split_cell()
    report = world.judge(p["D"], T0 + 200, former=(p["B"], p["C"]), history=(world.log,))
    assert report.status == "active" and report.admitted_at == T0 + 90
    assert set(report.outcome.vouchers) == {p[n].key.member_id for n in "FBC"}


def test_vouches_of_members_split_away_need_the_cell_log() -> None:
    world, p, _ = _split_cell()
    _refused_at(world, p["D"], former=(p["B"], p["C"]))


def test_a_former_member_the_log_never_shows_is_refused() -> None:
    world, p, _ = _split_cell()
    # X holds a real certificate for this cell but was never on its roster.
    x = world.newcomer(p["F"], T0 + 61)
    world.admit(x, p["F"], T0 + 62)
    world.vouch(p["D"], x, T0 + 85)
    former = (p["B"], p["C"], x)
    _refused_at(world, p["D"], former=former, history=(world.log,))


def test_a_vouch_after_the_voucher_left_is_refused() -> None:
    world, p, _ = _split_cell()
    e = world.newcomer(p["F"], T0 + 110)
    world.admit(e, p["F"], T0 + 120)
    world.vouch(e, p["B"], T0 + 130)  # B moved out at T0 + 100
    _refused_at(world, e, former=(p["B"],), history=(world.log,))


def test_a_member_moved_by_a_split_verifies_through_the_split_event() -> None:
    world, p, new_cell = _split_cell()
    report = world.judge(
        p["C"],
        T0 + 200,
        cell=new_cell,
        members=[p["B"], p["C"]],
        former=(p["F"],),
        history=(world.log,),
    )
    assert report.status == "active" and report.admitted_at == T0 + 45


def test_a_moved_member_without_the_split_in_the_log_is_refused() -> None:
    world, p, new_cell = _split_cell()
    before_split = world.log[:-1]
    kw: dict[str, Any] = {"cell": new_cell, "members": [p["B"], p["C"]], "former": (p["F"],)}
    _refused_at(world, p["C"], history=(before_split,), **kw)
    _refused_at(world, p["C"], **kw)
    # A create event naming an origin, signed by a cellmate, is not a split on its own.
    forged = make_group(
        p["B"].key,
        world.network,
        T0 + 100,
        [p["B"].bundle, p["C"].bundle],
        origin=bytes(32),
        rules=world.rules,
    )
    _refused_at(world, p["C"], **{**kw, "cell": forged, "history": (world.log,)})


def _refused_at(world: World, person: Person, **kw: Any) -> None:
    with pytest.raises(VerificationFailed) as caught:
        world.judge(person, T0 + 200, **kw)
    assert caught.value.code == "verification_failed"
