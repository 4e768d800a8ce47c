"""Tests of crypto.messages: padded, AEAD-encrypted, signed group messages and profiles."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto import labels
from crypto.encoding import Value, encode
from crypto.epochs import MessageKey, derive_epoch_keys
from crypto.errors import DecryptionFailed, InvalidSignature, InvalidStatement
from crypto.keys import IdentityPublicKey
from crypto.messages import (
    BUCKETS,
    MAX_PLAINTEXT,
    TAG_BYTES,
    Header,
    SealedMessage,
    open_message,
    open_profile,
    pad,
    seal_message,
    seal_profile,
    unpad,
    verify_message,
)
from tests.crypto.helpers import fixed_bytes, fixed_key, flip

ALICE = fixed_key("alice")
BOB = fixed_key("bob")
GROUP = fixed_bytes("group", 16)
OTHER_GROUP = fixed_bytes("other group", 16)
EPOCH = 2
KEYS = derive_epoch_keys(fixed_bytes("epoch secret", 32), GROUP, EPOCH, [])
PROFILE_KEY = KEYS.profile_key
CONTENT: dict[str, Value] = {"text": "meet at the library, 7pm", "head": fixed_bytes("head", 32)}
PROFILE: dict[str, Value] = {"name": "Ana", "contact": "signal: ana.42", "notes": ""}
# encode({"text": s}) is 19 bytes plus s: dict tag and count, key, str tag and length
TEXT_OVERHEAD = len(encode({"text": ""}))

LENGTHS = sorted(
    {0, 1, MAX_PLAINTEXT}
    | {b - 2 for b in BUCKETS}
    | {b - 1 for b in BUCKETS}
    | {b for b in BUCKETS[:-1]}
)


def message_key(label: str = "one") -> MessageKey:
    return MessageKey(fixed_bytes(f"message key {label}", 32), fixed_bytes(f"nonce {label}", 12))


def header_of(sender: bytes = ALICE.member_id, counter: int = 0) -> Header:
    return Header(GROUP, EPOCH, sender, counter)


def sealed(
    content: dict[str, Value] = CONTENT, counter: int = 0, key: MessageKey | None = None
) -> SealedMessage:
    return seal_message(ALICE, header_of(counter=counter), key or message_key(), content)


def bucket_for(length: int) -> int:
    return next(b for b in BUCKETS if length < b)


# Padding


@pytest.mark.parametrize("length", LENGTHS)
def test_padding_fills_the_smallest_bucket_that_fits_and_unpads(length: int) -> None:
    data = bytes([0x80, 0, 0xFF]) * (length // 3) + b"\x00" * (length % 3)
    padded = pad(data)
    assert len(padded) == bucket_for(length)
    assert padded[length] == 0x80
    assert unpad(padded) == data


def test_bucket_edges() -> None:
    assert len(pad(bytes(254))) == 256
    assert len(pad(bytes(255))) == 256
    assert len(pad(bytes(256))) == 1024
    assert len(pad(bytes(MAX_PLAINTEXT))) == BUCKETS[-1]


def test_longer_than_max_plaintext_is_refused() -> None:
    with pytest.raises(ValueError):
        pad(bytes(MAX_PLAINTEXT + 1))


@pytest.mark.parametrize(
    "padded",
    [b"", b"\x80", bytes(255) + b"\x80" + b"\x00", bytes(256), b"abc" + bytes(253)],
    ids=["empty", "not a bucket", "longer than a bucket", "no marker", "marker missing"],
)
def test_damaged_padding_is_refused(padded: bytes) -> None:
    with pytest.raises(DecryptionFailed):
        unpad(padded)


# Sealed messages


def test_sealed_message_verifies_and_opens() -> None:
    message = sealed()
    header = verify_message(message, ALICE.public_key())
    assert header == header_of()
    assert open_message(message, message_key()) == CONTENT


def test_header_round_trips_through_its_encoding() -> None:
    header = Header(GROUP, 7, BOB.member_id, 12345)
    assert Header.decode(header.encode()) == header


@pytest.mark.parametrize("length", [n for n in LENGTHS if n >= TEXT_OVERHEAD])
def test_ciphertext_length_is_a_bucket_plus_the_tag(length: int) -> None:
    content: dict[str, Value] = {"text": "x" * (length - TEXT_OVERHEAD)}
    assert len(encode(content)) == length
    message = sealed(content)
    assert len(message.ciphertext) == bucket_for(length) + TAG_BYTES
    verify_message(message, ALICE.public_key())
    assert open_message(message, message_key()) == content


def test_content_longer_than_max_plaintext_is_refused() -> None:
    with pytest.raises(ValueError):
        sealed({"text": "x" * (MAX_PLAINTEXT + 1 - TEXT_OVERHEAD)})


def test_messages_of_similar_length_have_equal_ciphertext_length() -> None:
    short = sealed({"text": "y"})
    longer = sealed({"text": "y" * 200})
    assert len(short.ciphertext) == len(longer.ciphertext) == 256 + TAG_BYTES


def test_header_naming_another_sender_cannot_be_sealed() -> None:
    with pytest.raises(ValueError):
        seal_message(ALICE, header_of(sender=BOB.member_id), message_key(), CONTENT)


def test_header_naming_another_sender_fails_verification() -> None:
    # Bob signs a message whose header says Alice sent it.
    header = header_of(sender=ALICE.member_id).encode()
    honest = seal_message(BOB, header_of(sender=BOB.member_id), message_key(), CONTENT)
    signature = BOB.sign(labels.MESSAGE_SIGNATURE, header + honest.ciphertext)
    forged = SealedMessage(header, honest.ciphertext, signature)
    with pytest.raises(InvalidSignature):
        verify_message(forged, ALICE.public_key())
    with pytest.raises(InvalidStatement):
        verify_message(forged, BOB.public_key())


def test_message_checked_against_someone_elses_key_is_refused() -> None:
    with pytest.raises(InvalidStatement):
        verify_message(sealed(), BOB.public_key())


@pytest.mark.parametrize("index", [0, 10, -1])
def test_flipped_bit_in_the_header_is_refused(index: int) -> None:
    message = sealed()
    damaged = replace(message, header=flip(message.header, index % len(message.header)))
    with pytest.raises((InvalidStatement, InvalidSignature)):
        verify_message(damaged, ALICE.public_key())
    with pytest.raises(DecryptionFailed):
        open_message(damaged, message_key())


@pytest.mark.parametrize("index", [0, 100, -1])
def test_flipped_bit_in_the_ciphertext_is_refused(index: int) -> None:
    message = sealed()
    damaged = replace(message, ciphertext=flip(message.ciphertext, index % len(message.ciphertext)))
    with pytest.raises(InvalidSignature):
        verify_message(damaged, ALICE.public_key())
    with pytest.raises(DecryptionFailed):
        open_message(damaged, message_key())


@pytest.mark.parametrize("index", [0, 32, 63])
def test_flipped_bit_in_the_signature_is_refused(index: int) -> None:
    message = sealed()
    with pytest.raises(InvalidSignature):
        verify_message(
            replace(message, signature=flip(message.signature, index)), ALICE.public_key()
        )


def test_truncated_ciphertext_is_not_a_bucket() -> None:
    message = sealed()
    with pytest.raises(InvalidStatement):
        verify_message(replace(message, ciphertext=message.ciphertext[:-1]), ALICE.public_key())


def test_header_with_extra_or_missing_fields_is_refused() -> None:
    fields: dict[str, Value] = {
        "group": GROUP,
        "epoch": EPOCH,
        "sender": ALICE.member_id,
        "counter": 0,
    }
    with pytest.raises(InvalidStatement):
        Header.decode(encode({**fields, "roster": b""}))
    del fields["counter"]
    with pytest.raises(InvalidStatement):
        Header.decode(encode(fields))


def test_header_with_a_short_group_id_is_refused() -> None:
    with pytest.raises(InvalidStatement):
        Header.decode(Header(GROUP[:15], EPOCH, ALICE.member_id, 0).encode())


def test_message_does_not_open_with_another_key() -> None:
    with pytest.raises(DecryptionFailed):
        open_message(sealed(), message_key("two"))
    right_key_wrong_nonce = MessageKey(message_key().key, message_key("two").nonce)
    with pytest.raises(DecryptionFailed):
        open_message(sealed(), right_key_wrong_nonce)


def test_header_swapped_between_two_messages_is_refused() -> None:
    # Both under the same key: only the header as associated data tells them apart.
    first = sealed(counter=0)
    second = sealed({"text": "the other one"}, counter=1)
    swapped = SealedMessage(second.header, first.ciphertext, first.signature)
    with pytest.raises(InvalidSignature):
        verify_message(swapped, ALICE.public_key())
    with pytest.raises(DecryptionFailed):
        open_message(swapped, message_key())


def test_content_that_is_not_a_record_is_refused() -> None:
    header = header_of().encode()
    key = message_key()
    ciphertext = AESGCM(key.key).encrypt(key.nonce, pad(encode(["a", "list"])), header)
    with pytest.raises(DecryptionFailed):
        open_message(SealedMessage(header, ciphertext, b""), key)


# Profiles


def test_profile_round_trips() -> None:
    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    assert len(box) == 12 + 256 + TAG_BYTES + 64  # nonce, padded bucket, tag, signature
    assert open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), box) == (PROFILE, 1)


def test_profiles_draw_fresh_nonces() -> None:
    one = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    two = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    assert one[:12] != two[:12]


@pytest.mark.parametrize(
    ("group", "epoch", "member"),
    [
        (GROUP, EPOCH, BOB.public_key()),
        (GROUP, EPOCH + 1, ALICE.public_key()),
        (GROUP, EPOCH - 1, ALICE.public_key()),
        (OTHER_GROUP, EPOCH, ALICE.public_key()),
    ],
    ids=["another member", "next epoch", "old epoch", "another group"],
)
def test_profile_moved_elsewhere_fails(group: bytes, epoch: int, member: IdentityPublicKey) -> None:
    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    with pytest.raises(DecryptionFailed):
        open_profile(PROFILE_KEY, group, epoch, member, box)


def test_profile_does_not_open_with_another_key() -> None:
    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    with pytest.raises(DecryptionFailed):
        open_profile(fixed_bytes("other profile key", 32), GROUP, EPOCH, ALICE.public_key(), box)


@pytest.mark.parametrize("cut", [0, 5, 12, 27, 100])
def test_truncated_or_damaged_profile_fails(cut: int) -> None:
    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    with pytest.raises(DecryptionFailed):
        open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), box[:cut])
    with pytest.raises(DecryptionFailed):
        open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), flip(box, cut))


def test_profile_too_long_is_refused() -> None:
    with pytest.raises(ValueError):
        seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, {"notes": "n" * MAX_PLAINTEXT}, version=1)


def test_a_profile_sealed_by_another_member_does_not_open_as_theirs() -> None:
    # Bob holds the profile key too, but can't make a profile that opens as Alice's.
    forged = seal_profile(PROFILE_KEY, GROUP, EPOCH, BOB, PROFILE, version=1)
    with pytest.raises(DecryptionFailed):
        open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), forged)


def test_the_server_can_check_who_sealed_a_profile_without_opening_it() -> None:
    from crypto.errors import InvalidSignature
    from crypto.messages import verify_profile

    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=1)
    verify_profile(GROUP, EPOCH, ALICE.public_key(), box)
    with pytest.raises(InvalidSignature):
        verify_profile(GROUP, EPOCH, BOB.public_key(), box)
    with pytest.raises(InvalidSignature):
        verify_profile(GROUP, EPOCH + 1, ALICE.public_key(), box)


# Profile versions: each change counts up, sealed inside, so an old one can't pass as current.


def test_a_profile_carries_its_version_and_a_new_epoch_keeps_it() -> None:
    next_key = derive_epoch_keys(
        fixed_bytes("next epoch secret", 32), GROUP, EPOCH + 1, []
    ).profile_key
    now = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=7)
    again = seal_profile(next_key, GROUP, EPOCH + 1, ALICE, PROFILE, version=7)
    assert open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), now) == (PROFILE, 7)
    assert open_profile(next_key, GROUP, EPOCH + 1, ALICE.public_key(), again) == (PROFILE, 7)


@pytest.mark.parametrize("version", [0, -1, True, "2", None, 1.5])
def test_a_profile_without_a_positive_version_is_not_sealed(version: object) -> None:
    with pytest.raises(ValueError):
        seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=version)  # type: ignore[arg-type]


def test_a_profile_field_named_version_is_refused() -> None:
    with pytest.raises(ValueError):
        seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, {**PROFILE, "version": 9}, version=1)


def _sealed_by_hand(content: Value) -> bytes:
    """A profile a faulty client sealed and signed itself, with whatever content it chose."""
    nonce = fixed_bytes("hand nonce", 12)
    aad = labels.PROFILE_AAD + encode({"group": GROUP, "epoch": EPOCH, "member": ALICE.member_id})
    sealed = nonce + AESGCM(PROFILE_KEY).encrypt(nonce, pad(encode(content)), aad)
    return sealed + ALICE.sign(labels.PROFILE_SIGNATURE, aad + sealed)


@pytest.mark.parametrize(
    "content",
    [PROFILE, {**PROFILE, "version": 0}, {**PROFILE, "version": -3}, {**PROFILE, "version": "4"}],
    ids=["no version", "zero", "negative", "text"],
)
def test_a_profile_without_a_valid_version_does_not_open(content: Value) -> None:
    box = _sealed_by_hand(content)
    with pytest.raises(DecryptionFailed):
        open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), box)
    # The same route with a good version opens: the refusal is the version's.
    good = _sealed_by_hand({**PROFILE, "version": 2})
    assert open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), good) == (PROFILE, 2)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag", "signature"])
def test_a_versioned_profile_with_any_bit_flipped_does_not_open(where: str) -> None:
    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=5)
    at = {"nonce": 3, "ciphertext": 40, "tag": len(box) - 64 - 3, "signature": len(box) - 10}[where]
    with pytest.raises(DecryptionFailed):
        open_profile(PROFILE_KEY, GROUP, EPOCH, ALICE.public_key(), flip(box, at))


def test_a_versioned_profile_does_not_open_in_another_context_or_key() -> None:
    box = seal_profile(PROFILE_KEY, GROUP, EPOCH, ALICE, PROFILE, version=5)
    for group, epoch, member in (
        (OTHER_GROUP, EPOCH, ALICE.public_key()),
        (GROUP, EPOCH + 1, ALICE.public_key()),
        (GROUP, EPOCH, BOB.public_key()),
    ):
        with pytest.raises(DecryptionFailed):
            open_profile(PROFILE_KEY, group, epoch, member, box)
    with pytest.raises(DecryptionFailed):
        open_profile(fixed_bytes("wrong key", 32), GROUP, EPOCH, ALICE.public_key(), box)
