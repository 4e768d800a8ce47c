"""Canonical bytes for signed and hashed values, and the text forms of bytes.

The rule this module keeps: one value has exactly one encoding, and
`decode` accepts only that encoding. Anything else (trailing bytes, unsorted
or repeated keys, floats, oversized integers, bad UTF-8) is refused, so a
signature over encoded bytes is a signature over one value.

Encoding, tag byte first:
    0x00 None      0x01 False     0x02 True
    0x03 int       8 bytes, big-endian two's complement (int64 only)
    0x04 bytes     4-byte big-endian length, then the bytes
    0x05 str       4-byte big-endian length, then UTF-8
    0x06 list      4-byte big-endian count, then each item
    0x07 dict      4-byte big-endian count, then key (as str) and value,
                   keys strictly increasing by their UTF-8 bytes
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import TypeAlias

from crypto.errors import InvalidStatement

Value: TypeAlias = "None | bool | int | bytes | str | list[Value] | dict[str, Value]"

MAX_DEPTH = 16
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1

_NONE, _FALSE, _TRUE, _INT, _BYTES, _STR, _LIST, _DICT = range(8)


def encode(value: Value) -> bytes:
    """Return the canonical bytes of `value`."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def encode_list_of_encoded(items: list[bytes]) -> bytes:
    """The canonical bytes of a list whose items are given already encoded (by `encode`).

    The same bytes as `encode` of the list of their values: for a caller that
    keeps each item's encoding and would otherwise walk every item again.
    """
    return bytes([_LIST]) + struct.pack(">I", len(items)) + b"".join(items)


def _encode(value: Value, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None:
        out.append(_NONE)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError("integer out of int64 range")
        out.append(_INT)
        out += struct.pack(">q", value)
    elif isinstance(value, bytes):
        out.append(_BYTES)
        out += struct.pack(">I", len(value)) + value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(_STR)
        out += struct.pack(">I", len(raw)) + raw
    elif isinstance(value, list):
        out.append(_LIST)
        out += struct.pack(">I", len(value))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("dict keys must be str")
        keys = sorted(value, key=lambda k: k.encode("utf-8"))
        out.append(_DICT)
        out += struct.pack(">I", len(keys))
        for key in keys:
            _encode(key, out, depth + 1)
            _encode(value[key], out, depth + 1)
    else:
        raise ValueError(f"cannot encode {type(value).__name__}")


def decode(data: bytes) -> Value:
    """Parse canonical bytes; raise InvalidStatement unless they are canonical."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise InvalidStatement("trailing bytes after value")
    return value


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if n < 0 or pos + n > len(data):
        raise InvalidStatement("truncated value")
    return data[pos : pos + n], pos + n


def _length(data: bytes, pos: int) -> tuple[int, int]:
    raw, pos = _take(data, pos, 4)
    (n,) = struct.unpack(">I", raw)
    return int(n), pos


def _decode(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    if depth > MAX_DEPTH:
        raise InvalidStatement("value nested too deeply")
    tag_raw, pos = _take(data, pos, 1)
    tag = tag_raw[0]
    if tag == _NONE:
        return None, pos
    if tag in (_FALSE, _TRUE):
        return tag == _TRUE, pos
    if tag == _INT:
        raw, pos = _take(data, pos, 8)
        return int(struct.unpack(">q", raw)[0]), pos
    if tag in (_BYTES, _STR):
        n, pos = _length(data, pos)
        raw, pos = _take(data, pos, n)
        if tag == _BYTES:
            return raw, pos
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError as exc:
            raise InvalidStatement("string is not UTF-8") from exc
    if tag == _LIST:
        n, pos = _length(data, pos)
        if n > len(data) - pos:
            raise InvalidStatement("list longer than its bytes")
        items: list[Value] = []
        for _ in range(n):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if tag == _DICT:
        return _decode_dict(data, pos, depth)
    raise InvalidStatement(f"unknown tag {tag}")


def _decode_dict(data: bytes, pos: int, depth: int) -> tuple[Value, int]:
    n, pos = _length(data, pos)
    if n > len(data) - pos:
        raise InvalidStatement("dict longer than its bytes")
    result: dict[str, Value] = {}
    previous: bytes | None = None
    for _ in range(n):
        key, pos = _decode(data, pos, depth + 1)
        if not isinstance(key, str):
            raise InvalidStatement("dict key is not a string")
        raw_key = key.encode("utf-8")
        if previous is not None and raw_key <= previous:
            raise InvalidStatement("dict keys not strictly sorted")
        previous = raw_key
        result[key], pos = _decode(data, pos, depth + 1)
    return result, pos


# Text forms. Bytes travel in JSON as unpadded URL-safe base64; ids that
# people read or type are unpadded lowercase base32 (RFC 4648 alphabet).


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode unpadded (or exactly padded) URL-safe base64; raise ValueError if malformed."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64 text")
    stripped = text.rstrip("=")
    if text != stripped and len(text) % 4:
        raise ValueError("not canonical base64 text")
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64 text") from exc
    if b64e(raw) != stripped:
        raise ValueError("not canonical base64 text")
    return raw


def b32e(data: bytes) -> str:
    return base64.b32encode(data).rstrip(b"=").decode("ascii").lower()


def b32d(text: str) -> bytes:
    """Decode unpadded base32 in either case; raise ValueError if malformed."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base32 text")
    upper = text.upper()
    try:
        raw = base64.b32decode(upper + "=" * (-len(upper) % 8))
    except binascii.Error as exc:
        raise ValueError("not base32 text") from exc
    if b32e(raw) != text.lower():
        raise ValueError("not canonical base32 text")
    return raw
