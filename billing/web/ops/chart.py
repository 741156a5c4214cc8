"""The overview's chart, drawn on the server: paid and failed charges per day as bars side
by side, scaled to the busiest day. Pure geometry; the template writes the SVG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from billing.services.charge_days import Day

WIDTH = 720
HEIGHT = 220
LEFT = 40  # room for the scale
BOTTOM = 20  # room for the dates
TOP = 10
LABEL_EVERY = 10  # days between two dates under the bars


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # "paid" | "failed": the CSS class


@dataclass(frozen=True)
class Column:
    x: float
    width: float
    title: str  # what a pointer over the day shows
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    columns: tuple[Column, ...]
    labels: tuple[Label, ...]
    peak: int
    baseline: float
    paid: int
    failed: int


def draw(days: Sequence[Day], width: int = WIDTH, height: int = HEIGHT) -> Chart:
    peak = max((max(day.paid, day.failed) for day in days), default=0)
    plot = height - TOP - BOTTOM
    step = (width - LEFT) / max(1, len(days))
    columns = tuple(_column(day, LEFT + n * step, step, peak, plot) for n, day in enumerate(days))
    labels = [Label(4, TOP + 10, str(peak)), Label(4, TOP + plot, "0")]
    labels += [
        Label(LEFT + n * step, height - 4, day.day.strftime("%m-%d"))
        for n, day in enumerate(days)
        if n % LABEL_EVERY == 0
    ]
    paid = sum(day.paid for day in days)
    failed = sum(day.failed for day in days)
    return Chart(width, height, columns, tuple(labels), peak, TOP + plot, paid, failed)


def _column(day: Day, x: float, step: float, peak: int, plot: float) -> Column:
    bars = tuple(
        _bar(x + step * offset, step * 0.4, plot * count / peak, plot, kind)
        for offset, count, kind in ((0.1, day.paid, "paid"), (0.5, day.failed, "failed"))
        if count > 0
    )
    title = f"{day.day.isoformat()}: {day.paid} paid, {day.failed} failed"
    return Column(round(x, 2), round(step, 2), title, bars)


def _bar(x: float, width: float, tall: float, plot: float, kind: str) -> Bar:
    return Bar(round(x, 2), round(TOP + plot - tall, 2), round(width, 2), round(tall, 2), kind)
