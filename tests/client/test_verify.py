"""Tests of client.verify and client.api: the client's own judgement of evidence.

Every statement here is built with crypto/ in the test; the Evidence JSON is
what a server would send. No server runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from client import api
from client.errors import ClientError, VerificationFailed
from client.invites import open_invite
from client.verify import evaluate_member
from client.vetting import normalize_safety_number
from crypto.chains import Admission, make_admission, make_revocation
from crypto.encoding import b32e, b64e
from crypto.invites import Invite, InviteCode, Join, make_invite, make_join
from crypto.keys import IdentityKey
from crypto.motions import make_split_motion, sign_motion, split_event_fields, split_terms
from crypto.network import DAY, Genesis, KeyBundle, Policy, make_genesis, make_key_bundle
from crypto.roster import (
    GroupCreation,
    GroupRules,
    RosterState,
    add_fields,
    apply,
    make_group,
    sign_event,
)
from crypto.sealing import KemPrivateKey, KemSuite
from crypto.statements import Statement, pack
from crypto.vetting import Verdict, make_verdict

T0 = 1_700_000_000
KEM = KemPrivateKey.generate(KemSuite.X25519).public_key().public_bytes()


@dataclass
class Person:
    key: IdentityKey
    bundle: KeyBundle
    chain: list[Admission] = field(default_factory=list)
    code: InviteCode | None = None
    invite: Invite | None = None
    join: Join | None = None
    proof: bytes | None = None
    admission: Admission | None = None
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def id(self) -> str:
        return b32e(self.key.member_id)


class World:
    """A network built statement by statement, as honest clients would."""

    def __init__(self, policy: Policy) -> None:
        self.founder_key = IdentityKey.generate()
        self.genesis: Genesis = make_genesis(self.founder_key, policy, T0)
        self.network = self.genesis.network_id
        self.founder = Person(self.founder_key, self._bundle(self.founder_key, T0))
        self.rules = GroupRules.of(self.genesis)
        self.cell = make_group(
            self.founder_key, self.network, T0, [self.founder.bundle], rules=self.rules
        )
        self.members = [self.founder]
        self.revocations: list[Any] = []
        self.log: list[Statement] = [self.cell.statement]
        self.roster: RosterState = self.cell.state

    def _bundle(self, key: IdentityKey, t: int) -> KeyBundle:
        return make_key_bundle(key, self.network, KemSuite.X25519.value, KEM, t, t + 365 * DAY)

    def newcomer(self, inviter: Person, t: int) -> Person:
        code = InviteCode.generate()
        invite = make_invite(inviter.key, self.network, code, self.cell.group_id, t, t + DAY)
        key = IdentityKey.generate()
        bundle = self._bundle(key, t + 1)
        join = make_join(key, self.network, code.lookup_id, bundle, t + 1)
        return Person(
            key, bundle, code=code, invite=invite, join=join, proof=code.prove(join.statement)
        )

    def admit(self, person: Person, issuer: Person, t: int) -> None:
        assert person.invite is not None and person.join is not None
        person.admission = make_admission(
            issuer.key,
            self.network,
            person.key.public_key(),
            self.cell.group_id,
            person.invite.lookup_id,
            person.join.statement.id,
            t,
        )
        person.chain = [person.admission, *issuer.chain]

    def vouch(self, person: Person, voter: Person, t: int, kind: str = "vouch") -> None:
        assert person.admission is not None
        person.verdicts.append(
            make_verdict(kind, voter.key, self.network, person.admission, t)  # type: ignore[arg-type]
        )

    def _event(self, event: Statement) -> None:
        self.roster = apply(self.roster, event, rules=self.rules)
        self.log.append(event)

    def add_to_roster(self, person: Person, by: Person, t: int) -> None:
        """What the adding member's client signs once the person's vetting is complete."""
        assert person.admission is not None
        vouches = [v.statement for v in person.verdicts if v.statement.type == "vouch"]
        fields = add_fields(person.bundle, person.admission, vouches)
        self._event(sign_event(by.key, self.network, self.roster, "add", t, fields))

    def split(self, moved: list[Person], t: int) -> GroupCreation:
        """Every moved member signs; the last one posts the split and the new cell's create."""
        motion = make_split_motion(
            moved[0].key, self.network, self.roster, [p.key.member_id for p in moved], t
        )
        signatures = [sign_motion(p.key, self.network, motion, t) for p in moved[1:]]
        fields = split_event_fields(motion, signatures)
        event = sign_event(moved[-1].key, self.network, self.roster, "split", t, fields)
        self._event(event)
        _, new_group = split_terms(motion)
        return make_group(
            moved[-1].key,
            self.network,
            t,
            [p.bundle for p in moved],
            origin=event.id,
            lines=self.roster.lines,
            group=new_group,
            rules=self.rules,
        )

    def evidence(
        self,
        person: Person,
        status: str = "pending",
        *,
        cell: GroupCreation | None = None,
        members: list[Person] | None = None,
        former: tuple[Person, ...] = (),
        history: tuple[list[Statement], ...] = (),
    ) -> dict[str, Any]:
        def wire(x: Any) -> Any:
            return None if x is None else x.statement.to_wire()

        def listed(m: Person) -> dict[str, Any]:
            return {
                "member_id": m.id,
                "chain": [a.statement.to_wire() for a in m.chain],
                "admitted_at": T0,
            }

        cell = cell or self.cell
        return {
            "member_id": person.id,
            "network_id": b32e(self.network),
            "cell_id": b32e(cell.group_id),
            "joined_at": T0,
            "status": status,
            "key_bundle": wire(person.bundle),
            "join": wire(person.join),
            "proof": None if person.proof is None else b64e(person.proof),
            "invite": wire(person.invite),
            "admission": wire(person.admission),
            "chain": [a.statement.to_wire() for a in person.chain[1:]],
            "verdicts": [v.statement.to_wire() for v in person.verdicts],
            "cell": {
                "group": cell.statement.to_wire(),
                "members": [listed(m) for m in (self.members if members is None else members)],
            },
            "former_members": [listed(m) for m in former],
            "cell_history": [[e.to_wire() for e in log] for log in history],
            "revocations": [r.statement.to_wire() for r in self.revocations],
        }

    def judge(self, person: Person, now: int, status: str = "pending", **kw: Any) -> Any:
        evidence = api.parse_evidence(self.evidence(person, status, **kw))
        return evaluate_member(self.genesis, evidence, now)


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


