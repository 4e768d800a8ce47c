"""Signed statements: the membership facts of a network.

A statement is canonical bytes (a dict, see encoding.py) and an Ed25519
signature over `spokes/v1/statement/<type>` NUL body. Every body names its type, the
protocol version, the network (except the genesis, which defines it), the
author's member id and public key, and a time in Unix seconds.

The rule this module keeps: a `Statement` value only exists once its body is
canonical, its author id matches its key, and its signature verifies. Code
that holds one never has to ask whether it was checked.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

from crypto import labels
from crypto.encoding import Value, b64d, b64e, decode, encode
from crypto.errors import InvalidStatement
from crypto.keys import IdentityKey, IdentityPublicKey, member_id_of

VERSION = 1
# A statement's body: room for the largest one the rules allow, the create
# event of a cell a split makes, which carries each moved member's key bundle
# (about 1.6 KiB with ML-KEM-768) and invite line: up to cell_max - cell_min
# = 98 members under the widest policy (crypto/network.py), about 170 KiB.
MAX_BODY_BYTES = 192 * 1024
_TYPE_RE = re.compile(r"^[a-z][a-z-]{0,31}$")
_COMMON = ("type", "v", "author", "key", "time")


@dataclass(frozen=True)
class Statement:
    """A verified statement. Build with `sign_statement` or `verify_statement`."""

    body: bytes
    signature: bytes
    fields: dict[str, Value] = field(compare=False, repr=False)

    @property
    def type(self) -> str:
        return cast(str, self.fields["type"])

    @property
    def author(self) -> bytes:
        return cast(bytes, self.fields["author"])

    @property
    def author_key(self) -> IdentityPublicKey:
        return IdentityPublicKey(cast(bytes, self.fields["key"]))

    @property
    def time(self) -> int:
        return cast(int, self.fields["time"])

    @property
    def network(self) -> bytes | None:
        return cast("bytes | None", self.fields.get("network"))

    @property
    def id(self) -> bytes:
        return statement_id(self.body)

    def to_wire(self) -> dict[str, str]:
        return {"body": b64e(self.body), "sig": b64e(self.signature)}

    def bytes_field(self, name: str, size: int | None = None) -> bytes:
        return get_bytes(self.fields, name, size)

    def int_field(self, name: str) -> int:
        return get_int(self.fields, name)

    def str_field(self, name: str, max_len: int = 256) -> str:
        return get_str(self.fields, name, max_len)


def statement_id(body: bytes) -> bytes:
    return hashlib.sha256(labels.STATEMENT_ID + body).digest()


def signing_context(statement_type: str) -> bytes:
    """`spokes/v1/statement/<type>` NUL: a namespace no other signature uses.

    Types are lowercase letters and dashes, so a context has no NUL but its
    last byte and no slash after the prefix: one type, one context, and no
    context is a prefix of another signature's.
    """
    if not _TYPE_RE.fullmatch(statement_type):
        raise ValueError("bad statement type")
    return labels.STATEMENT_SIGNATURE + statement_type.encode("ascii") + b"\x00"


def sign_statement(
    key: IdentityKey,
    statement_type: str,
    network: bytes | None,
    time: int,
    fields: dict[str, Value],
) -> Statement:
    """Build and sign a statement of `statement_type` with `fields`."""
    if not _TYPE_RE.fullmatch(statement_type):
        raise ValueError("bad statement type")
    clash = set(fields) & {*_COMMON, "network"}
    if clash:
        raise ValueError(f"fields clash with the common header: {sorted(clash)}")
    body_fields: dict[str, Value] = dict(fields)
    body_fields.update(
        {
            "type": statement_type,
            "v": VERSION,
            "author": key.member_id,
            "key": key.public_key().raw,
            "time": time,
        }
    )
    if network is not None:
        body_fields["network"] = network
    body = encode(body_fields)
    if len(body) > MAX_BODY_BYTES:
        raise ValueError("statement too large")
    signature = key.sign(signing_context(statement_type), body)
    return Statement(body=body, signature=signature, fields=body_fields)


def verify_statement(
    body: bytes,
    signature: bytes,
    expected_type: str,
    network: bytes | None,
) -> Statement:
    """Check bytes from elsewhere and return the Statement they make.

    `network` is the network the statement must belong to; None only for
    the genesis. Raises InvalidStatement or InvalidSignature.
    """
    return _verified(body, signature, expected_type, network)


# The same bytes verify to the same Statement every time, and a client (or
# the server) replays the same logs over and over within one process: the
# last statements verified are kept, keyed by everything the check depends
# on. Only successes are kept (a failure raises, and is checked afresh).
# A Statement and its fields are never changed once made.
@functools.lru_cache(maxsize=4096)
def _verified(
    body: bytes, signature: bytes, expected_type: str, network: bytes | None
) -> Statement:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidStatement("statement too large")
    fields = decode(body)
    if not isinstance(fields, dict):
        raise InvalidStatement("statement body is not a record")
    if get_str(fields, "type", 32) != expected_type:
        raise InvalidStatement(f"expected a {expected_type} statement")
    if get_int(fields, "v") != VERSION:
        raise InvalidStatement("unsupported statement version")
    get_int(fields, "time")
    key_raw = get_bytes(fields, "key", 32)
    if get_bytes(fields, "author", 32) != member_id_of(key_raw):
        raise InvalidStatement("author id does not match the author key")
    if network is None:
        if "network" in fields:
            raise InvalidStatement("a genesis names no network")
    elif fields.get("network") != network:
        raise InvalidStatement("statement belongs to another network")
    IdentityPublicKey(key_raw).verify(signing_context(expected_type), body, signature)
    # Read-only: the same Statement is handed to every caller that verifies these bytes.
    frozen = cast(dict[str, Value], MappingProxyType(fields))
    return Statement(body=body, signature=signature, fields=frozen)


def from_wire(wire: Any, expected_type: str, network: bytes | None) -> Statement:
    """Parse the JSON form {"body": b64, "sig": b64} and verify it."""
    if not isinstance(wire, dict):
        raise InvalidStatement("a statement is an object with body and sig")
    try:
        body = b64d(wire["body"])
        signature = b64d(wire["sig"])
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidStatement("a statement is an object with body and sig") from exc
    return verify_statement(body, signature, expected_type, network)


def pack(statement: Statement) -> Value:
    """A statement as a canonical value, for nesting inside other payloads."""
    return [statement.body, statement.signature]


def unpack(value: Value, expected_type: str, network: bytes | None) -> Statement:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], bytes)
        or not isinstance(value[1], bytes)
    ):
        raise InvalidStatement("a packed statement is [body, signature]")
    return verify_statement(value[0], value[1], expected_type, network)


# Typed field access for statement bodies and payloads.


def get_bytes(fields: dict[str, Value], name: str, size: int | None = None) -> bytes:
    value = fields.get(name)
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise InvalidStatement(f"field {name!r} must be {size or 'some'} bytes")
    return value


def get_int(fields: dict[str, Value], name: str, low: int = 0) -> int:
    value = fields.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidStatement(f"field {name!r} must be an integer >= {low}")
    return value


def get_str(fields: dict[str, Value], name: str, max_len: int) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidStatement(f"field {name!r} must be text of at most {max_len}")
    return value


def get_optional_bytes(fields: dict[str, Value], name: str, size: int) -> bytes | None:
    if fields.get(name) is None:
        return None
    return get_bytes(fields, name, size)
