"""Test helpers for tests/client: a network built statement by statement, as honest
clients would, and the Evidence JSON a server would send about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from client import api
from client.verify import evaluate_member
from crypto.chains import Admission, make_admission
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
from crypto.statements import Statement
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
