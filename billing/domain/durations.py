"""Parsing of billing intervals (``1 month``) and fixed offsets (``3d``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Unit(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True)
class Interval:
    """A calendar interval: ``count`` days, weeks, months or years."""

    count: int
    unit: Unit

    def __str__(self) -> str:
        return f"{self.count} {self.unit}{'' if self.count == 1 else 's'}"

    @property
    def months(self) -> int:
        """Length in months for month and year units, 0 otherwise."""
        return {Unit.MONTH: 1, Unit.YEAR: 12}.get(self.unit, 0) * self.count

    @property
    def days(self) -> int:
        """Length in days for day and week units, 0 otherwise."""
        return {Unit.DAY: 1, Unit.WEEK: 7}.get(self.unit, 0) * self.count


_INTERVAL_UNITS = {
    "d": Unit.DAY,
    "day": Unit.DAY,
    "days": Unit.DAY,
    "w": Unit.WEEK,
    "week": Unit.WEEK,
    "weeks": Unit.WEEK,
    "month": Unit.MONTH,
    "months": Unit.MONTH,
    "y": Unit.YEAR,
    "year": Unit.YEAR,
    "years": Unit.YEAR,
}

_OFFSET_SECONDS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}

_AMOUNT_UNIT = re.compile(r"^\s*(\d{1,6})\s*([a-zA-Z]+)\s*$")


def _split(text: object, what: str) -> tuple[int, str]:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text such as '1 month', got {text!r}")
    match = _AMOUNT_UNIT.match(text)
    if match is None:
        raise ValueError(f"{what} must look like '<number> <unit>', got {text!r}")
    return int(match.group(1)), match.group(2).lower()


def parse_interval(text: object) -> Interval:
    """``'1 month'``, ``'3 months'``, ``'2 weeks'``, ``'1 year'``, ``'30d'`` -> Interval."""
    count, unit = _split(text, "interval")
    if unit not in _INTERVAL_UNITS:
        raise ValueError(f"interval unit must be day, week, month or year, got {text!r}")
    if count < 1:
        raise ValueError(f"interval must be at least 1, got {text!r}")
    return Interval(count, _INTERVAL_UNITS[unit])


def parse_offset(text: object) -> timedelta:
    """``'1d'``, ``'12h'``, ``'30m'``, ``'3 days'`` -> timedelta (fixed length, no months)."""
    count, unit = _split(text, "duration")
    if unit not in _OFFSET_SECONDS:
        raise ValueError(f"duration unit must be s, m, h, d or w, got {text!r}")
    return timedelta(seconds=count * _OFFSET_SECONDS[unit])


def format_offset(delta: timedelta) -> str:
    """The shortest exact spelling of a whole-second duration: ``3d``, ``36h``, ``90s``."""
    seconds = int(delta.total_seconds())
    for suffix, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"
