"""What every membership service shares: error mapping, time, loading the genesis.

The rule: every statement a client sends is verified with crypto/ before any
row is written, and crypto's exceptions become ApiErrors with a code here, in
one place.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
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


# Every stored statement is verified again when read, so that a row changed
# in the database is never served as a valid fact. The same bytes verify the
# same way every time, so each process keeps the statements it has verified,
# keyed by a BLAKE2b digest of everything the check depends on (body,
# signature, expected type, network): a changed row has another digest and is
# verified afresh. Least recently used out first, bounded in entries and in
# bytes as `_entry_cost` counts them: at most 192 MiB a process, room for
# about 76,000 admission certificates kept parsed (2,640 B each). The
# pending lists of 1,000 cells of the 100,000-member bench fill touch 28,739
# certificates.
VERIFIED_CACHE_ENTRIES = 100_000
VERIFIED_CACHE_BYTES = 192 * 1024 * 1024
# What one entry costs besides its body (counted twice: as bytes, and decoded
# into the fields) and signature: the Statement, its fields dict, the key and
# the OrderedDict's slot. Measured with tracemalloc on the bench fill: 1,952 B
# an admission certificate (413 B body), 1,532 B a vouch (329 B), 4,664 B a
# roster event (2,460 B); this constant makes the count at least that.
_ENTRY_OVERHEAD_BYTES = 1100
# A certificate kept parsed as well: the Admission and its loaded public key,
# whose OpenSSL half tracemalloc can't see. Measured as RSS over 60,000 parsed
# certificates: about 645 B each.
_ADMISSION_OVERHEAD_BYTES = 650


class VerifiedCache:
    """Statements already verified, by the digest of their bytes; LRU, bounded twice.

    An admission certificate's entry also keeps it parsed (`parse_stored_admission`):
    the pending list and evidence read each cellmate's whole chain at every call.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[bytes, tuple[Statement, int, Admission | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Statement | None:
        entry = self._used(key)
        return None if entry is None else entry[0]

    def admission(self, key: bytes) -> Admission | None:
        """The certificate parsed, if it was cached so."""
        entry = self._used(key)
        return None if entry is None else entry[2]

    def _used(self, key: bytes) -> tuple[Statement, int, Admission | None] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, statement: Statement, admission: Admission | None = None) -> None:
        cost = _entry_cost(statement) + (0 if admission is None else _ADMISSION_OVERHEAD_BYTES)
        if cost > self.max_bytes:
            return
        known = self._entries.get(key)
        if known is not None:
            if admission is None or known[2] is not None:
                return
            self.size -= known[1]  # the same statement, now parsed too
        self._entries[key] = (statement, cost, admission)
        self._entries.move_to_end(key)
        self.size += cost
        while len(self._entries) > self.max_entries or self.size > self.max_bytes:
            _, (_, dropped, _) = self._entries.popitem(last=False)
            self.size -= dropped

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


def _entry_cost(statement: Statement) -> int:
    return 2 * len(statement.body) + len(statement.signature) + _ENTRY_OVERHEAD_BYTES


_VERIFIED = VerifiedCache(VERIFIED_CACHE_ENTRIES, VERIFIED_CACHE_BYTES)


def _verified_key(body: bytes, sig: bytes, expected_type: str, network: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=32, person=b"spokes-verified")
    for part in (body, sig, expected_type.encode(), network):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def parse_stored(stored: StoredStatement, expected_type: str, network: bytes) -> Statement:
    """A stored statement, verified: its signature checked once per process, by its bytes."""
    key = _verified_key(stored.body, stored.sig, expected_type, network)
    cached = _VERIFIED.get(key)
    if cached is not None:
        return cached
    with crypto_errors():
        statement = verify_statement(stored.body, stored.sig, expected_type, network)
    _VERIFIED.put(key, statement)
    return statement


def parse_stored_admission(stored: StoredStatement, network: bytes) -> Admission:
    """A stored admission certificate, verified and parsed once per process (`parse_stored`)."""
    key = _verified_key(stored.body, stored.sig, "admission", network)
    parsed = _VERIFIED.admission(key)
    if parsed is not None:
        return parsed
    with crypto_errors():
        admission = parse_admission(parse_stored(stored, "admission", network))
    _VERIFIED.put(key, admission.statement, admission)
    return admission


async def load_chain(conn: Connection, network: bytes, member_id: bytes) -> list[Admission]:
    return (await load_chains(conn, network, [member_id]))[member_id]


async def load_chains(
    conn: Connection, network: bytes, member_ids: Sequence[bytes]
) -> dict[bytes, list[Admission]]:
    """Each member's verified chain, nearest certificate first, from one query."""
    stored = await admission_store.chains_of(conn, member_ids)
    return {
        member_id: [parse_stored_admission(s, network) for s in chain]
        for member_id, chain in stored.items()
    }


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
    chains = await load_chains(conn, network, [m.member_id for m in members])
    return [(m, chains[m.member_id]) for m in members]


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
