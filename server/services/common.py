"""What every membership service shares: error mapping, time, loading the genesis.

The rule: every statement a client sends is verified with crypto/ before any
row is written, and crypto's exceptions become ApiErrors with a code here, in
one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from crypto.chains import (
    Admission,
    parse_admission,
    verify_chain,
    verify_revocation_list,
)
from crypto.errors import ChainError, CryptoError, InvalidSignature, InvalidStatement, RuleViolation
from crypto.keys import IdentityPublicKey
from crypto.network import Genesis, verify_genesis
from crypto.statements import Statement, from_wire, verify_statement
from crypto.vetting import CellMember
from server.errors import ApiError, ErrorCode
from server.store import admissions as admission_store
from server.store import members as member_store
from server.store import networks as network_store
from server.store import revocations as revocation_store
from server.store.db import Connection
from server.store.members import MemberRow
from server.store.statements import StoredStatement

# Statements carry the author's clock; farther than this from ours, refused.
MAX_CLOCK_SKEW_S = 300

# crypto's RuleViolation codes, each with its HTTP status: the one place they
# become ErrorCodes. A code not listed here is answered as invalid_statement.
_RULE_STATUS = {
    ErrorCode.NOT_FROZEN: 409,
    ErrorCode.ALREADY_FROZEN: 409,
    ErrorCode.NOT_LAPSED: 409,
    ErrorCode.NOT_IN_REVIEW: 409,
    ErrorCode.NOT_ON_HOLD: 409,
    ErrorCode.ALREADY_VOUCHED: 409,
    ErrorCode.WRONG_ADMISSION: 400,
    ErrorCode.INVALID_EVENT: 400,
    ErrorCode.INVALID_MOTION: 400,
    ErrorCode.WRONG_GROUP: 400,
    ErrorCode.WRONG_ROSTER: 409,
    ErrorCode.STALE_HEAD: 409,
    ErrorCode.STALE_EPOCH: 409,
    ErrorCode.ALREADY_IN_GROUP: 409,
    ErrorCode.GROUP_FULL: 409,
    ErrorCode.QUORUM_NOT_REACHED: 409,
    ErrorCode.NOT_VETTED: 403,
    ErrorCode.WRONG_CELL: 400,
    ErrorCode.BELOW_MINIMUM: 409,
    ErrorCode.INVALID_ORIGIN: 400,
    ErrorCode.WRONG_MEMBER: 400,
    ErrorCode.ADMISSION_USED: 409,
    ErrorCode.KEY_MISMATCH: 400,
    ErrorCode.STALE_MOTION: 409,
    ErrorCode.HAS_SPOKESPERSON: 409,
    ErrorCode.NOT_SPOKESPERSON: 409,
    ErrorCode.NO_SPOKESPERSON: 409,
    ErrorCode.IN_PROBATION: 403,
    ErrorCode.STALE_ROSTER: 409,
    ErrorCode.INVALID_DELEGATION: 400,
    ErrorCode.INVALID_PROOF: 400,
}


def api_error(status: int, code: ErrorCode, message: str) -> ApiError:
    return ApiError(status, code, message)


def _rule_code(code: str) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INVALID_STATEMENT


@contextmanager
def crypto_errors() -> Iterator[None]:
    """Turn crypto/'s exceptions into 4xx ApiErrors with a code."""
    try:
        yield
    except InvalidSignature as exc:
        raise api_error(
            400, ErrorCode.INVALID_SIGNATURE, f"signature does not verify: {exc}"
        ) from None
    except InvalidStatement as exc:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, str(exc)) from None
    except ChainError as exc:
        raise api_error(403, ErrorCode.CHAIN_INVALID, str(exc)) from None
    except RuleViolation as exc:
        code = _rule_code(exc.code)
        raise api_error(_RULE_STATUS.get(code, 403), code, str(exc)) from None
    except CryptoError as exc:
        raise api_error(400, ErrorCode.INVALID_STATEMENT, str(exc)) from None


