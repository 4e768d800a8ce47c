"""Admission certificates, revocations, and certificate-chain verification.

A member's chain is their admission certificate, then their issuer's, and so
on until a certificate whose issuer is a steward named in the genesis. The
rule this module keeps: a key is trusted only if every link verifies, each
link's issuer is the previous link's subject, every issuer had passed
probation when they signed, and no link was signed by a member after their
revocation. Revocations form one hash chain per network
(`verify_revocation_list`): a list is trusted only from seq 0, link by link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from crypto.encoding import Value
from crypto.errors import ChainError, CryptoError, InvalidStatement
from crypto.invites import LOOKUP_ID_BYTES
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.network import GROUP_ID_BYTES, Genesis, Policy
from crypto.statements import Statement, get_bytes, get_int, sign_statement

MAX_CHAIN_LENGTH = 64


@dataclass(frozen=True)
class Admission:
    """An inviter's certificate: this key, seen in person, may join this cell."""

    statement: Statement
    subject: bytes
    subject_key: IdentityPublicKey
    cell: bytes
    invite: bytes
    join: bytes

    @property
    def issuer(self) -> bytes:
        return self.statement.author


def make_admission(
    issuer: IdentityKey,
    network: bytes,
    subject_key: IdentityPublicKey,
    cell: bytes,
    invite: bytes,
    join: bytes,
    time: int,
) -> Admission:
    statement = sign_statement(
        issuer,
        "admission",
        network,
        time,
        {
            "subject": subject_key.member_id,
            "subject_key": subject_key.raw,
            "cell": cell,
            "invite": invite,
            "join": join,
        },
    )
    return parse_admission(statement)


def parse_admission(statement: Statement) -> Admission:
    if statement.type != "admission":
        raise InvalidStatement("not an admission certificate")
    fields = statement.fields
    subject_key = IdentityPublicKey(get_bytes(fields, "subject_key", 32))
    subject = get_bytes(fields, "subject", 32)
    if subject != subject_key.member_id:
        raise InvalidStatement("certificate subject does not match its key")
    if subject == statement.author:
        raise InvalidStatement("no one admits themselves")
    return Admission(
        statement,
        subject,
        subject_key,
        get_bytes(fields, "cell", GROUP_ID_BYTES),
        get_bytes(fields, "invite", LOOKUP_ID_BYTES),
        get_bytes(fields, "join", 32),
    )


# The revocation list is one hash chain for the whole network (PROTOCOL §7,
# "The revocation chain"): each revocation names its position `seq` and the
# id of the one before it (`prev`; 32 zero bytes for seq 0), so a list's last
# id commits to every revocation before it, and a client that carries that
# head forward catches a server that shows it a shorter or another list.
NO_PREVIOUS = bytes(32)
RevocationCheck = Literal["holds", "missing", "forked"]


@dataclass(frozen=True)
class Revocation:
    """A statement that a member's key is no longer trusted, and on what grounds.

    `grounds` (crypto/exclusion.py): `steward` (a steward's word), `expelled`
    (an expulsion motion with its quorum's signatures) or `self` (the
    member's own revocation, published by the cellmate who held it).
    """

    statement: Statement
    subject: bytes
    seq: int = 0
    prev: bytes = NO_PREVIOUS
    grounds: str = "steward"


# What each kind of grounds adds to a revocation's fields.
_GROUNDS_FIELDS = {
    "steward": frozenset(),
    "expelled": frozenset({"grounds", "motion", "signatures", "proofs"}),
    "self": frozenset({"grounds", "self"}),
}
_REVOCATION_FIELDS = frozenset(
    {"type", "v", "author", "key", "time", "network", "subject", "seq", "prev"}
)


def make_revocation(
    steward: IdentityKey,
    network: bytes,
    subject: bytes,
    time: int,
    *,
    seq: int = 0,
    prev: bytes = NO_PREVIOUS,
    grounds: dict[str, Value] | None = None,
) -> Revocation:
    """The revocation at position `seq` of the network's list, after the one `prev` names.

    Without `grounds` it is a steward's; with them (crypto/exclusion.py) any
    member who holds the proof signs it."""
    fields: dict[str, Value] = {"subject": subject, "seq": seq, "prev": prev, **(grounds or {})}
    return parse_revocation(sign_statement(steward, "revocation", network, time, fields))


