"""Tests of client.feed without a server: which losses a watch survives, and its backoff."""

from __future__ import annotations

import pytest

from client.errors import ClientError, FeedClosed, ServerError, VerificationFailed
from client.feed import BACKOFF_FIRST_S, BACKOFF_MAX_S, MOVED, Backoff, resumable


@pytest.mark.parametrize(
    "lost",
    [
        ClientError("server_unreachable", "connection refused"),
        FeedClosed(1001, "server shutting down"),
        FeedClosed(1006, "dropped"),
        FeedClosed(None, "dropped"),
        FeedClosed(4401, "session ended"),
        ClientError("session_expired", "log in again"),
        ServerError(503, "unavailable", "the database is down"),
        ServerError(429, "rate_limited", "slow down"),
        ClientError(MOVED, "a split moved me: follow it"),
    ],
)
def test_a_lost_or_restarting_server_is_connected_to_again(lost: ClientError) -> None:
    assert resumable(lost)


@pytest.mark.parametrize(
    "refused",
    [
        VerificationFailed("the server lied"),
        ClientError("equivocation", "a fork"),
        ServerError(401, "unauthorized", "login refused"),
        ServerError(403, "forbidden", "revoked"),
        FeedClosed(4403, "no longer a member"),
        FeedClosed(1003, "text only"),
        ClientError("not_found", "no such group"),
    ],
)
def test_a_refusal_ends_the_watch(refused: ClientError) -> None:
    assert not resumable(refused)


def test_backoff_doubles_to_its_ceiling_with_jitter_and_starts_again() -> None:
    backoff = Backoff()
    waits = [backoff.next() for _ in range(8)]
    ceilings = [min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**n) for n in range(8)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert ceilings[-1] == BACKOFF_MAX_S
    backoff.reset()
    assert backoff.next() <= BACKOFF_FIRST_S
