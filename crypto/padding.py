"""Padding plaintexts to size buckets, so a ciphertext's length says little.

ISO/IEC 7816-4 padding: the data, one 0x80 byte, then zeros up to the
smallest bucket that holds data and marker. Unpadding is strict: the length
must be a bucket, the marker must be there, and the bucket must be the
smallest that fits (one plaintext has exactly one padded form).
"""

from __future__ import annotations

from collections.abc import Sequence

from crypto.errors import DecryptionFailed

MARKER = b"\x80"


def pad(data: bytes, buckets: Sequence[int]) -> bytes:
    """`data` ‖ 0x80 ‖ zeros, to the smallest bucket of `buckets` (ascending) it fits in."""
    for bucket in buckets:
        if len(data) < bucket:
            return data + MARKER + bytes(bucket - len(data) - 1)
    raise ValueError(f"at most {buckets[-1] - 1} bytes can be padded")


def unpad(padded: bytes, buckets: Sequence[int]) -> bytes:
    """The data `pad` padded; DecryptionFailed for anything `pad` can't have made."""
    if len(padded) not in buckets:
        raise DecryptionFailed("the plaintext is not a padded bucket")
    end = padded.rstrip(b"\x00")
    if not end.endswith(MARKER):
        raise DecryptionFailed("the plaintext's padding is damaged")
    data = end[: -len(MARKER)]
    if pad(data, buckets) != padded:
        raise DecryptionFailed("the plaintext is padded past its bucket")
    return data
