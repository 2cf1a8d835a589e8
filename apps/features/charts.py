"""The preview's histogram, as a small SVG drawn on the server (the same look as the run
page's charts in apps.modeling.charts, which sits above this app)."""

from __future__ import annotations

from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

# About the width it is drawn at, so that its text matches the page's small print.
WIDTH, HEIGHT = 540, 130
LEFT, RIGHT, TOP, BOTTOM = 8, 8, 8, 22
BAR = "#0f6e7a"


def _number(value: float) -> str:
    return f"{value:.3g}"


def histogram_chart(histogram: dict[str, Any], title: str = "Distribution") -> SafeString | None:
    """Bars of a preview's histogram: one per value for a few distinct values (flags,
    bands), else equal-width bins between the minimum and the maximum."""
    counts = histogram.get("counts") or []
    if not counts:
        return None
    if histogram.get("kind") == "values":
        labels = [_number(v) for v in histogram["values"]]
        hovers = [f"{label}: {n:,} cases" for label, n in zip(labels, counts, strict=True)]
        ends = (labels[0], labels[-1]) if len(labels) > 1 else (labels[0], "")
    else:
        edges = histogram["edges"]
        hovers = [
            f"{_number(edges[i])} to {_number(edges[i + 1])}: {n:,} cases"
            for i, n in enumerate(counts)
        ]
        ends = (_number(edges[0]), _number(edges[-1]))
        # The end bins hold the few values beyond the drawn range (see _histogram).
        if histogram.get("below"):
            ends = (f"≤ {ends[0]}", ends[1])
            hovers[0] = f"{hovers[0]} (with {histogram['below']:,} below)"
        if histogram.get("above"):
            ends = (ends[0], f"≥ {ends[1]}")
            hovers[-1] = f"{hovers[-1]} (with {histogram['above']:,} above)"
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = max(counts) or 1
    step = plot_w / len(counts)
    gap = min(2.0, step * 0.15)
    parts = [
        f'<svg class="chart histogram" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" '
        'class="diagonal"/>',
    ]
    for i, (n, hover) in enumerate(zip(counts, hovers, strict=True)):
        height = plot_h * n / top
        x = LEFT + i * step + gap / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{step - gap:.1f}" '
            f'height="{height:.1f}" fill="{BAR}"><title>{escape(hover)}</title></rect>'
        )
    if histogram.get("kind") == "values" and len(counts) <= 12:
        for i, label in enumerate(labels):
            parts.append(
                f'<text x="{LEFT + (i + 0.5) * step:.1f}" y="{HEIGHT - 6}" class="tick" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    else:
        parts.append(
            f'<text x="{LEFT}" y="{HEIGHT - 6}" class="tick">{escape(ends[0])}</text>'
            f'<text x="{LEFT + plot_w}" y="{HEIGHT - 6}" class="tick" text-anchor="end">'
            f"{escape(ends[1])}</text>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it is escaped above