def _payload(world: World, person: Person, inviter: Person) -> dict[str, Any]:
    assert person.invite is not None
    return {
        "genesis": pack(world.genesis.statement),
        "name": "Riverside",
        "invite": pack(person.invite.statement),
        "chain": [pack(a.statement) for a in inviter.chain],
        "note": "",
    }


def test_invite_payload_opens_and_verifies() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    assert b.code is not None
    sealed = b.code.seal_payload(_payload(world, b, world.founder))
    genesis, name, invite = open_invite(b.code, sealed, T0 + 20)
    assert genesis.network_id == world.network and name == "Riverside"
    assert invite == b.invite


def test_invite_payload_for_another_code_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    c = world.newcomer(world.founder, T0 + 10)
    assert b.code is not None
    sealed = b.code.seal_payload(_payload(world, c, world.founder))  # c's invite, b's code
    with pytest.raises(VerificationFailed):
        open_invite(b.code, sealed, T0 + 20)


def test_expired_invite_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    assert b.code is not None
    sealed = b.code.seal_payload(_payload(world, b, world.founder))
    with pytest.raises(ClientError) as caught:
        open_invite(b.code, sealed, T0 + 10 + DAY)
    assert caught.value.code == "invite_expired"


def test_safety_numbers_compare_by_digits_only() -> None:
    assert normalize_safety_number("12345 67890-11111") == normalize_safety_number(
        "123456789011111"
    )


def test_login_message_binds_challenge_and_member() -> None:
    a = api.login_message(b"c" * 32, b"m" * 32)
    assert a != api.login_message(b"c" * 32, b"n" * 32)
    request = api.login_session(b"m" * 32, b"c" * 32, b"s" * 64)
    assert request.path == "/v1/auth/session" and not request.auth
    assert request.body is not None and request.body["member_id"] == b32e(b"m" * 32)


# After a split: vouchers who moved away, and members who moved.


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
