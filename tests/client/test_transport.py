"""Tests of client.transport without a server: how a failure reads to a person."""

from __future__ import annotations

import socket
import ssl

import aiohttp
import pytest

from client.transport import _unreachable

URL = "https://spokes.example"


def connector_error(os_error: OSError) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey("spokes.example", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, os_error)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "nothing is listening"),
        (connector_error(ConnectionRefusedError(111, "refused")), "nothing is listening"),
        (socket.gaierror(-2, "Name or service not known"), "host name is not found"),
        (TimeoutError(), "no answer within 30 s"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "certificate does not"),
        (ssl.SSLError(1, "wrong version number"), "TLS connection failed"),
        (ConnectionResetError(104, "reset"), "broke off"),
        (OSError(101, "Network is unreachable"), "no route"),
        (OSError(5, "something odd"), "the connection failed"),
    ],
)
def test_an_unreachable_server_is_named_with_a_reason_and_what_to_do(
    exc: BaseException, reason: str
) -> None:
    error = _unreachable(URL, exc)
    assert error.code == "server_unreachable"
    assert error.message.startswith(f"Can't reach the Spokes server at {URL}: ")
    assert reason in error.message
    assert "that the server is running" in error.message
    # Never a library's words: no exception class names, no errno text.
    for word in ("Error", "Errno", "ClientConnector", "refused", "reset"):
        assert word not in error.message
