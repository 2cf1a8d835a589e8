"""Small SVG charts for the run and comparison pages, drawn on the server.

Inline SVG needs no JavaScript, prints, and passes a strict Content Security Policy; the few
chart kinds a run page needs (curves, a reliability diagram, the objective per month) are a
polyline each. A charting library would bring a JavaScript bundle for the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 360, 260
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 14, 40
PALETTE = ("#0f6e7a", "#c2410c", "#6d28d9", "#15803d")


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = ""
    dashed: bool = False
    points: bool = False
    labels: list[str] = field(default_factory=list)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    import math

    span = (high - low) or 1.0
    raw = span / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def line_chart(
    series: list[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    diagonal: bool = False,
    x_ticks: list[tuple[float, str]] | None = None,
    legend: str | None = "lower right",
    gaps: list[tuple[float, str]] | None = None,
) -> SafeString:
    """A chart of lines in the unit square (or the given ranges), with a legend. A y of None
    breaks its line; `gaps` marks such places across the plot, each with its reason."""
    x0, x1 = x_range
    y0, y1 = y_range
    # A legend above the plot takes a line of its own there.
    top = TOP + 18 if legend == "above" else TOP
    span_x = (x1 - x0) or 1.0
    span_y = (y1 - y0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - top - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / span_x * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / span_y) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{plot_h}" class="plot"/>',
    ]
    for value in nice_ticks(y0, y1):
        y = py(value)
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{LEFT - 5}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{_fmt(value)}</text>"
        )
    ticks = x_ticks or [(v, _fmt(v)) for v in nice_ticks(x0, x1)]
    for i, (value, text) in enumerate(ticks):
        x = px(value)
        # The last tick ends at the plot's edge, so that it is not cut off.
        anchor = "end" if i == len(ticks) - 1 and x >= LEFT + plot_w - 1 else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 14}" class="tick" text-anchor="{anchor}">'
            f"{escape(text)}</text>"
        )
    if diagonal:
        parts.append(
            f'<line x1="{px(x0):.1f}" y1="{py(y0):.1f}" x2="{px(x1):.1f}" y2="{py(y1):.1f}" '
            'class="diagonal"/>'
        )
    for value, reason in gaps or []:
        # Hatched across the whole height: no value there, which a point at 0 would hide.
        x = px(value)
        parts.append(
            f'<g class="gap"><title>{escape(reason)}</title>'
            f'<rect x="{x - 5:.1f}" y="{top}" width="10" height="{plot_h}" fill="#98a2b3" '
            'fill-opacity="0.15"/>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#98a2b3" '
            'stroke-dasharray="3 3"/></g>'
        )
    for n, s in enumerate(series):
        color = s.color or PALETTE[n % len(PALETTE)]
        segments: list[list[str]] = [[]]
        for x, y in zip(s.xs, s.ys, strict=False):
            if y is None:
                segments.append([])
                continue
            segments[-1].append(f"{px(x):.1f},{py(y):.1f}")
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        for points in segments:
            if len(points) > 1:
                parts.append(
                    f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" '
                    f'stroke-width="2"{dash}/>'
                )
        if s.points:
            for i, (x, y) in enumerate(zip(s.xs, s.ys, strict=False)):
                if y is None:
                    continue
                label = s.labels[i] if i < len(s.labels) else f"{_fmt(y)}"
                parts.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}">'
                    f"<title>{escape(s.name)}: {escape(label)}</title></circle>"
                )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" class="axis" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    # The legend sits in a corner of the plot on a white box, above the curves.
    if not legend or not series:
        parts.append("</svg>")
        return mark_safe("".join(parts))  # every text in it is escaped above
    if legend == "above":
        x = LEFT
        for n, s in enumerate(series):
            color = s.color or PALETTE[n % len(PALETTE)]
            dash = ' stroke-dasharray="5 4"' if s.dashed else ""
            parts.append(
                f'<line x1="{x:.1f}" x2="{x + 16:.1f}" y1="{TOP}" y2="{TOP}" stroke="{color}" '
                f'stroke-width="2"{dash}/>'
                f'<text x="{x + 20:.1f}" y="{TOP + 4}" class="legend">{escape(s.name)}</text>'
            )
            x += 20 + 6.2 * len(s.name) + 14
        parts.append("</svg>")
        return mark_safe("".join(parts))  # every text in it is escaped above
    width = 8 + 6.2 * max(len(s.name) for s in series) + 22
    height = 14 * len(series) + 6
    box_x = LEFT + 4 if "left" in legend else LEFT + plot_w - width - 4
    box_y = top + 4 if "upper" in legend else top + plot_h - height - 4
    parts.append(
        f'<rect x="{box_x:.1f}" y="{box_y:.1f}" width="{width:.1f}" height="{height}" '
        'class="legend-box"/>'
    )
    for n, s in enumerate(series):
        color = s.color or PALETTE[n % len(PALETTE)]
        y = box_y + 14 * n + 14
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        parts.append(
            f'<line x1="{box_x + 6:.1f}" x2="{box_x + 22:.1f}" y1="{y - 4:.1f}" '
            f'y2="{y - 4:.1f}" stroke="{color}" stroke-width="2"{dash}/>'
            f'<text x="{box_x + 26:.1f}" y="{y:.1f}" class="legend">{escape(s.name)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _area(xs: list[float], ys: list[float]) -> float:
    import numpy as np

    return float(np.trapezoid(ys, xs)) if hasattr(np, "trapezoid") else float(np.trapz(ys, xs))


def roc_chart(
    curves: dict, extra: dict | None = None, names: tuple[str, str] = ("", "")
) -> SafeString:
    def name(label: str, c: dict) -> str:
        return f"{label or 'ROC'} (AUC {_area(c['roc']['fpr'], c['roc']['tpr']):.2f})"

    series = [Series(name(names[0], curves), curves["roc"]["fpr"], curves["roc"]["tpr"])]
    if extra:
        series.append(
            Series(name(names[1], extra), extra["roc"]["fpr"], extra["roc"]["tpr"], dashed=True)
        )
    return line_chart(
        series,
        title=f"ROC curve of {curves['class']}",
        x_label="False positive rate",
        y_label="True positive rate",
        diagonal=True,
    )


def pr_chart(
    curves: dict, extra: dict | None = None, names: tuple[str, str] = ("", "")
) -> SafeString:
    base = curves["pr"]["base_rate"]
    series = [
        Series(names[0] or "Precision", curves["pr"]["recall"], curves["pr"]["precision"]),
        Series("Base rate", [0, 1], [base, base], color="#98a2b3", dashed=True),
    ]
    if extra:
        series.insert(
            1, Series(names[1], extra["pr"]["recall"], extra["pr"]["precision"], dashed=True)
        )
    return line_chart(
        series,
        title=f"Precision-recall curve of {curves['class']}",
        x_label="Recall",
        y_label="Precision",
        legend="upper right",
    )


def calibration_chart(curves: dict) -> SafeString:
    cal = curves["calibration"]
    return line_chart(
        [
            Series(
                "Observed",
                cal["predicted"],
                cal["observed"],
                points=True,
                labels=[
                    f"predicted {p:.2f}, observed {o:.2f}"
                    for p, o in zip(cal["predicted"], cal["observed"], strict=True)
                ],
            )
        ],
        title=f"Calibration of P({curves['class']})",
        x_label="Predicted probability",
        y_label="Observed share",
        diagonal=True,
        legend=None,
    )


def slices_chart(
    slice_sets: list[tuple[str, list[dict]]], objective_label: str
) -> SafeString | None:
    """The objective per month; one line per source (cross-validation, held-out, since
    training) or per model version when comparing. A month where the objective has no value
    is a gap in its line, marked on the plot and said under it (why, from the row's
    `undefined`), not a point at 0."""
    periods = sorted({s["period"] for _, rows in slice_sets for s in rows})
    values = [s["objective"] for _, rows in slice_sets for s in rows if s["objective"] is not None]
    if not periods or not values:
        return None
    index = {p: i for i, p in enumerate(periods)}
    missing: dict[str, list[str]] = {}
    for name, rows in slice_sets:
        for s in rows:
            if s["objective"] is None:
                why = s.get("undefined") or "no value"
                missing.setdefault(s["period"], []).append(
                    f"{name} — {why}" if len(slice_sets) > 1 else why
                )
    # Marked only where no line has a value: there the gap is the whole month's.
    valued = {s["period"] for _, rows in slice_sets for s in rows if s["objective"] is not None}
    gaps = [
        (index[p], f"{p}: {objective_label} {'; '.join(why)}")
        for p, why in sorted(missing.items())
        if p not in valued
    ]
    low, high = min(values), max(values)
    pad = max(0.02, (high - low) * 0.15)
    y_range = (max(0.0, low - pad), min(1.0, high + pad)) if high <= 1 else (low - pad, high + pad)
    series = []
    for name, rows in slice_sets:
        rows = sorted(rows, key=lambda s: s["period"])
        series.append(
            Series(
                name,
                [index[s["period"]] for s in rows],
                [s["objective"] for s in rows],
                points=True,
                labels=[
                    f"{s['period']}: {s['objective']:.3f} on {s['n']} cases"
                    if s["objective"] is not None
                    else ""
                    for s in rows
                ],
            )
        )
    # At most five month labels, so that they never run into each other.
    step = max(1, -(-len(periods) // 5))
    ticks = [(i, periods[i]) for i in range(0, len(periods), step)]
    chart = line_chart(
        series,
        title=f"{objective_label} per month",
        x_label="Month of the cases",
        y_label=objective_label[:28],
        x_range=(0, max(1, len(periods) - 1)),
        y_range=y_range,
        x_ticks=ticks,
        legend="above",
        gaps=gaps,
    )
    if not missing:
        return chart
    notes = "; ".join(f"{p}, {', '.join(why)}" for p, why in sorted(missing.items()))
    return mark_safe(  # the chart is escaped above, the note here
        f'{chart}<p class="small muted chart-note">Gaps, not zeros, where '
        f"{escape(objective_label)} has no value: {escape(notes)}.</p>"
    )


DERIVED_COLOR = "#c2410c"
NAME_CHARS = 24


def importance_chart(
    importance: dict, derived: set[str] | frozenset[str] = frozenset(), limit: int = 25
) -> SafeString | None:
    """Permutation importance as horizontal bars, largest first: the drop in the objective
    when a feature is shuffled, with ± one standard deviation over the repeats. Derived
    features are drawn in a colour of their own."""
    rows = (importance or {}).get("features") or []
    if not rows:
        return None
    shown = rows[:limit]
    # Drawn across a whole card: wide, so that its text stays the size of the page's.
    row_h, label_w, right = 20, 190, 80
    width = 900
    top, bottom = 26 if derived else 8, 36
    plot_w = width - label_w - right
    height = top + row_h * len(shown) + bottom
    lows = [r["mean"] - r["std"] for r in shown]
    highs = [r["mean"] + r["std"] for r in shown]
    low, high = min(0.0, *lows), max(0.0, *highs)
    if high - low < 1e-9:
        high = low + 0.01
    ticks = nice_ticks(low, high, 6)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    # Decimals enough to tell the ticks (and the bars) apart: drops in an objective are often
    # thousandths.
    step = ticks[1] - ticks[0] if len(ticks) > 1 else high - low
    tick_digits = max(0, -math.floor(math.log10(step))) if step > 0 else 3
    biggest = max(abs(r["mean"]) for r in shown) or 1.0
    value_digits = min(6, max(3, 2 - math.floor(math.log10(biggest))))

    def px(value: float) -> float:
        return label_w + (value - low) / (high - low) * plot_w

    metric = importance.get("metric", "objective")
    title = f"Permutation importance: drop in {metric} when a feature is shuffled"
    parts = [
        f'<svg class="chart importance" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{label_w}" y="{top - 4}" width="{plot_w}" height="{row_h * len(shown) + 8}" '
        'class="plot"/>',
    ]
    for value in ticks:
        x = px(value)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + row_h * len(shown) + 4}" '
            'class="grid"/>'
            f'<text x="{x:.1f}" y="{top + row_h * len(shown) + 17}" class="tick" '
            f'text-anchor="middle">{value:.{tick_digits}f}</text>'
        )
    zero = px(0.0)
    for i, row in enumerate(shown):
        y = top + i * row_h
        name = row["name"]
        is_derived = name in derived
        color = DERIVED_COLOR if is_derived else PALETTE[0]
        label = name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
        start, end = sorted((zero, px(row["mean"])))
        hover = f"{name}{' (derived)' if is_derived else ''}: {row['mean']:+.4f} ± {row['std']:.4f}"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + row_h / 2 + 4:.1f}" class="legend" '
            f'text-anchor="end">{escape(label)}<title>{escape(name)}</title></text>'
            f'<rect x="{start:.1f}" y="{y + 3}" width="{max(end - start, 0.8):.1f}" '
            f'height="{row_h - 6}" fill="{color}"><title>{escape(hover)}</title></rect>'
        )
        text_x = end
        if row["std"] > 0:
            a, b = px(row["mean"] - row["std"]), px(row["mean"] + row["std"])
            text_x = max(end, b)
            parts.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y + row_h / 2:.1f}" '
                f'y2="{y + row_h / 2:.1f}" stroke="#1d2433" stroke-width="1"/>'
            )
        parts.append(
            f'<text x="{text_x + 4:.1f}" y="{y + row_h / 2 + 4:.1f}" class="tick">'
            f"{row['mean']:.{value_digits}f}</text>"
        )
    parts.append(
        f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 4}" '
        f'y2="{top + row_h * len(shown) + 4}" stroke="#98a2b3"/>'
    )
    parts.append(
        f'<text x="{label_w + plot_w / 2:.1f}" y="{height - 4}" class="axis" '
        f'text-anchor="middle">Drop in {escape(metric[:40])} when shuffled</text>'
    )
    if derived:
        parts.append(
            f'<rect x="{label_w}" y="4" width="10" height="10" fill="{PALETTE[0]}"/>'
            f'<text x="{label_w + 14}" y="13" class="legend">raw feature</text>'
            f'<rect x="{label_w + 90}" y="4" width="10" height="10" fill="{DERIVED_COLOR}"/>'
            f'<text x="{label_w + 104}" y="13" class="legend">derived feature</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it is escaped above
