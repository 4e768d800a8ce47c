"""Tests of client.api: requests built, answers parsed, without a server."""

from __future__ import annotations

from client import api
from crypto.encoding import b32e


def test_login_message_binds_challenge_and_member() -> None:
    a = api.login_message(b"c" * 32, b"m" * 32)
    assert a != api.login_message(b"c" * 32, b"n" * 32)
    request = api.login_session(b"m" * 32, b"c" * 32, b"s" * 64)
    assert request.path == "/v1/auth/session" and not request.auth
    assert request.body is not None and request.body["member_id"] == b32e(b"m" * 32)


# After a split: vouchers who moved away, and members who moved.