def parse_revocation(statement: Statement, genesis: Genesis | None = None) -> Revocation:
    """The revocation's shape; with `genesis`, its network and its grounds checked too."""
    if statement.type != "revocation":
        raise InvalidStatement("not a revocation")
    if genesis is not None and statement.network != genesis.network_id:
        raise ChainError("a revocation belongs to another network")
    fields = statement.fields
    grounds = fields.get("grounds", "steward")
    if not isinstance(grounds, str) or grounds not in _GROUNDS_FIELDS:
        raise InvalidStatement("a revocation states its grounds")
    if set(fields) - _REVOCATION_FIELDS != _GROUNDS_FIELDS[grounds]:
        raise InvalidStatement("a revocation has unknown or missing fields")
    revocation = Revocation(
        statement,
        get_bytes(fields, "subject", 32),
        get_int(fields, "seq"),
        get_bytes(fields, "prev", 32),
        grounds,
    )
    if genesis is not None:
        check_revocation(revocation, genesis.policy, genesis.steward_ids)
    return revocation


def check_revocation(revocation: Revocation, policy: Policy, stewards: frozenset[bytes]) -> None:
    """Raise ChainError unless the revocation proves its grounds (crypto/exclusion.py)."""
    from crypto.exclusion import check_grounds  # noqa: PLC0415 - exclusion.py imports this module
    from crypto.roster_state import GroupRules  # noqa: PLC0415 - roster_state imports network

    try:
        check_grounds(revocation.statement, revocation.subject, GroupRules(policy, stewards))
    except CryptoError as exc:
        if revocation.grounds == "steward":
            raise ChainError("only a steward can revoke a member") from exc
        raise ChainError(f"a revocation does not prove its grounds: {exc}") from exc


@dataclass(frozen=True)
class RevocationHead:
    """Where a revocation list ends: the last revocation's seq and statement id."""

    seq: int
    id: bytes

    def to_value(self) -> list[Value]:
        return [self.seq, self.id]

    @classmethod
    def from_value(cls, value: Value) -> RevocationHead:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], int)
            or isinstance(value[0], bool)
            or value[0] < 0
            or not isinstance(value[1], bytes)
            or len(value[1]) != 32
        ):
            raise InvalidStatement("a revocation head is [seq, 32-byte id]")
        return cls(value[0], value[1])


@dataclass(frozen=True)
class RevocationList:
    """A verified revocation chain, from seq 0 to its head."""

    revocations: tuple[Revocation, ...]

    @property
    def ids(self) -> tuple[bytes, ...]:
        return tuple(r.statement.id for r in self.revocations)

    @property
    def head(self) -> RevocationHead | None:
        if not self.revocations:
            return None
        return RevocationHead(len(self.revocations) - 1, self.revocations[-1].statement.id)

    @property
    def by_subject(self) -> dict[bytes, Revocation]:
        return {r.subject: r for r in self.revocations}

    @property
    def revoked(self) -> dict[bytes, int]:
        """Member id -> revocation time, for verify_chain."""
        return {r.subject: r.statement.time for r in self.revocations}

    def next_position(self) -> tuple[int, bytes]:
        """(seq, prev) of the revocation that would extend this list."""
        head = self.head
        return (0, NO_PREVIOUS) if head is None else (head.seq + 1, head.id)

    def check(self, head: RevocationHead) -> RevocationCheck:
        """Does this list hold `head` (one a cellmate or this client has seen)?

        "missing": the list ends before `head.seq` (a revocation withheld, or
        the list rolled back); "forked": another revocation stands at that seq.
        """
        if head.seq >= len(self.revocations):
            return "missing"
        return "holds" if self.revocations[head.seq].statement.id == head.id else "forked"

    def check_known(self, known: Sequence[bytes]) -> RevocationCheck:
        """Does this list begin with `known`, the ids a client verified before?"""
        if len(known) > len(self.revocations):
            return "missing"
        return "holds" if self.ids[: len(known)] == tuple(known) else "forked"


