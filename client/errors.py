"""The client's errors: one family, each with a machine code and a message for a person.

The rule it keeps: a message says what happened and what to do next; the
code is what scripts switch on (the `spokes` command prints both). Errors
the server sent keep the server's code.
"""

from __future__ import annotations

from collections.abc import Mapping

from crypto.errors import RuleViolation


class ClientError(Exception):
    """A failure the person running the client should read."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ServerError(ClientError):
    """The server answered with an error: its HTTP status and its code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


class FeedClosed(ClientError):
    """The live feed's socket closed; `close_code` is the WebSocket's (None if it just dropped)."""

    def __init__(self, close_code: int | None, message: str) -> None:
        super().__init__("feed_closed", message)
        self.close_code = close_code


class VerificationFailed(ClientError):
    """Something the server handed over does not verify: never trust or sign it."""

    def __init__(self, message: str) -> None:
        super().__init__("verification_failed", message)


def rule_refusal(exc: RuleViolation, hints: Mapping[str, str]) -> ClientError:
    """A rule book refusal worded for the person who asked (`hints` by code); nothing was
    signed."""
    hint = hints.get(exc.code, f"{exc}.")
    return ClientError(exc.code, f"{hint} Nothing was signed.")
