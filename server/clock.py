"""Time as a dependency: services take a :class:`Clock` instead of reading the time,
so tests can pin or advance it.

Rule: all times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that returns the current time when called."""

    def __call__(self) -> datetime: ...


def now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


@dataclass
class FixedClock:
    """A clock that stands still until told to move (for tests)."""

    current: datetime

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.current += timedelta(seconds=seconds)
