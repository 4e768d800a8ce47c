"""Admission certificates, revocations, and certificate-chain verification.

A member's chain is their admission certificate, then their issuer's, and so
on until a certificate whose issuer is a steward named in the genesis. The
rule this module keeps: a key is trusted only if every link verifies, each
link's issuer is the previous link's subject, every issuer had passed
probation when they signed, and no link was signed by a member after their
revocation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from crypto.errors import ChainError, InvalidStatement
from crypto.invites import LOOKUP_ID_BYTES
from crypto.keys import IdentityKey, IdentityPublicKey
from crypto.network import GROUP_ID_BYTES, Genesis
from crypto.statements import Statement, get_bytes, sign_statement

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


@dataclass(frozen=True)
class Revocation:
    """A steward's statement that a member's key is no longer trusted."""

    statement: Statement
    subject: bytes


def make_revocation(steward: IdentityKey, network: bytes, subject: bytes, time: int) -> Revocation:
    return parse_revocation(
        sign_statement(steward, "revocation", network, time, {"subject": subject})
    )


def parse_revocation(statement: Statement, genesis: Genesis | None = None) -> Revocation:
    if statement.type != "revocation":
        raise InvalidStatement("not a revocation")
    if genesis is not None and statement.network != genesis.network_id:
        raise ChainError("a revocation belongs to another network")
    if genesis is not None and statement.author not in genesis.steward_ids:
        raise ChainError("only a steward can revoke a member")
    return Revocation(statement, get_bytes(statement.fields, "subject", 32))


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
