"""Builders for crypto tests: fixed keys, a network with members, fixed times.

Everything here is deterministic except the genesis nonce (make_genesis draws
it), so a test that needs fixed bytes builds its statements directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from crypto.chains import Admission, make_admission, make_verdict
from crypto.encoding import Value, encode
from crypto.invites import LOOKUP_ID_BYTES
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.network import DAY, GROUP_ID_BYTES, HOUR, Genesis, KeyBundle, Policy, make_genesis
from crypto.roster import GroupRules, add_fields
from crypto.statements import Statement, signing_context, verify_statement
from crypto.vetting import CellMember

T0 = 1_800_000_000
PROBATION = 10 * DAY
VETTING = 72 * HOUR
POLICY = Policy(vouches=2, probation_seconds=PROBATION, vetting_seconds=VETTING)


def fixed_bytes(label: str, n: int) -> bytes:
    return hashlib.shake_256(f"spokes crypto test {label}".encode()).digest(n)


def fixed_key(label: str) -> IdentityKey:
    return IdentityKey.from_private_bytes(fixed_bytes(f"key {label}", 32))


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def sign_raw(key: IdentityKey, context_type: str, fields: dict[str, Value]) -> tuple[bytes, bytes]:
    """Encode `fields` as they are and sign them: for bodies sign_statement won't make."""
    body = encode(fields)
    return body, key.sign(signing_context(context_type), body)


def header(
    key: IdentityKey, statement_type: str, network: bytes | None, time: int = T0
) -> dict[str, Value]:
    fields: dict[str, Value] = {
        "type": statement_type,
        "v": 1,
        "author": key.member_id,
        "key": key.public_key().raw,
        "time": time,
    }
    if network is not None:
        fields["network"] = network
    return fields


def reverify(statement: Statement, expected_type: str, network: bytes | None) -> Statement:
    return verify_statement(statement.body, statement.signature, expected_type, network)


@dataclass(frozen=True)
class Member:
    name: str
    key: IdentityKey
    chain: tuple[Admission, ...]

    @property
    def id(self) -> bytes:
        return self.key.member_id

    @property
    def public(self) -> IdentityPublicKey:
        return self.key.public_key()

    @property
    def admission(self) -> Admission:
        return self.chain[0]

    @property
    def ancestors(self) -> frozenset[bytes]:
        return frozenset(link.issuer for link in self.chain)

    def as_cell_member(self) -> CellMember:
        return CellMember(self.id, self.ancestors)


@dataclass
class World:
    """A network founded by the steward "F" at T0, with one cell."""

    policy: Policy = POLICY
    founder: str = "F"
    extra_stewards: tuple[str, ...] = ()
    genesis: Genesis = field(init=False)
    cell: bytes = field(init=False)
    members: dict[str, Member] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        founder = fixed_key(self.founder)
        extra = tuple(fixed_key(name).public_key() for name in self.extra_stewards)
        self.genesis = make_genesis(founder, self.policy, T0, extra)
        self.cell = fixed_bytes(f"cell of {self.founder}", GROUP_ID_BYTES)
        for name in (self.founder, *self.extra_stewards):
            self.members[name] = Member(name, fixed_key(name), ())

    @property
    def network(self) -> bytes:
        return self.genesis.network_id

    def admit(self, issuer: str, name: str, time: int, cell: bytes | None = None) -> Member:
        """`issuer` signs an admission certificate for a new member `name` at `time`."""
        by = self.members[issuer]
        subject = fixed_key(name)
        admission = self.certify(by.key, subject.public_key(), time, cell)
        member = Member(name, subject, (admission, *by.chain))
        self.members[name] = member
        return member

    def certify(
        self,
        issuer: IdentityKey,
        subject: IdentityPublicKey,
        time: int,
        cell: bytes | None = None,
        network: bytes | None = None,
    ) -> Admission:
        tag = subject.raw.hex() + str(time)
        return make_admission(
            issuer,
            network if network is not None else self.network,
            subject,
            cell if cell is not None else self.cell,
            fixed_bytes(f"invite {tag}", 16),
            fixed_bytes(f"join {tag}", 32),
            time,
        )

    def cell_members(self, *names: str) -> list[CellMember]:
        return [self.members[name].as_cell_member() for name in names]


def group_rules(
    *stewards: IdentityKey, cell_min: int = 2, cell_max: int = 12, vouches: int = 1
) -> GroupRules:
    """Roster rules for tests: these stewards may found cells; the vetting window is closed."""
    policy = Policy(cell_min=cell_min, cell_max=cell_max, vouches=vouches, vetting_seconds=0)
    return GroupRules(policy, frozenset(k.member_id for k in stewards))


def certified_add(
    by: IdentityKey,
    network: bytes,
    group: bytes,
    newcomer: KeyBundle,
    time: int,
    vouchers: tuple[IdentityKey, ...] = (),
) -> dict[str, Value]:
    """The fields of an `add` of `newcomer` to `group`, certified by `by`, vouched by `vouchers`."""
    subject = newcomer.statement.author.hex()
    admission = make_admission(
        by,
        network,
        newcomer.statement.author_key,
        group,
        fixed_bytes(f"invite {subject}", LOOKUP_ID_BYTES),
        fixed_bytes(f"join {subject}", 32),
        time,
    )
    vouches = [make_verdict("vouch", v, network, admission, time).statement for v in vouchers]
    return add_fields(newcomer, admission, vouches)
