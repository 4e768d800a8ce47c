"""Reading request bodies and fields, with one 4xx error for each way they go wrong.

Rules: bytes travel as URL-safe base64 *without* padding (padding is accepted
on input); every getter checks type and size before anything else touches the
value and names the offending field in its error. JSON with duplicate keys or
NaN/Infinity is refused, so the server and a verifying client cannot read one
body two ways.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from aiohttp import web

from crypto.encoding import b64d, b64e
from server.errors import ApiError, ErrorCode, bad_request

T = TypeVar("T")
JsonObject = dict[str, Any]

ID_BYTES = 32


# One canonical base64 for the whole project: the wire form is crypto's.
b64 = b64e
b64decode = b64d


async def read_json(request: web.Request, max_bytes: int | None = None) -> JsonObject:
    """The request body as a JSON object.

    415 unsupported_media_type unless Content-Type is application/json;
    413 body_too_large beyond ``max_bytes`` (default: the app's client_max_size);
    400 invalid_json if malformed; 400 bad_request if not an object.
    """
    if request.content_type != "application/json":
        raise ApiError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
    limit = max_bytes if max_bytes is not None else request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()  # aiohttp stops reading past client_max_size
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, ErrorCode.INVALID_JSON, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    return value


def get_str(d: Mapping[str, Any], key: str, max_len: int, *, min_len: int = 0) -> str:
    """A string field of ``min_len``..``max_len`` characters."""
    value = _required(d, key)
    if not isinstance(value, str):
        raise bad_request(f"field {key!r} must be a string")
    if not min_len <= len(value) <= max_len:
        raise bad_request(f"field {key!r} must be {min_len} to {max_len} characters long")
    return value


def get_b64(d: Mapping[str, Any], key: str, min_len: int, max_len: int) -> bytes:
    """A bytes field (wire base64) decoding to ``min_len``..``max_len`` bytes."""
    value = _required(d, key)
    if not isinstance(value, str):
        raise bad_request(f"field {key!r} must be a base64url string")
    # Bound the text before decoding so huge values cost nothing.
    if len(value) > 4 * ((max_len + 2) // 3):
        raise bad_request(f"field {key!r} must be at most {max_len} bytes")
    try:
        data = b64decode(value)
    except ValueError:
        raise bad_request(f"field {key!r} is not valid base64url") from None
    if not min_len <= len(data) <= max_len:
        raise bad_request(f"field {key!r} must be {min_len} to {max_len} bytes")
    return data


def get_b64_id(d: Mapping[str, Any], key: str, length: int = ID_BYTES) -> bytes:
    """An identifier field: base64url of exactly ``length`` bytes."""
    return get_b64(d, key, length, length)


def get_int(d: Mapping[str, Any], key: str, min_value: int, max_value: int) -> int:
    """An integer field within ``min_value``..``max_value`` (booleans refused)."""
    value = _required(d, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"field {key!r} must be an integer")
    if not min_value <= value <= max_value:
        raise bad_request(f"field {key!r} must be between {min_value} and {max_value}")
    return value


def parse_natural(text: str, what: str, min_value: int, max_value: int) -> int:
    """A whole number from a path or a query string: ASCII digits only, ``min_value``..``max_value``.

    Stricter than int(), which also reads "+1", "1_0", " 1" and other scripts' digits.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise bad_request(f"{what} must be an integer from {min_value} to {max_value}")
    value = int(text)
    if not min_value <= value <= max_value:
        raise bad_request(f"{what} must be an integer from {min_value} to {max_value}")
    return value


def query_params(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The query string's parameters: only ``allowed`` ones, each at most once.

    A misspelt parameter would otherwise be ignored, and a repeated one read
    one of two ways; both are 400 bad_request.
    """
    query: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            raise bad_request(f"unknown query parameter {name[:40]!r}")
        if name in query:
            raise bad_request(f"query parameter {name!r} given twice")
        query[name] = value
    return query


def get_bool(d: Mapping[str, Any], key: str) -> bool:
    """A boolean field."""
    value = _required(d, key)
    if not isinstance(value, bool):
        raise bad_request(f"field {key!r} must be true or false")
    return value


def get_optional(
    d: Mapping[str, Any], key: str, getter: Callable[..., T], *args: Any, **kwargs: Any
) -> T | None:
    """``getter(d, key, ...)`` if the field is present and not null, else None."""
    if d.get(key) is None:
        return None
    return getter(d, key, *args, **kwargs)


def _required(d: Mapping[str, Any], key: str) -> Any:
    if key not in d or d[key] is None:
        raise bad_request(f"field {key!r} is required")
    return d[key]


def _too_large(limit: int) -> ApiError:
    return ApiError(413, ErrorCode.BODY_TOO_LARGE, f"the request body exceeds {limit} bytes")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> JsonObject:
    result: JsonObject = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
