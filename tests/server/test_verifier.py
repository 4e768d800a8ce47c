"""Signatures checked in the helper process answer exactly as in-process checks do."""

from __future__ import annotations

import asyncio
import os

import pytest

from crypto.epochs import MessageKey
from crypto.keys import IdentityKey
from crypto.messages import Header, SealedMessage, seal_message
from crypto.network import Policy
from server.http.appkeys import WRITER_KEY
from server.verifier import Verifier, verify_batch
from tests.server.actors import Actor
from tests.server.group_actors import GroupView


def signed_by(key: IdentityKey, counter: int = 0) -> SealedMessage:
    header = Header(os.urandom(16), 1, key.member_id, counter)
    return seal_message(key, header, MessageKey(os.urandom(32), os.urandom(12)), {"text": "hi"})


def cases() -> list[tuple[SealedMessage, bytes]]:
    alice, bob = IdentityKey.generate(), IdentityKey.generate()
    good = signed_by(alice)
    flipped = bytearray(good.signature)
    flipped[5] ^= 1
    return [
        (good, alice.public_key().raw),
        (SealedMessage(good.header, good.ciphertext, bytes(flipped)), alice.public_key().raw),
        (good, bob.public_key().raw),  # another member's key
        (SealedMessage(good.header, good.ciphertext[:-1], good.signature), alice.public_key().raw),
        (signed_by(bob, 7), bob.public_key().raw),
    ]


def test_the_in_process_check_names_each_failure() -> None:
    answers = verify_batch(cases())
    assert answers[0] is None and answers[4] is None
    assert answers[1] is not None and answers[1][0] == "invalid_signature"
    assert answers[2] is not None and answers[2][0] == "invalid_statement"  # sender ≠ key's member
    assert answers[3] is not None and answers[3][0] == "invalid_statement"  # not a padded bucket


async def test_the_helper_answers_like_the_in_process_check_in_order() -> None:
    verifier = Verifier()
    await verifier.start()
    try:
        assert verifier.running
        batches = [cases() for _ in range(5)]
        answers = await asyncio.gather(*(verifier.verify(b) for b in batches))
        assert answers == [verify_batch(b) for b in batches]
        assert await verifier.verify([]) == []
    finally:
        await verifier.stop()
    assert not verifier.running


async def test_a_dead_helper_falls_back_to_checking_in_process() -> None:
    verifier = Verifier()
    await verifier.start()
    try:
        process = verifier._process
        assert process is not None
        process.kill()
        await asyncio.to_thread(process.join, 10)
        batch = cases()
        assert await verifier.verify(batch) == verify_batch(batch)
        assert not verifier.running
        assert await verifier.verify(batch) == verify_batch(batch)
    finally:
        await verifier.stop()


@pytest.mark.spokes_settings(signature_helper=True)
async def test_a_server_with_the_helper_accepts_good_and_refuses_forged_messages(
    server, http
) -> None:
    founder = Actor(http, server.url)
    assert (await founder.found(Policy())).status == 201
    view = GroupView(founder, founder.cell or b"")
    assert (await view.commit_epoch()).status == 201
    writer = server.app[WRITER_KEY]
    assert writer._verifier is not None and writer._verifier.running
    good = view.seal("hello")
    forged = SealedMessage(good.header, good.ciphertext, bytes(64))
    refused = await view.send_sealed(forged)
    assert (refused.status, refused.code) == (400, "invalid_signature")
    assert (await view.send_sealed(good)).status == 201