def statement_from(
    body: dict[str, Any], field: str, expected_type: str, network: bytes | None
) -> Statement:
    with crypto_errors():
        if field not in body:
            raise InvalidStatement(f"field {field!r} is required")
        return from_wire(body[field], expected_type, network)


def seconds(at: datetime) -> int:
    return int(at.timestamp())


def from_seconds(value: int) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def check_fresh(statement: Statement, now: datetime) -> None:
    if abs(statement.time - seconds(now)) > MAX_CLOCK_SKEW_S:
        raise api_error(
            400,
            ErrorCode.CLOCK_SKEW,
            f"the statement's time is more than {MAX_CLOCK_SKEW_S} s from the server's clock; "
            "check this device's clock",
        )


# A genesis never changes once stored (its id is its hash), so each process
# verifies it once; this holds nothing another instance would need.
_GENESES: dict[bytes, Genesis] = {}


async def load_genesis(conn: Connection, network_id: bytes) -> Genesis:
    cached = _GENESES.get(network_id)
    if cached is not None:
        return cached
    stored = await network_store.get_genesis(conn, network_id)
    if stored is None:
        raise api_error(404, ErrorCode.NOT_FOUND, "no such network")
    genesis = verify_genesis(stored.body, stored.sig, network_id)
    _GENESES[network_id] = genesis
    return genesis


def parse_stored(stored: StoredStatement, expected_type: str, network: bytes) -> Statement:
    # Rows came from us, but were checked only when written; re-checking costs
    # little and keeps a tampered row from being served as a valid fact.
    with crypto_errors():
        return verify_statement(stored.body, stored.sig, expected_type, network)


async def load_chain(conn: Connection, network: bytes, member_id: bytes) -> list[Admission]:
    return [
        parse_admission(parse_stored(s, "admission", network))
        for s in await admission_store.chain_of(conn, member_id)
    ]


async def load_revocations(conn: Connection, genesis: Genesis) -> dict[bytes, int]:
    stored = await revocation_store.revocation_chain(conn, genesis.network_id)
    with crypto_errors():
        return verify_revocation_list(
            genesis, [parse_stored(s, "revocation", genesis.network_id) for s in stored]
        ).revoked


async def verified_chain(
    conn: Connection, genesis: Genesis, member: MemberRow
) -> tuple[Admission, ...]:
    chain = await load_chain(conn, genesis.network_id, member.member_id)
    revoked = await load_revocations(conn, genesis)
    with crypto_errors():
        return verify_chain(genesis, IdentityPublicKey(member.identity_key), chain, revoked)


async def cell_view(
    conn: Connection, network: bytes, cell_id: bytes
) -> list[tuple[MemberRow, list[Admission]]]:
    """The cell's admitted members with their chains."""
    members = await member_store.cell_members(conn, cell_id)
    return [(m, await load_chain(conn, network, m.member_id)) for m in members]


def as_cell_members(view: list[tuple[MemberRow, list[Admission]]]) -> list[CellMember]:
    return [member for member, _ in with_membership_start(view, 0)]


def with_membership_start(
    view: list[tuple[MemberRow, list[Admission]]], genesis_time: int
) -> list[tuple[CellMember, int]]:
    """Each member with the signed time their membership began (their certificate's)."""
    return [
        (
            CellMember(m.member_id, frozenset(a.issuer for a in chain)),
            chain[0].statement.time if chain else genesis_time,
        )
        for m, chain in view
    ]


def member_status(member: MemberRow, genesis: Genesis, now: datetime) -> str:
    if member.revoked_at is not None:
        return "revoked"
    if member.blocked_at is not None:
        return "blocked"
    if member.admitted_at is None:
        return "pending"
    if member.is_steward:
        return "active"
    ends = seconds(member.admitted_at) + genesis.policy.probation_seconds
    return "probation" if seconds(now) < ends else "active"


def probation_ends(member: MemberRow, genesis: Genesis) -> int | None:
    if member.admitted_at is None:
        return None
    if member.is_steward:
        return seconds(member.admitted_at)
    return seconds(member.admitted_at) + genesis.policy.probation_seconds
