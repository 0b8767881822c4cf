"""A figure over time as an SVG line chart for the PDF report (weasyprint runs no JavaScript, so the
browser's chart.js charts are drawn again here, with matplotlib). Plain Python, no Django. The chart's
text stays text in the SVG (``svg.fonttype: none``), so the PDF's text layer (``pdftotext``) holds the
title and axes, set in the report's CJK font.

The x axis is a real time axis: each time point sits at its date's distance from the first (days), not
at an evenly spaced category.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence

__all__ = ["render_growth_chart_svg"]

WIDTH, HEIGHT = 340, 190  # px (1/72 in, as matplotlib's SVG writes them)
DAY_MS = 86_400_000
LINE_GID = "growth-line"
# The report's fonts (Debian fonts-noto-cjk), then matplotlib's own for Latin text where they are missing.
FONTS = ["Noto Sans CJK SC", "Noto Serif CJK SC", "DejaVu Sans"]


def render_growth_chart_svg(
    points: Sequence[tuple[int, float | None]],
    *,
    title: str,
    y_label: str,
    x_label: str,
    date_label: Callable[[int], str],
    color: str = "#1f77b4",
) -> str:
    """Draw one figure over time as an SVG line chart (340 × 190 px) with matplotlib.

    Parameters
    ----------
    points
        ``(t_ms, value)`` pairs: the time point in ms since 1970-01-01 UTC and the figure in its unit;
        pairs with a None time or value are left out. Drawn in time order.
    title, y_label, x_label
        Text shown as given (already in the reader's language; matplotlib escapes it for XML).
    date_label
        Formats a time point (ms) as the x tick label (the report's date format).
    color
        The line's CSS colour.

    Returns
    -------
    str
        An ``<svg>`` element (no XML declaration) to inline in the report's HTML. The line with its
        markers is the group ``<g id="growth-line">``.

    Raises
    ------
    ValueError
        When fewer than two points have a time and a value.
    """
    drawn = sorted((int(t), float(v)) for t, v in points if t is not None and v is not None and math.isfinite(v))
    if len(drawn) < 2:
        raise ValueError("a chart over time needs at least two dated values")
    import matplotlib
    from matplotlib.figure import Figure  # not pyplot: no global figure state in a web process

    t0 = drawn[0][0]
    days = [(t - t0) / DAY_MS for t, _v in drawn]
    values = [v for _t, v in drawn]
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "growth-chart", "font.size": 7,
                                "font.family": "sans-serif", "font.sans-serif": FONTS, "axes.unicode_minus": False}):
        figure = Figure(figsize=(WIDTH / 72, HEIGHT / 72), dpi=72, layout="constrained")
        axes = figure.add_subplot()
        axes.plot(days, values, color=color, linewidth=1.8, marker="o", markersize=4, gid=LINE_GID)
        # One x tick per time point, at its date's place; a label within 12 % of the span of the one before
        # it is left out (its tick kept).
        span = max(days[-1], 1.0)
        labels, last = [], -math.inf
        for t, day in zip((t for t, _v in drawn), days):
            keep = day - last >= 0.12 * span
            labels.append(date_label(t) if keep else "")
            last = day if keep else last
        axes.set_xticks(days, labels=labels)
        axes.set_xlim(-0.04 * span, 1.04 * span)
        axes.margins(y=0.12)
        axes.grid(axis="y", color="#dddddd", linewidth=0.6)
        axes.set_title(title, fontsize=8.5, fontweight="bold")
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    svg = out.getvalue()
    # Inline in HTML: no XML declaration or DOCTYPE; the class lets the report's CSS size it.
    svg = svg[svg.index("<svg"):]
    return re.sub(r"^<svg ", '<svg class="growth-chart" ', svg, count=1)
