"""The keystore keeps the revocation chain a client verified (PROTOCOL §7)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from client.state import State
from crypto.encoding import decode, encode
from crypto.keys import IdentityKey
from crypto.sealing import KemPrivateKey


def test_known_revocations_survive_the_keystore() -> None:
    state = State(IdentityKey.generate(), KemPrivateKey.generate(), "http://x")
    assert State.from_value(decode(encode(state.to_value()))).revocations == ()
    known = replace(state, revocations=(b"\x01" * 32, b"\x02" * 32))
    assert State.from_value(decode(encode(known.to_value()))).revocations == known.revocations


def test_a_malformed_known_revocation_is_refused() -> None:
    state = State(IdentityKey.generate(), KemPrivateKey.generate(), "http://x")
    value = state.to_value()
    value["revocations"] = [b"\x01" * 31]
    with pytest.raises(ValueError, match="32 bytes"):
        State.from_value(decode(encode(value)))
