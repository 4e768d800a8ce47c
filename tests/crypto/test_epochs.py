"""Tests of crypto.epochs: epoch secrets sealed to members, and forward-secret sender chains."""

from __future__ import annotations

import pytest

from crypto.epochs import (
    MAX_SKIPPED_KEYS,
    SECRET_BYTES,
    MessageKey,
    SenderChain,
    chain_step,
    commitment,
    derive_epoch_keys,
    new_epoch_secret,
    open_secret,
    seal_info,
    seal_secret,
)
from crypto.errors import DecryptionFailed, RuleViolation
from crypto.sealing import KemPrivateKey, KemSuite, seal
from tests.crypto.helpers import fixed_bytes

GROUP = fixed_bytes("group", 16)
OTHER_GROUP = fixed_bytes("other group", 16)
ROSTER = fixed_bytes("roster hash", 32)
OTHER_ROSTER = fixed_bytes("other roster hash", 32)
ALICE = fixed_bytes("alice id", 32)
BOB = fixed_bytes("bob id", 32)
SECRET = fixed_bytes("epoch secret", SECRET_BYTES)
EPOCH = 3
KEY_SIZES = {KemSuite.MLKEM768_X25519: 96, KemSuite.X25519: 32}


@pytest.fixture(scope="module", params=list(KemSuite), ids=lambda s: s.name)
def suite_key(request: pytest.FixtureRequest) -> KemPrivateKey:
    suite: KemSuite = request.param
    return KemPrivateKey.from_private_bytes(
        suite, fixed_bytes(f"kem {suite.name}", KEY_SIZES[suite])
    )


@pytest.fixture(scope="module")
def key() -> KemPrivateKey:
    return KemPrivateKey.from_private_bytes(KemSuite.X25519, fixed_bytes("kem x25519", 32))


@pytest.fixture(scope="module")
def box(key: KemPrivateKey) -> bytes:
    return sealed_to(key)


def sealed_to(key: KemPrivateKey, secret: bytes = SECRET) -> bytes:
    public = key.public_key().public_bytes()
    return seal_secret(secret, key.suite.value, public, GROUP, EPOCH, ROSTER, ALICE)


def opened(
    key: KemPrivateKey,
    box: bytes,
    *,
    group: bytes = GROUP,
    epoch: int = EPOCH,
    roster: bytes = ROSTER,
    recipient: bytes = ALICE,
    expected: bytes | None = None,
) -> bytes:
    if expected is None:
        expected = commitment(SECRET, group, epoch)
    return open_secret(key, box, group, epoch, roster, recipient, expected)


def fresh_chain(sender: bytes = ALICE) -> SenderChain:
    return derive_epoch_keys(SECRET, GROUP, EPOCH, [ALICE, BOB]).chains[sender]


def in_order_keys(n: int) -> list[MessageKey]:
    chain = fresh_chain()
    return [chain.next_for_sending()[1] for _ in range(n)]


# Sealing the epoch secret to each member


def test_sealed_secret_opens_for_its_recipient(suite_key: KemPrivateKey) -> None:
    box = sealed_to(suite_key)
    assert box[0] == suite_key.suite.code
    assert opened(suite_key, box) == SECRET


def test_new_epoch_secrets_are_fresh_32_bytes() -> None:
    first, second = new_epoch_secret(), new_epoch_secret()
    assert len(first) == len(second) == SECRET_BYTES
    assert first != second


def test_seal_info_binds_label_group_epoch_roster_and_recipient() -> None:
    info = seal_info(GROUP, EPOCH, ROSTER, ALICE)
    assert info == b"spokes/v1/epoch-secret\x00" + GROUP + EPOCH.to_bytes(8, "big") + ROSTER + ALICE


