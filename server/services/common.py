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
from server.store import membership as store
from server.store.db import Connection

# Statements carry the author's clock; farther than this from ours, refused.
MAX_CLOCK_SKEW_S = 300

_RULE_STATUS = {
    "already_vouched": 409,
    "wrong_admission": 400,
    "invalid_event": 400,
    "invalid_motion": 400,
    "wrong_group": 400,
    "wrong_roster": 409,
    "stale_head": 409,
    "stale_epoch": 409,
    "already_in_group": 409,
    "group_full": 409,
    "quorum_not_reached": 409,
    "not_vetted": 403,
    "wrong_cell": 400,
    "below_minimum": 409,
    "invalid_origin": 400,
    "wrong_member": 400,
    "admission_used": 409,
    "key_mismatch": 400,
}


_KNOWN_CODES = frozenset(code.value for code in ErrorCode)


def api_error(status: int, code: str, message: str) -> ApiError:
    return ApiError(status, ErrorCode(code), message)


@contextmanager
def crypto_errors() -> Iterator[None]:
    """Turn crypto/'s exceptions into 4xx ApiErrors with a code."""
    try:
        yield
    except InvalidSignature as exc:
        raise api_error(400, "invalid_signature", f"signature does not verify: {exc}") from None
    except InvalidStatement as exc:
        raise api_error(400, "invalid_statement", str(exc)) from None
    except ChainError as exc:
        raise api_error(403, "chain_invalid", str(exc)) from None
    except RuleViolation as exc:
        code = exc.code if exc.code in _KNOWN_CODES else "invalid_statement"
        raise api_error(_RULE_STATUS.get(code, 403), code, str(exc)) from None
    except CryptoError as exc:
        raise api_error(400, "invalid_statement", str(exc)) from None


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
            "clock_skew",
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
    stored = await store.get_genesis(conn, network_id)
    if stored is None:
        raise api_error(404, "not_found", "no such network")
    genesis = verify_genesis(stored.body, stored.sig, network_id)
    _GENESES[network_id] = genesis
    return genesis


def parse_stored(stored: store.StoredStatement, expected_type: str, network: bytes) -> Statement:
    # Rows came from us, but were checked only when written; re-checking costs
    # little and keeps a tampered row from being served as a valid fact.
    with crypto_errors():
        return verify_statement(stored.body, stored.sig, expected_type, network)


async def load_chain(conn: Connection, network: bytes, member_id: bytes) -> list[Admission]:
    return [
        parse_admission(parse_stored(s, "admission", network))
        for s in await store.chain_of(conn, member_id)
    ]


async def load_revocations(conn: Connection, genesis: Genesis) -> dict[bytes, int]:
    stored = await store.revocation_chain(conn, genesis.network_id)
    with crypto_errors():
        return verify_revocation_list(
            genesis, [parse_stored(s, "revocation", genesis.network_id) for s in stored]
        ).revoked


async def verified_chain(
    conn: Connection, genesis: Genesis, member: store.MemberRow
) -> tuple[Admission, ...]:
    chain = await load_chain(conn, genesis.network_id, member.member_id)
    revoked = await load_revocations(conn, genesis)
    with crypto_errors():
        return verify_chain(genesis, IdentityPublicKey(member.identity_key), chain, revoked)


async def cell_view(
    conn: Connection, network: bytes, cell_id: bytes
) -> list[tuple[store.MemberRow, list[Admission]]]:
    """The cell's admitted members with their chains."""
    members = await store.cell_members(conn, cell_id)
    return [(m, await load_chain(conn, network, m.member_id)) for m in members]


def as_cell_members(view: list[tuple[store.MemberRow, list[Admission]]]) -> list[CellMember]:
    return [member for member, _ in with_membership_start(view, 0)]


def with_membership_start(
    view: list[tuple[store.MemberRow, list[Admission]]], genesis_time: int
) -> list[tuple[CellMember, int]]:
    """Each member with the signed time their membership began (their certificate's)."""
    return [
        (
            CellMember(m.member_id, frozenset(a.issuer for a in chain)),
            chain[0].statement.time if chain else genesis_time,
        )
        for m, chain in view
    ]


def member_status(member: store.MemberRow, genesis: Genesis, now: datetime) -> str:
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


def probation_ends(member: store.MemberRow, genesis: Genesis) -> int | None:
    if member.admitted_at is None:
        return None
    if member.is_steward:
        return seconds(member.admitted_at)
    return seconds(member.admitted_at) + genesis.policy.probation_seconds
