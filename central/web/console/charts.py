"""Bar charts as data for an inline SVG; the page shows the same numbers in a table.

:func:`bar_chart` turns labelled values into bars laid out in a fixed view box (the
template draws them as ``<rect>`` and ``<text>``; no script, no chart library). Each bar
keeps its label and value, so the chart's ``<title>``s and the table beside it say the
same thing as the picture, for screen readers and for printing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 640
HEIGHT = 220
BOTTOM = 30  # room for the labels under the bars
TOP = 20  # room for the values above them


@dataclass(frozen=True, kw_only=True)
class Bar:
    label: str
    value: float
    text: str  # the value as shown
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, kw_only=True)
class Chart:
    title: str
    unit: str
    bars: list[Bar]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def baseline(self) -> int:
        return self.height - BOTTOM


def bar_chart(
    title: str, unit: str, points: Sequence[tuple[str, float]], *, digits: int = 0
) -> Chart:
    """Bars for ``points`` (label, value >= 0), scaled to the tallest."""
    top = max((v for _, v in points), default=0.0) or 1.0
    n = max(1, len(points))
    slot = WIDTH / n
    usable = HEIGHT - BOTTOM - TOP
    bars = []
    for i, (label, value) in enumerate(points):
        h = max(0.0, value) / top * usable
        bars.append(
            Bar(
                label=label,
                value=value,
                text=f"{value:.{digits}f}",
                x=round(i * slot + slot * 0.15, 1),
                y=round(HEIGHT - BOTTOM - h, 1),
                width=round(slot * 0.7, 1),
                height=round(h, 1),
            )
        )
    return Chart(title=title, unit=unit, bars=bars)