def verify_revocation_list(genesis: Genesis, statements: Sequence[Statement]) -> RevocationList:
    """Check that `statements`, in order, are the network's revocation chain from seq 0.

    Each is a revocation of this network by a steward of the genesis, stands
    at its own position (`seq` = its index), names the previous one's id as
    `prev` (NO_PREVIOUS for the first), and revokes a member no earlier
    revocation did. Raises ChainError naming the first broken rule.
    """
    revocations: list[Revocation] = []
    prev, subjects = NO_PREVIOUS, set()
    for position, statement in enumerate(statements):
        revocation = parse_revocation(statement, genesis)
        if revocation.seq != position:
            raise ChainError(
                f"the revocation list has a gap or a repeat: seq {revocation.seq} "
                f"stands at position {position}"
            )
        if revocation.prev != prev:
            raise ChainError(f"revocation {position} does not follow the one before it")
        if revocation.subject in subjects:
            raise ChainError(f"revocation {position} revokes a member already revoked")
        subjects.add(revocation.subject)
        prev = statement.id
        revocations.append(revocation)
    return RevocationList(tuple(revocations))


def revocation_times(revocations: Sequence[Revocation]) -> dict[bytes, int]:
    """Member id -> the earliest time they were revoked."""
    times: dict[bytes, int] = {}
    for revocation in revocations:
        at = revocation.statement.time
        times[revocation.subject] = min(at, times.get(revocation.subject, at))
    return times


def verify_chain(
    genesis: Genesis,
    member_key: IdentityPublicKey,
    chain: Sequence[Admission],
    revoked: Mapping[bytes, int],
) -> tuple[Admission, ...]:
    """Check that `member_key` is trusted by the network; return the chain.

    `chain[0]` admits the member, each next link admits the previous issuer,
    and the last link's issuer is a steward. A steward's own chain is empty.
    `revoked` maps member ids to revocation times (see revocation_times).
    Raises ChainError naming the first broken rule.
    """
    if len(chain) > MAX_CHAIN_LENGTH:
        raise ChainError("certificate chain is too long")
    if member_key.member_id in revoked:
        raise ChainError("this member's key has been revoked")
    if not chain:
        if member_key not in genesis.stewards:
            raise ChainError("no certificate chain leads from this key to the genesis")
        return ()
    expected = member_key
    for position, link in enumerate(chain):
        if link.statement.network != genesis.network_id:
            raise ChainError("a certificate belongs to another network")
        if link.subject_key != expected:
            raise ChainError("certificate chain is broken: a link admits someone else")
        issuer_revoked = revoked.get(link.issuer)
        if issuer_revoked is not None and link.statement.time >= issuer_revoked:
            raise ChainError("a certificate was signed by a revoked member")
        upper = chain[position + 1] if position + 1 < len(chain) else None
        if upper is None:
            if link.statement.author_key not in genesis.stewards:
                raise ChainError("certificate chain does not reach the genesis")
        else:
            _check_issuer_link(genesis, link, upper)
        expected = link.statement.author_key
    return tuple(chain)


def _check_issuer_link(genesis: Genesis, link: Admission, upper: Admission) -> None:
    # The issuer's own admission can't be later than what they signed, and
    # probation (counted from their certificate, a lower bound of their
    # admission) must have passed: the server checks the exact time.
    if upper.subject != link.issuer:
        raise ChainError("certificate chain is broken: an issuer is not the next subject")
    if link.statement.time < upper.statement.time + genesis.policy.probation_seconds:
        raise ChainError("a certificate was signed by a member still in probation")


@dataclass(frozen=True)
class Verdict:
    """A vouch or a block: one cell member's signed word on one admission."""

    statement: Statement
    subject: bytes
    cell: bytes
    admission: bytes

    @property
    def author(self) -> bytes:
        return self.statement.author


def make_verdict(
    kind: Literal["vouch", "block"],
    member: IdentityKey,
    network: bytes,
    admission: Admission,
    time: int,
) -> Verdict:
    statement = sign_statement(
        member,
        kind,
        network,
        time,
        {"subject": admission.subject, "cell": admission.cell, "admission": admission.statement.id},
    )
    return parse_verdict(statement)


def parse_verdict(statement: Statement) -> Verdict:
    if statement.type not in ("vouch", "block"):
        raise InvalidStatement("not a vouch or a block")
    fields = statement.fields
    return Verdict(
        statement,
        get_bytes(fields, "subject", 32),
        get_bytes(fields, "cell", GROUP_ID_BYTES),
        get_bytes(fields, "admission", 32),
    )
