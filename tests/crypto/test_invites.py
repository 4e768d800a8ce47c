"""Tests of crypto.invites: invite codes, the sealed payload, redemption proofs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import labels, padding
from crypto.encoding import Value, encode
from crypto.errors import DecryptionFailed, InvalidCode, InvalidSignature, InvalidStatement
from crypto.invites import (
    CHECKSUM_BYTES,
    LOOKUP_ID_BYTES,
    MAX_SEALED_PAYLOAD,
    PAYLOAD_BUCKETS,
    SECRET_BYTES,
    InviteCode,
    make_invite,
    make_join,
    parse_invite,
    parse_join,
    verify_proof,
)
from crypto.keys import IdentityPublicKey
from crypto.network import DAY, KeyBundle, make_key_bundle
from crypto.statements import sign_statement, signing_context
from tests.crypto.helpers import T0, fixed_bytes, fixed_key, flip, reverify

CODE = InviteCode(fixed_bytes("code", SECRET_BYTES))
OTHER_CODE = InviteCode(fixed_bytes("other code", SECRET_BYTES))
INVITER = fixed_key("inviter")
NEWCOMER = fixed_key("newcomer")
STRANGER = fixed_key("stranger")
NETWORK = fixed_bytes("network", 32)
CELL = fixed_bytes("cell", 16)
PAYLOAD: dict[str, Value] = {"genesis": [b"body", b"sig"], "chain": [], "note": "see you Tuesday"}
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
CODE_TEXT = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){7}$")


def bundle() -> KeyBundle:
    return make_key_bundle(
        NEWCOMER, NETWORK, "X25519/HKDF_SHA256/AES_256_GCM", b"\x05" * 32, T0, T0 + DAY
    )


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    kdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=b"spokes/v1/invite", info=info)
    return kdf.derive(secret)


# The code and its text


def test_code_carries_at_least_100_bits_of_entropy() -> None:
    assert SECRET_BYTES * 8 >= 100
    code = InviteCode.generate()
    assert len(code.secret) == SECRET_BYTES
    assert InviteCode.generate().secret != code.secret


def test_code_text_is_eight_groups_of_four_base32_letters() -> None:
    for code in (CODE, OTHER_CODE, InviteCode.generate()):
        assert CODE_TEXT.match(code.text), code.text
    assert (SECRET_BYTES + CHECKSUM_BYTES) * 8 == 32 * 5  # no padding bits to mistype


def test_code_text_parses_back_to_the_code() -> None:
    assert InviteCode.parse(CODE.text) == CODE


@pytest.mark.parametrize(
    "respell",
    [
        str.upper,
        lambda t: t.replace("-", ""),
        lambda t: t.replace("-", " "),
        lambda t: t.replace("-", "  -  "),
        lambda t: f"  {t}\n",
        lambda t: "\t".join(t.upper().split("-")),
        lambda t: " ".join(t.replace("-", "")),
    ],
)
def test_code_is_read_in_any_case_with_spaces_and_dashes(respell: Callable[[str], str]) -> None:
    assert InviteCode.parse(respell(CODE.text)) == CODE


def test_digits_that_look_like_letters_are_read_as_those_letters() -> None:
    text = CODE.text
    assert {"o", "l", "b"} & set(text), "pick a fixed code that shows the lookalikes"
    typed = text.replace("o", "0").replace("l", "1").replace("b", "8")
    assert typed != text
    assert InviteCode.parse(typed) == CODE
    assert InviteCode.parse(typed.upper()) == CODE


def test_every_single_mistyped_letter_is_caught() -> None:
    letters = CODE.text.replace("-", "")
    for index, original in enumerate(letters):
        for wrong in ALPHABET:
            if wrong == original:
                continue
            typed = letters[:index] + wrong + letters[index + 1 :]
            with pytest.raises(InvalidCode, match="mistyped"):
                InviteCode.parse(typed)


def test_swapped_neighbouring_letters_are_caught() -> None:
    letters = CODE.text.replace("-", "")
    for index in range(len(letters) - 1):
        if letters[index] == letters[index + 1]:
            continue
        typed = letters[:index] + letters[index + 1] + letters[index] + letters[index + 2 :]
        with pytest.raises(InvalidCode):
            InviteCode.parse(typed)


@pytest.mark.parametrize(
    "respell",
    [
        lambda t: t[:-1],
        lambda t: t[:-5],
        lambda t: t + "a",
        lambda t: t + "-aaaa",
        lambda t: "",
    ],
)
def test_code_of_the_wrong_length_is_refused(respell: Callable[[str], str]) -> None:
    with pytest.raises(InvalidCode, match="32"):
        InviteCode.parse(respell(CODE.text))


@pytest.mark.parametrize("bad", ["9", "!", "é", "_", "="])
def test_code_with_impossible_characters_is_refused(bad: str) -> None:
    letters = CODE.text.replace("-", "")
    with pytest.raises(InvalidCode):
        InviteCode.parse(bad + letters[1:])


# What the code derives


def test_derived_values_have_their_sizes_and_differ_from_each_other() -> None:
    lookup, payload_key, proof_key = CODE.lookup_id, CODE.payload_key, CODE.proof_public_key
    assert len(lookup) == LOOKUP_ID_BYTES == 16
    assert len(payload_key) == 32 and len(proof_key) == 32
    assert lookup not in (payload_key[:16], proof_key[:16])
    assert payload_key != proof_key
    assert CODE.secret not in (lookup, payload_key, proof_key)


def test_derived_values_are_deterministic_per_code() -> None:
    again = InviteCode.parse(CODE.text)
    assert again.lookup_id == CODE.lookup_id
    assert again.payload_key == CODE.payload_key
    assert again.proof_public_key == CODE.proof_public_key
    assert OTHER_CODE.lookup_id != CODE.lookup_id
    assert OTHER_CODE.payload_key != CODE.payload_key
    assert OTHER_CODE.proof_public_key != CODE.proof_public_key


def test_derived_values_are_hkdf_under_their_own_labels() -> None:
    assert CODE.lookup_id == _hkdf(CODE.secret, labels.INVITE_LOOKUP, 16)
    assert CODE.payload_key == _hkdf(CODE.secret, labels.INVITE_PAYLOAD_KEY, 32)
    seed = _hkdf(CODE.secret, labels.INVITE_PROOF_KEY, 32)
    expected = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    assert CODE.proof_public_key == expected.public_bytes_raw()


def test_invite_labels_are_all_distinct() -> None:
    invite_labels = [
        labels.INVITE_LOOKUP,
        labels.INVITE_PAYLOAD_KEY,
        labels.INVITE_PROOF_KEY,
        labels.INVITE_CHECKSUM,
        labels.INVITE_PAYLOAD_AAD,
        labels.INVITE_PROOF,
    ]
    assert len(set(invite_labels)) == len(invite_labels)


# The sealed payload


def test_payload_opens_with_the_same_code() -> None:
    sealed = CODE.seal_payload(PAYLOAD)
    assert CODE.open_payload(sealed) == PAYLOAD
    assert InviteCode.parse(CODE.text.upper()).open_payload(sealed) == PAYLOAD


def test_payload_is_sealed_with_a_fresh_nonce_each_time() -> None:
    first, second = CODE.seal_payload(PAYLOAD), CODE.seal_payload(PAYLOAD)
    assert first != second
    assert first[:12] != second[:12]


def test_payload_with_a_fixed_nonce_is_reproducible() -> None:
    nonce = b"\x07" * 12
    sealed = CODE.seal_payload(PAYLOAD, _nonce=nonce)
    assert sealed == CODE.seal_payload(PAYLOAD, _nonce=nonce)
    assert sealed[:12] == nonce
    assert len(sealed) == 12 + PAYLOAD_BUCKETS[0] + 16


def test_payload_does_not_open_with_another_code() -> None:
    with pytest.raises(DecryptionFailed, match="this code"):
        OTHER_CODE.open_payload(CODE.seal_payload(PAYLOAD))


def test_every_flipped_bit_in_the_sealed_payload_is_refused() -> None:
    sealed = CODE.seal_payload(PAYLOAD)
    for index in range(len(sealed)):
        with pytest.raises(DecryptionFailed):
            CODE.open_payload(flip(sealed, index))


@pytest.mark.parametrize("length", [0, 1, 8, 11, 12, 27])
def test_truncated_payload_is_refused(length: int) -> None:
    sealed = CODE.seal_payload(PAYLOAD)
    with pytest.raises(DecryptionFailed):
        CODE.open_payload(sealed[:length])


def test_payload_is_bound_to_the_lookup_id_of_its_code() -> None:
    # Same payload key, another lookup id: the AAD differs, so it must not open.
    @dataclass(frozen=True)
    class Relabelled(InviteCode):
        @property
        def lookup_id(self) -> bytes:
            return OTHER_CODE.lookup_id

    moved = Relabelled(CODE.secret)
    assert moved.payload_key == CODE.payload_key
    with pytest.raises(DecryptionFailed):
        moved.open_payload(CODE.seal_payload(PAYLOAD))
    with pytest.raises(DecryptionFailed):
        CODE.open_payload(moved.seal_payload(PAYLOAD))


def test_payload_sealed_without_the_invite_context_is_refused() -> None:
    nonce = b"\x01" * 12
    bare = nonce + AESGCM(CODE.payload_key).encrypt(nonce, encode(PAYLOAD), None)
    with pytest.raises(DecryptionFailed):
        CODE.open_payload(bare)


def _seal_plain(plain: bytes) -> bytes:
    """Seal chosen plaintext bytes (padded or not) exactly as seal_payload does."""
    nonce = b"\x01" * 12
    aad = labels.INVITE_PAYLOAD_AAD + CODE.lookup_id
    return nonce + AESGCM(CODE.payload_key).encrypt(nonce, plain, aad)


def test_hand_sealed_padded_payload_opens() -> None:
    # The helper below seals like seal_payload, so the refusals that use it are about content.
    assert CODE.open_payload(_seal_plain(padding.pad(encode(PAYLOAD), PAYLOAD_BUCKETS))) == PAYLOAD


@pytest.mark.parametrize("value", [None, [1, 2], "text", b"bytes"])
def test_payload_that_is_not_a_record_is_refused(value: Value) -> None:
    with pytest.raises(DecryptionFailed):
        CODE.open_payload(_seal_plain(padding.pad(encode(value), PAYLOAD_BUCKETS)))


def test_payload_with_non_canonical_plaintext_is_refused() -> None:
    plain = padding.pad(encode(PAYLOAD) + b"\x00", PAYLOAD_BUCKETS)
    with pytest.raises(DecryptionFailed):
        CODE.open_payload(_seal_plain(plain))


# Padding: the sealed length hides the note's length


def test_payloads_with_short_and_long_notes_seal_to_the_same_length() -> None:
    lengths = {
        len(CODE.seal_payload({**PAYLOAD, "note": "x" * size})) for size in (0, 1, 17, 300, 900)
    }
    assert lengths == {12 + PAYLOAD_BUCKETS[0] + 16}


def test_every_payload_seals_to_a_bucket_within_the_server_limit() -> None:
    for size in (0, 1_000, 4_000, 16_000, 40_000):
        sealed = CODE.seal_payload({**PAYLOAD, "note": "x" * size})
        assert len(sealed) - 12 - 16 in PAYLOAD_BUCKETS
        assert CODE.open_payload(sealed)["note"] == "x" * size
    assert 12 + PAYLOAD_BUCKETS[-1] + 16 == MAX_SEALED_PAYLOAD


def test_payload_too_large_for_the_last_bucket_is_refused() -> None:
    with pytest.raises(ValueError):
        CODE.seal_payload({**PAYLOAD, "note": "x" * PAYLOAD_BUCKETS[-1]})


def _bad_paddings() -> list[bytes]:
    body = encode(PAYLOAD)
    first = PAYLOAD_BUCKETS[0]
    return [
        body,  # not padded at all
        body + b"\x80",  # marker but no bucket
        body + bytes(first - len(body)),  # a bucket of zeros, no marker
        body + b"\x80" + bytes(first - len(body) - 2) + b"\x01",  # non-zero after the marker
        body + b"\x81" + bytes(first - len(body) - 1),  # the wrong marker
        body + b"\x80" + bytes(first - len(body)),  # one byte past a bucket
        body + b"\x80" + bytes(PAYLOAD_BUCKETS[1] - len(body) - 1),  # a bigger bucket than needed
        bytes(first),  # all zeros
    ]


@pytest.mark.parametrize("plain", _bad_paddings())
def test_payload_with_bad_padding_is_refused(plain: bytes) -> None:
    with pytest.raises(DecryptionFailed, match="does not open with this code"):
        CODE.open_payload(_seal_plain(plain))
    with pytest.raises(DecryptionFailed):
        padding.unpad(plain, PAYLOAD_BUCKETS)


def test_padding_round_trips_at_every_bucket_edge() -> None:
    for bucket in PAYLOAD_BUCKETS:
        for size in (bucket - 1, bucket):
            if size >= PAYLOAD_BUCKETS[-1]:
                continue
            data = bytes(range(256)) * (size // 256) + b"\x80" * (size % 256)
            padded = padding.pad(data, PAYLOAD_BUCKETS)
            assert len(padded) in PAYLOAD_BUCKETS and len(padded) > size
            assert padding.unpad(padded, PAYLOAD_BUCKETS) == data


# Redemption proofs


def test_proof_over_the_join_verifies_with_the_proof_public_key() -> None:
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0)
    verify_proof(CODE.proof_public_key, join.statement, CODE.prove(join.statement))


def test_proof_made_with_another_code_is_refused() -> None:
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0)
    with pytest.raises(InvalidSignature):
        verify_proof(CODE.proof_public_key, join.statement, OTHER_CODE.prove(join.statement))


def test_proof_over_one_join_does_not_redeem_another() -> None:
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0)
    proof = CODE.prove(join.statement)
    replays = [
        make_join(STRANGER, NETWORK, CODE.lookup_id, bundle(), T0),
        make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0 + 1),
        make_join(NEWCOMER, fixed_bytes("other network", 32), CODE.lookup_id, bundle(), T0),
    ]
    for other in replays:
        with pytest.raises(InvalidSignature):
            verify_proof(CODE.proof_public_key, other.statement, proof)


def test_newcomer_signature_is_not_a_proof() -> None:
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0)
    with pytest.raises(InvalidSignature):
        verify_proof(CODE.proof_public_key, join.statement, join.statement.signature)


def test_proof_is_domain_separated_from_statement_signatures() -> None:
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0)
    proof = CODE.prove(join.statement)
    proof_key = IdentityPublicKey(CODE.proof_public_key)
    with pytest.raises(InvalidSignature):
        proof_key.verify(signing_context("join"), join.statement.body, proof)


def test_proof_with_a_malformed_public_key_is_refused() -> None:
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, bundle(), T0)
    with pytest.raises(InvalidStatement):
        verify_proof(b"\x00" * 31, join.statement, CODE.prove(join.statement))


# Invite and join statements


def test_invite_statement_round_trips() -> None:
    invite = make_invite(INVITER, NETWORK, CODE, CELL, T0, T0 + DAY)
    again = parse_invite(reverify(invite.statement, "invite", NETWORK))
    assert again.lookup_id == CODE.lookup_id
    assert again.proof_public_key == CODE.proof_public_key
    assert (again.cell, again.expires) == (CELL, T0 + DAY)
    assert again.statement.author == INVITER.member_id
    assert CODE.secret not in again.statement.body
    assert CODE.payload_key not in again.statement.body


@pytest.mark.parametrize("expires", [T0, T0 - 1])
def test_invite_that_expires_before_it_was_made_is_refused(expires: int) -> None:
    with pytest.raises(InvalidStatement, match="expires"):
        make_invite(INVITER, NETWORK, CODE, CELL, T0, expires)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lookup", b"\x00" * 15),
        ("proof_key", b"\x00" * 31),
        ("cell", b"\x00" * 32),
        ("expires", "tomorrow"),
        ("expires", None),
    ],
)
def test_invite_with_a_malformed_field_is_refused(name: str, value: Value) -> None:
    fields: dict[str, Value] = {
        "lookup": CODE.lookup_id,
        "proof_key": CODE.proof_public_key,
        "cell": CELL,
        "expires": T0 + DAY,
        name: value,
    }
    with pytest.raises(InvalidStatement):
        parse_invite(sign_statement(INVITER, "invite", NETWORK, T0, fields))


def test_join_statement_round_trips_and_names_its_key_bundle() -> None:
    key_bundle = bundle()
    join = make_join(NEWCOMER, NETWORK, CODE.lookup_id, key_bundle, T0)
    again = parse_join(reverify(join.statement, "join", NETWORK))
    assert again.lookup_id == CODE.lookup_id
    assert again.key_bundle_id == key_bundle.statement.id
    assert again.statement.author == NEWCOMER.member_id


@pytest.mark.parametrize(
    ("name", "value"), [("invite", b"\x00" * 32), ("key_bundle", b"\x00" * 16), ("invite", None)]
)
def test_join_with_a_malformed_field_is_refused(name: str, value: Value) -> None:
    fields: dict[str, Value] = {"invite": CODE.lookup_id, "key_bundle": b"\x00" * 32, name: value}
    with pytest.raises(InvalidStatement):
        parse_join(sign_statement(NEWCOMER, "join", NETWORK, T0, fields))


def test_other_statements_are_neither_invites_nor_joins() -> None:
    statement = sign_statement(NEWCOMER, "vouch", NETWORK, T0, {})
    with pytest.raises(InvalidStatement):
        parse_invite(statement)
    with pytest.raises(InvalidStatement):
        parse_join(statement)
