"""The server's one error family: :class:`ApiError` with an HTTP status and a
machine-readable :class:`ErrorCode`.

Rule: the message is written for the person reading it and carries no debug
detail, secrets or other members' data; it goes to the client as is.
"""

from __future__ import annotations

from enum import Enum

import asyncpg

# What a database outage looks like from inside the server: the connection was
# refused or lost (OSError, asyncpg's connection and interface errors, "another
# operation is in progress" on a connection a restart cut), the server is
# shutting down or not yet accepting (class 57), no connection came in time
# (TimeoutError: every pool connection busy past Settings.db_acquire_timeout_s),
# or it ran out of a resource (class 53: disk full, out of memory, too many
# connections). Each rolled its transaction back whole, so the same request
# may come again: 503 with Retry-After.
DATABASE_OUTAGE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


# (str, Enum) rather than StrEnum: members compare equal to their wire strings
# while str() keeps naming the member, which reads better in test failures.
class ErrorCode(str, Enum):  # noqa: UP042
    """Machine codes clients switch on. Add members; never rename one."""

    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    INVALID_SIGNATURE = "invalid_signature"
    INVALID_STATEMENT = "invalid_statement"
    INTERNAL = "internal"
    # A message sent over the WebSocket whose batch the database failed: send it again.
    UNAVAILABLE = "unavailable"
    # Membership (docs/API.md).
    CLOCK_SKEW = "clock_skew"
    CHAIN_INVALID = "chain_invalid"
    NETWORK_EXISTS = "network_exists"
    LOGIN_FAILED = "login_failed"
    SESSION_EXPIRED = "session_expired"
    NOT_ADMITTED = "not_admitted"
    IN_PROBATION = "in_probation"
    QUOTA_EXHAUSTED = "quota_exhausted"
    CELL_FULL = "cell_full"
    INVITE_NOT_FOUND = "invite_not_found"
    INVITE_USED = "invite_used"
    INVITE_EXPIRED = "invite_expired"
    ALREADY_MEMBER = "already_member"
    NOT_A_MEMBER = "not_a_member"
    NOT_IN_CELL = "not_in_cell"
    NOT_INVITER = "not_inviter"
    KEY_MISMATCH = "key_mismatch"
    ALREADY_ADMITTED = "already_admitted"
    ALREADY_VOUCHED = "already_vouched"
    WRONG_ADMISSION = "wrong_admission"
    NO_ADMISSION = "no_admission"
    VETTING_CLOSED = "vetting_closed"
    REVOKED = "revoked"
    NOT_STEWARD = "not_steward"
    # Groups (part 2).
    INVALID_EVENT = "invalid_event"
    WRONG_GROUP = "wrong_group"
    STALE_HEAD = "stale_head"
    NOT_IN_GROUP = "not_in_group"
    ALREADY_IN_GROUP = "already_in_group"
    GROUP_FULL = "group_full"
    NOT_ALLOWED = "not_allowed"
    STALE_EPOCH = "stale_epoch"
    WRONG_ROSTER = "wrong_roster"
    REKEY_REQUIRED = "rekey_required"
    REPLAYED_COUNTER = "replayed_counter"
    INVALID_MOTION = "invalid_motion"
    QUORUM_NOT_REACHED = "quorum_not_reached"
    # Roster rules that every add, split and cell must keep (issue 7).
    NOT_VETTED = "not_vetted"
    WRONG_CELL = "wrong_cell"
    BELOW_MINIMUM = "below_minimum"
    INVALID_ORIGIN = "invalid_origin"
    WRONG_MEMBER = "wrong_member"
    ADMISSION_USED = "admission_used"
    # The revocation chain (issue 7, item 8).
    ALREADY_REVOKED = "already_revoked"
    NOT_REVOKED = "not_revoked"
    NOT_HOLDER = "not_holder"
    FROZEN = "frozen"
    NOT_FROZEN = "not_frozen"
    ALREADY_FROZEN = "already_frozen"
    NOT_LAPSED = "not_lapsed"
    SUSPENDED = "suspended"
    NOT_IN_REVIEW = "not_in_review"
    IN_REVIEW = "in_review"
    ON_HOLD = "on_hold"
    NOT_ON_HOLD = "not_on_hold"
    # Spokespeople (issue 10).
    STALE_MOTION = "stale_motion"
    HAS_SPOKESPERSON = "has_spokesperson"
    NOT_SPOKESPERSON = "not_spokesperson"
    NO_SPOKESPERSON = "no_spokesperson"
    STALE_ROSTER = "stale_roster"
    INVALID_DELEGATION = "invalid_delegation"
    INVALID_PROOF = "invalid_proof"
    # Mail notices (issue 11).
    MAIL_OFF = "mail_off"
    INVALID_ADDRESS = "invalid_address"


class ApiError(Exception):
    """An error the client is meant to see: ``{"error": {"code", "message"}}``."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code.value}, {self.message!r})"


def bad_request(message: str) -> ApiError:
    """400 bad_request, the usual answer to a malformed field."""
    return ApiError(400, ErrorCode.BAD_REQUEST, message)


def not_found(message: str = "not found") -> ApiError:
    """404 not_found; also the answer for "exists but not yours"."""
    return ApiError(404, ErrorCode.NOT_FOUND, message)
