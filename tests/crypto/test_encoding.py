"""Tests of crypto.encoding: one value, one byte string; and the text forms of bytes."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from crypto.encoding import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    Value,
    b32d,
    b32e,
    b64d,
    b64e,
    decode,
    encode,
)
from crypto.errors import InvalidStatement

ints = st.integers(min_value=INT_MIN, max_value=INT_MAX)
scalars = st.none() | st.booleans() | ints | st.binary(max_size=40) | st.text(max_size=20)
values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def depth(value: Value) -> int:
    """The deepest level encode visits (the top value is level 0; dict keys count)."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def same(a: Any, b: Any) -> bool:
    """Equality that tells True from 1 and b"" from "" (== does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def nested_lists(levels: int) -> Value:
    value: Value = []
    for _ in range(levels):
        value = [value]
    return value


def str_bytes(raw: bytes) -> bytes:
    return b"\x05" + struct.pack(">I", len(raw)) + raw


def dict_bytes(*items: tuple[bytes, bytes]) -> bytes:
    """A dict encoding with keys (raw UTF-8) and encoded values, in the order given."""
    out = b"\x07" + struct.pack(">I", len(items))
    for key, value in items:
        out += str_bytes(key) + value
    return out


# Round trips


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_value_round_trips_with_its_exact_types(value: Value) -> None:
    assume(depth(value) <= MAX_DEPTH)
    data = encode(value)
    back = decode(data)
    assert same(back, value)
    assert encode(back) == data


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_distinct_values_have_distinct_encodings(a: Value, b: Value) -> None:
    assume(depth(a) <= MAX_DEPTH and depth(b) <= MAX_DEPTH)
    assert (encode(a) == encode(b)) == same(a, b)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_decode_accepts_only_the_one_encoding_of_a_value(data: bytes) -> None:
    try:
        value = decode(data)
    except InvalidStatement:
        return
    assert encode(value) == data


def test_dict_encoding_does_not_depend_on_insertion_order() -> None:
    assert encode({"b": 1, "a": 2, "é": 3, "Z": 4}) == encode({"é": 3, "Z": 4, "a": 2, "b": 1})


def test_scalars_have_the_documented_bytes() -> None:
    assert encode(None) == b"\x00"
    assert encode(False) == b"\x01"
    assert encode(True) == b"\x02"
    assert encode(1) == b"\x03" + b"\x00" * 7 + b"\x01"
    assert encode(-1) == b"\x03" + b"\xff" * 8
    assert encode(b"ab") == b"\x04\x00\x00\x00\x02ab"
    assert encode("é") == b"\x05\x00\x00\x00\x02\xc3\xa9"
    assert encode([None]) == b"\x06\x00\x00\x00\x01\x00"
    assert encode({"a": None}) == b"\x07\x00\x00\x00\x01" + str_bytes(b"a") + b"\x00"


def test_dict_keys_are_sorted_by_their_utf8_bytes() -> None:
    data = encode({"a": None, "Z": None, "é": None, "\U0001f600": None, "\uffff": None})
    assert decode(data) == {"Z": None, "a": None, "é": None, "\uffff": None, "\U0001f600": None}
    assert data.index(b"Z") < data.index(b"a") < data.index("é".encode())
    assert data.index("\uffff".encode()) < data.index("\U0001f600".encode())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (True, 1),
        (False, 0),
        (None, False),
        (None, 0),
        (b"", ""),
        (b"a", "a"),
        ([], {}),
        ([], None),
        ([1], [[1]]),
        (["a", "b"], ["ab"]),
        ({"a": 1}, {"a": True}),
        ({"a": "b"}, ["a", "b"]),
    ],
)
def test_values_that_python_may_confuse_encode_differently(a: Value, b: Value) -> None:
    assert encode(a) != encode(b)
    assert same(decode(encode(a)), a)
    assert same(decode(encode(b)), b)


# Refusals on decode


def test_trailing_bytes_are_refused() -> None:
    samples: list[Value] = [None, 7, b"x", "x", [1], {"a": 1}]
    for value in samples:
        with pytest.raises(InvalidStatement):
            decode(encode(value) + b"\x00")


def test_empty_input_is_refused() -> None:
    with pytest.raises(InvalidStatement):
        decode(b"")


def test_every_truncation_of_an_encoding_is_refused() -> None:
    data = encode({"k": [1, b"bytes", "text", None, True, {"n": -5}], "z": b"\x00" * 9})
    for end in range(len(data)):
        with pytest.raises(InvalidStatement):
            decode(data[:end])


def test_unsorted_dict_keys_are_refused() -> None:
    data = dict_bytes((b"b", encode(1)), (b"a", encode(2)))
    with pytest.raises(InvalidStatement, match="sorted"):
        decode(data)


def test_keys_sorted_as_code_points_but_not_as_bytes_cannot_occur() -> None:
    # UTF-8 byte order equals code point order, so the one sorted order is unambiguous.
    pairs = [("\uffff", "\U00010000"), ("z", "é"), ("\x7f", "\x80")]
    for low, high in pairs:
        assert (low < high) == (low.encode() < high.encode())


def test_duplicate_dict_keys_are_refused() -> None:
    data = dict_bytes((b"a", encode(1)), (b"a", encode(1)))
    with pytest.raises(InvalidStatement, match="sorted"):
        decode(data)


def test_non_string_dict_keys_are_refused() -> None:
    data = b"\x07\x00\x00\x00\x01" + encode(b"a") + encode(1)
    with pytest.raises(InvalidStatement, match="key"):
        decode(data)


@pytest.mark.parametrize("tag", [0x08, 0x09, 0x7F, 0xFF])
def test_unknown_tags_are_refused(tag: int) -> None:
    with pytest.raises(InvalidStatement, match="tag"):
        decode(bytes([tag]))
    with pytest.raises(InvalidStatement):
        decode(b"\x06\x00\x00\x00\x01" + bytes([tag]))


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",  # never valid in UTF-8
        b"\xc3",  # truncated two-byte sequence
        b"\xc0\x80",  # overlong NUL
        b"\xed\xa0\x80",  # a surrogate
        b"\xf4\x90\x80\x80",  # above U+10FFFF
    ],
)
def test_strings_that_are_not_utf8_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidStatement, match="UTF-8"):
        decode(str_bytes(raw))


@pytest.mark.parametrize(
    "data",
    [
        b"\x03\x00\x00",  # int with 2 of its 8 bytes
        b"\x04\x00\x00",  # length cut short
        b"\x04\x00\x00\x00\x05abc",  # fewer bytes than the length says
        b"\x05\xff\xff\xff\xffa",  # huge length
        b"\x06\xff\xff\xff\xff\x00",  # list count larger than its bytes
        b"\x07\x00\x01\x00\x00",  # dict count larger than its bytes
    ],
)
def test_lengths_beyond_the_data_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidStatement):
        decode(data)


def test_nesting_up_to_the_limit_round_trips_and_beyond_it_is_refused() -> None:
    deepest = nested_lists(MAX_DEPTH)
    assert decode(encode(deepest)) == deepest
    too_deep = b"\x06\x00\x00\x00\x01" * (MAX_DEPTH + 1) + b"\x06\x00\x00\x00\x00"
    with pytest.raises(InvalidStatement, match="deep"):
        decode(too_deep)


def test_deep_nesting_in_dicts_is_refused_too() -> None:
    one_level = b"\x07\x00\x00\x00\x01" + str_bytes(b"k")
    with pytest.raises(InvalidStatement, match="deep"):
        decode(one_level * (MAX_DEPTH + 1) + b"\x00")


# Refusals on encode


def test_encode_refuses_values_nested_too_deeply() -> None:
    with pytest.raises(ValueError, match="deep"):
        encode(nested_lists(MAX_DEPTH + 1))


@pytest.mark.parametrize("n", [INT_MIN, INT_MIN + 1, -1, 0, 1, INT_MAX - 1, INT_MAX])
def test_int64_bounds_encode(n: int) -> None:
    assert decode(encode(n)) == n


@pytest.mark.parametrize("n", [INT_MAX + 1, INT_MIN - 1, 2**64, -(2**100)])
def test_integers_outside_int64_are_refused(n: int) -> None:
    with pytest.raises(ValueError, match="int64"):
        encode(n)


@pytest.mark.parametrize("value", [1.0, 0.5, float("nan"), float("inf"), [1.5], {"a": 2.0}])
def test_floats_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize(
    "value", [(1, 2), {1, 2}, frozenset(), bytearray(b"x"), memoryview(b"x"), object()]
)
def test_other_python_types_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize("key", [1, b"a", None])
def test_non_string_dict_keys_are_refused_on_encode(key: Any) -> None:
    with pytest.raises(ValueError, match="keys"):
        encode({key: 1})


def test_strings_that_cannot_be_utf8_are_refused_on_encode() -> None:
    with pytest.raises(ValueError):
        encode("\ud800")


# Text forms


@given(st.binary(max_size=80))
def test_b64_round_trips_unpadded_and_urlsafe(data: bytes) -> None:
    text = b64e(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64d(text) == data


def test_b64_accepts_the_padded_form() -> None:
    assert b64d("QQ==") == b"A"


@pytest.mark.parametrize(
    "text",
    [
        "QR",  # non-zero trailing bits: a second spelling of b"A"
        "Q",  # impossible length
        "+/8",  # standard alphabet instead of URL-safe
        "QQ QQ",  # whitespace
        "QQ\n",
        "=QQ",
        "Q=Q",
        "é",
        "QQ!",
    ],
)
def test_b64_refuses_non_canonical_text(text: str) -> None:
    with pytest.raises(ValueError):
        b64d(text)


def test_b64_refuses_non_text() -> None:
    with pytest.raises(ValueError):
        b64d(b"QQ")  # type: ignore[arg-type]


@given(st.binary(max_size=80))
def test_b32_round_trips_lowercase_unpadded_and_reads_uppercase(data: bytes) -> None:
    text = b32e(data)
    assert text == text.lower() and "=" not in text
    assert b32d(text) == data
    assert b32d(text.upper()) == data


@pytest.mark.parametrize(
    "text",
    [
        "ab",  # non-zero trailing bits: a second spelling of b"\x00"
        "a",  # impossible length
        "aaa",
        "aa======",  # padding
        "a0",  # 0, 1, 8, 9 are not base32
        "a1",
        "a8",
        "a9",
        "a a",
        "aa\n",
        "ä",
    ],
)
def test_b32_refuses_non_canonical_text(text: str) -> None:
    with pytest.raises(ValueError):
        b32d(text)


def test_b32_refuses_non_text() -> None:
    with pytest.raises(ValueError):
        b32d(b"aa")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["QQ=", "QQ=====", "QUI=="])
def test_base64_with_wrong_padding_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        b64d(text)
