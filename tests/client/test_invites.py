"""Tests of client.invites: an invite payload opens and verifies only as made for its code."""

from __future__ import annotations

from typing import Any

import pytest

from client.errors import ClientError, VerificationFailed
from client.invites import open_invite
from crypto.network import DAY, Policy
from crypto.statements import pack
from tests.client.helpers import T0, Person, World


def _payload(world: World, person: Person, inviter: Person) -> dict[str, Any]:
    assert person.invite is not None
    return {
        "genesis": pack(world.genesis.statement),
        "name": "Riverside",
        "invite": pack(person.invite.statement),
        "chain": [pack(a.statement) for a in inviter.chain],
        "note": "",
    }


def test_invite_payload_opens_and_verifies() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    assert b.code is not None
    sealed = b.code.seal_payload(_payload(world, b, world.founder))
    genesis, name, invite = open_invite(b.code, sealed, T0 + 20)
    assert genesis.network_id == world.network and name == "Riverside"
    assert invite == b.invite


def test_invite_payload_for_another_code_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    c = world.newcomer(world.founder, T0 + 10)
    assert b.code is not None
    sealed = b.code.seal_payload(_payload(world, c, world.founder))  # c's invite, b's code
    with pytest.raises(VerificationFailed):
        open_invite(b.code, sealed, T0 + 20)


def test_expired_invite_is_refused() -> None:
    world = World(Policy())
    b = world.newcomer(world.founder, T0 + 10)
    assert b.code is not None
    sealed = b.code.seal_payload(_payload(world, b, world.founder))
    with pytest.raises(ClientError) as caught:
        open_invite(b.code, sealed, T0 + 10 + DAY)
    assert caught.value.code == "invite_expired"
