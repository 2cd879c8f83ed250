"""Bar charts drawn on the server as SVG: no script, no third-party library, the numbers also in a table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 28  # room for the value axis and the day labels
X_LABELS = 6  # at most this many day labels, so they never overlap


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    summary: str  # what a screen reader says instead of the picture
    bars: list[Bar]
    ticks: list[Tick]
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: float = HEIGHT - BOTTOM


def bar_chart(chart_id: str, title: str, points: Sequence[tuple[str, int]], *, total: str | None = None) -> Chart:
    """A bar per point (label, value), on a value axis that starts at zero and ends at a round number. ``total``
    is the summary's total when the points are rounded (money drawn in whole units): the sum of rounded days is
    not what was earned."""
    top = nice_ceiling(max((value for _, value in points), default=0))
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    band = plot_width / max(len(points), 1)
    bars = []
    for n, (label, value) in enumerate(points):
        height = plot_height * value / top
        bars.append(
            Bar(
                round(LEFT + n * band + band * 0.1, 2),
                round(TOP + plot_height - height, 2),
                round(max(band * 0.8, 1.0), 2),
                round(height, 2),
                label,
                value,
            )
        )
    # A middle line only where it falls on a whole number (not for an axis of 1 or 5).
    shares = (0, 0.5, 1) if top % 2 == 0 else (0, 1)
    ticks = [Tick(round(TOP + plot_height * (1 - share), 2), int(top * share)) for share in shares]
    step = max(1, math.ceil(len(points) / X_LABELS))
    x_labels = [
        (round(LEFT + n * band + band / 2, 2), label[5:] if len(label) == 10 else label)
        for n, (label, _) in enumerate(points)
        if n % step == 0
    ]
    return Chart(chart_id, title, _summary(points, total), bars, ticks, x_labels)


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** (len(str(value)) - 1)
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _summary(points: Sequence[tuple[str, int]], total: str | None) -> str:
    if not points:
        return "No data."
    summed = sum(value for _, value in points)
    busiest = max(points, key=lambda point: point[1])
    span = f"From {points[0][0]} to {points[-1][0]}" if len(points) > 1 else f"On {points[0][0]}"
    if not summed and total is None:
        return f"{span}: none."
    return f"{span}: {total or summed} in total; the most, {busiest[1]}, on {busiest[0]}."
