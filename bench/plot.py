"""A line chart as SVG text, drawn by the bench itself (no plotting library): panels stacked
one above the other, sharing the x axis (seconds since billing began)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, PANEL, LEFT, RIGHT, TOP, BOTTOM = 760, 190, 70, 20, 34, 36
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    series: dict[str, Sequence[float]]  # name -> one value per x


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for
    nothing): quarters of it are round numbers too."""
    if value <= 0:
        return 1.0
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    return next(step * scale for step in (1, 2, 2.5, 5, 10) if step * scale >= value)


def chart(title: str, xs: Sequence[float], panels: Sequence[Panel]) -> str:
    height = TOP + len(panels) * (PANEL + BOTTOM) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
    ]
    x_max = nice_ceiling(max(xs, default=0.0))
    for index, panel in enumerate(panels):
        parts += _panel(panel, xs, x_max, TOP + index * (PANEL + BOTTOM))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(panel: Panel, xs: Sequence[float], x_max: float, top: int) -> list[str]:
    inner = WIDTH - LEFT - RIGHT
    y_max = nice_ceiling(max((max(v, default=0.0) for v in panel.series.values()), default=0.0))

    def point(x: float, y: float) -> str:
        return f"{LEFT + inner * x / x_max:.1f},{top + PANEL - PANEL * y / y_max:.1f}"

    parts = [
        f'<rect x="{LEFT}" y="{top}" width="{inner}" height="{PANEL}" fill="none" stroke="#999"/>',
        f'<text x="{LEFT}" y="{top - 6}">{escape(panel.title)}</text>',
    ]
    for tick in range(5):
        y, x = y_max * tick / 4, x_max * tick / 4
        ty = top + PANEL - PANEL * tick / 4
        label = f"{y:,.0f}" if y_max >= 4 else f"{y:g}"  # 0, 0.25, ... 1: not 0, 0, 0, 1, 1
        parts.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{label}</text>')
        tx = LEFT + inner * tick / 4
        parts.append(
            f'<text x="{tx:.1f}" y="{top + PANEL + 14}" text-anchor="middle">{x:,.0f} s</text>'
        )
    parts.append(
        f'<text x="12" y="{top + PANEL / 2:.0f}" transform="rotate(-90 12 {top + PANEL / 2:.0f})"'
        f' text-anchor="middle">{escape(panel.unit)}</text>'
    )
    for n, (name, values) in enumerate(panel.series.items()):
        colour = COLOURS[n % len(COLOURS)]
        line = " ".join(point(x, y) for x, y in zip(xs, values, strict=True))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{line}"/>'
        )
        parts.append(
            f'<text x="{LEFT + inner - 4}" y="{top + 14 + 13 * n}" text-anchor="end" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    return parts
