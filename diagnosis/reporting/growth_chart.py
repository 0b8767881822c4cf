"""A figure over time as an SVG line chart for the PDF report (weasyprint runs no JavaScript, so the
browser's chart.js charts are drawn again here). Plain Python, no Django, no plotting library: the chart
is a handful of SVG elements whose text stays text in the PDF (``pdftotext`` reads the title and axes).

The x axis is a real time axis: each time point sits at its date's distance from the first (days), not
at an evenly spaced category.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from xml.sax.saxutils import escape

__all__ = ["nice_ticks", "render_growth_chart_svg"]

WIDTH, HEIGHT = 340, 190
LEFT, RIGHT, TOP, BOTTOM = 58, 36, 26, 44
DAY_MS = 86_400_000


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Return round tick values covering [low, high] (steps of 1, 2 or 5 × 10ⁿ, Heckbert's "nice numbers",
    Graphics Gems 1990).

    Raises
    ------
    ValueError
        When a bound is not finite or ``count`` < 2.
    """
    if not (math.isfinite(low) and math.isfinite(high)) or count < 2:
        raise ValueError("nice_ticks needs finite bounds and at least two ticks")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / (count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 0.5:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _number(value: float) -> str:
    text = f"{value:.4g}"
    return text if "e" not in text else f"{value:.2e}"


def render_growth_chart_svg(
    points: Sequence[tuple[int, float | None]],
    *,
    title: str,
    y_label: str,
    x_label: str,
    date_label: Callable[[int], str],
    color: str = "#1f77b4",
) -> str:
    """Draw one figure over time as an SVG line chart (340 × 190 px).

    Parameters
    ----------
    points
        ``(t_ms, value)`` pairs: the time point in ms since 1970-01-01 UTC and the figure in its unit;
        pairs with a None time or value are left out. Drawn in time order.
    title, y_label, x_label
        Text shown as given (already in the reader's language), escaped for XML.
    date_label
        Formats a time point (ms) as the x tick label (the report's date format).
    color
        The line's CSS colour.

    Returns
    -------
    str
        An ``<svg>`` element (no XML declaration) to inline in the report's HTML.

    Raises
    ------
    ValueError
        When fewer than two points have a time and a value.
    """
    drawn = sorted((int(t), float(v)) for t, v in points if t is not None and v is not None and math.isfinite(v))
    if len(drawn) < 2:
        raise ValueError("a chart over time needs at least two dated values")
    t0, t1 = drawn[0][0], drawn[-1][0]
    span = max(t1 - t0, DAY_MS)
    low, high = min(v for _t, v in drawn), max(v for _t, v in drawn)
    pad = (high - low) * 0.08
    ticks = nice_ticks(low - pad, high + pad)
    y_low, y_high = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: int) -> float:
        return LEFT + (t - t0) / span * plot_w

    def y(v: float) -> float:
        return TOP + (y_high - v) / (y_high - y_low) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="growth-chart" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Noto Sans CJK SC, sans-serif" font-size="9">',
             f'<text x="{WIDTH / 2:.1f}" y="14" text-anchor="middle" font-size="10.5" font-weight="bold">'
             f'{escape(title)}</text>']
    for tick in ticks:
        ty = y(tick)
        parts.append(f'<line x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" y2="{ty:.1f}" stroke="#ddd" stroke-width="0.6"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{ty + 3:.1f}" text-anchor="end">{escape(_number(tick))}</text>')
    # One x tick per time point, at its date's place on the time axis (a label too close to the one before
    # it is left out, its tick kept).
    last_label_x = -1e9
    for t, _v in drawn:
        tx = x(t)
        parts.append(f'<line x1="{tx:.1f}" y1="{TOP + plot_h}" x2="{tx:.1f}" y2="{TOP + plot_h + 4}" stroke="#555"/>')
        if tx - last_label_x >= 64:
            parts.append(f'<text x="{tx:.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{escape(date_label(t))}</text>')
            last_label_x = tx
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#555"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" stroke="#555"/>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(t):.1f},{y(v):.1f}" for i, (t, v) in enumerate(drawn))
    parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    for t, v in drawn:
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.8" fill="{color}"/>')
    parts.append("</svg>")
    return "".join(parts)