@pytest.mark.parametrize(
    "context",
    [
        {"recipient": BOB},
        {"epoch": EPOCH + 1},
        {"epoch": EPOCH - 1},
        {"roster": OTHER_ROSTER},
        {"group": OTHER_GROUP},
    ],
    ids=["recipient", "next epoch", "old epoch", "roster", "group"],
)
def test_secret_opened_under_another_context_fails(
    key: KemPrivateKey, box: bytes, context: dict[str, object]
) -> None:
    with pytest.raises(DecryptionFailed):
        opened(key, box, **context)  # type: ignore[arg-type]


def test_secret_sealed_to_another_member_does_not_open(box: bytes) -> None:
    other = KemPrivateKey.from_private_bytes(KemSuite.X25519, fixed_bytes("kem other", 32))
    with pytest.raises(DecryptionFailed):
        opened(other, box)


def test_box_sealed_by_the_server_with_another_secret_fails_the_commitment(
    suite_key: KemPrivateKey,
) -> None:
    # Anyone can seal to a public key under the right info; only the signed
    # commitment tells the recipient the secret is the one the committer chose.
    info = seal_info(GROUP, EPOCH, ROSTER, ALICE)
    forged = seal(suite_key.public_key(), fixed_bytes("server's secret", 32), info)
    with pytest.raises(DecryptionFailed):
        opened(suite_key, forged)


