"""Tests of client.vetting that need no server."""

from __future__ import annotations

from client.vetting import normalize_safety_number


def test_safety_numbers_compare_by_digits_only() -> None:
    assert normalize_safety_number("12345 67890-11111") == normalize_safety_number(
        "123456789011111"
    )