def test_box_opened_against_another_epochs_commitment_fails(key: KemPrivateKey, box: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        opened(key, box, expected=commitment(SECRET, GROUP, EPOCH - 1))


def test_damaged_box_fails(key: KemPrivateKey, box: bytes) -> None:
    for index in (0, 1, len(box) // 2, len(box) - 1):
        damaged = box[:index] + bytes([box[index] ^ 1]) + box[index + 1 :]
        with pytest.raises(DecryptionFailed):
            opened(key, damaged)


def test_commitment_differs_by_secret_group_and_epoch() -> None:
    base = commitment(SECRET, GROUP, EPOCH)
    assert len(base) == 32
    assert base != SECRET
    assert base != commitment(fixed_bytes("another secret", 32), GROUP, EPOCH)
    assert base != commitment(SECRET, OTHER_GROUP, EPOCH)
    assert base != commitment(SECRET, GROUP, EPOCH + 1)


# Keys derived from the epoch secret


def test_chains_are_deterministic_per_sender() -> None:
    one = derive_epoch_keys(SECRET, GROUP, EPOCH, [ALICE, BOB])
    two = derive_epoch_keys(SECRET, GROUP, EPOCH, [BOB])
    assert one.chains[BOB].chain_key == two.chains[BOB].chain_key
    assert one.chains[BOB].counter == 0
    assert one.profile_key == two.profile_key
    assert (one.group, one.epoch) == (GROUP, EPOCH)


def test_chains_differ_across_senders_epochs_groups_and_secrets() -> None:
    keys = [
        derive_epoch_keys(SECRET, GROUP, EPOCH, [ALICE]).chains[ALICE].chain_key,
        derive_epoch_keys(SECRET, GROUP, EPOCH, [BOB]).chains[BOB].chain_key,
        derive_epoch_keys(SECRET, GROUP, EPOCH + 1, [ALICE]).chains[ALICE].chain_key,
        derive_epoch_keys(SECRET, OTHER_GROUP, EPOCH, [ALICE]).chains[ALICE].chain_key,
        derive_epoch_keys(fixed_bytes("other", 32), GROUP, EPOCH, [ALICE]).chains[ALICE].chain_key,
    ]
    assert len(set(keys)) == len(keys)


def test_profile_key_differs_across_epochs_and_groups_and_from_chains() -> None:
    epoch_keys = derive_epoch_keys(SECRET, GROUP, EPOCH, [ALICE])
    others = {
        derive_epoch_keys(SECRET, GROUP, EPOCH + 1, []).profile_key,
        derive_epoch_keys(SECRET, OTHER_GROUP, EPOCH, []).profile_key,
        epoch_keys.chains[ALICE].chain_key,
        SECRET,
    }
    assert epoch_keys.profile_key not in others
    assert len(others) == 4


def test_chain_step_gives_a_key_a_nonce_and_a_new_chain_key() -> None:
    chain_key = fresh_chain().chain_key
    message_key, next_key = chain_step(chain_key)
    assert len(message_key.key) == 32
    assert len(message_key.nonce) == 12
    assert len({message_key.key, next_key, chain_key}) == 3
    assert chain_step(chain_key) == (message_key, next_key)


def test_each_step_gives_distinct_keys_and_nonces() -> None:
    keys = in_order_keys(50)
    assert len({k.key for k in keys}) == 50
    assert len({k.nonce for k in keys}) == 50


# Sending and receiving along a chain


def test_sender_counts_up_from_zero_and_receiver_derives_the_same_keys() -> None:
    sender, receiver = fresh_chain(), fresh_chain()
    for expected_counter in range(5):
        counter, key = sender.next_for_sending()
        assert counter == expected_counter
        assert receiver.key_for(counter) == key


def test_used_key_cannot_be_asked_for_again() -> None:
    chain = fresh_chain()
    chain.key_for(0)
    with pytest.raises(RuleViolation) as info:
        chain.key_for(0)
    assert info.value.code == "replayed_message"


def test_kept_state_does_not_hold_or_lead_back_to_a_used_key() -> None:
    used = in_order_keys(3)
    chain = fresh_chain()
    for counter in range(3):
        chain.key_for(counter)
    kept = {chain.chain_key, *(k.key for k in chain.skipped.values())}
    assert not kept & {k.key for k in used}
    # stepping forward from what is kept only ever gives later keys
    chain_key = chain.chain_key
    for _ in range(10):
        message_key, chain_key = chain_step(chain_key)
        assert message_key not in used


def test_out_of_order_messages_open_with_skipped_keys() -> None:
    expected = in_order_keys(5)
    chain = fresh_chain()
    assert chain.key_for(3) == expected[3]
    assert set(chain.skipped) == {0, 1, 2}
    assert chain.key_for(1) == expected[1]
    assert chain.key_for(0) == expected[0]
    assert chain.key_for(4) == expected[4]
    assert chain.key_for(2) == expected[2]
    assert chain.skipped == {}


def test_skipped_key_is_handed_out_once() -> None:
    chain = fresh_chain()
    chain.key_for(2)
    chain.key_for(0)
    assert 0 not in chain.skipped
    with pytest.raises(RuleViolation) as info:
        chain.key_for(0)
    assert info.value.code == "replayed_message"
    with pytest.raises(RuleViolation):
        chain.key_for(2)


def test_skipping_up_to_the_bound_is_accepted() -> None:
    chain = fresh_chain()
    key = chain.key_for(MAX_SKIPPED_KEYS)
    assert len(chain.skipped) == MAX_SKIPPED_KEYS
    assert chain.counter == MAX_SKIPPED_KEYS + 1
    assert chain.key_for(0) == in_order_keys(1)[0]
    assert key != chain.key_for(MAX_SKIPPED_KEYS - 1)


def test_skipping_beyond_the_bound_is_too_far_ahead_and_changes_nothing() -> None:
    chain = fresh_chain()
    before = (chain.counter, chain.chain_key)
    with pytest.raises(RuleViolation) as info:
        chain.key_for(MAX_SKIPPED_KEYS + 1)
    assert info.value.code == "too_far_ahead"
    assert (chain.counter, chain.chain_key) == before
    assert chain.skipped == {}


def test_skipped_keys_stay_bounded_and_the_oldest_are_dropped() -> None:
    chain = fresh_chain()
    chain.key_for(MAX_SKIPPED_KEYS)
    chain.key_for(MAX_SKIPPED_KEYS + 11)
    assert len(chain.skipped) == MAX_SKIPPED_KEYS
    assert min(chain.skipped) == 10
    with pytest.raises(RuleViolation) as info:
        chain.key_for(0)  # dropped: its message can no longer be read
    assert info.value.code == "replayed_message"
    chain.key_for(10)
