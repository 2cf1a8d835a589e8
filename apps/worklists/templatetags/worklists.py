"""Filters of the worklist pages: risks as percentages, feature values with their units."""

from __future__ import annotations

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from apps.projects.models import Feature

register = template.Library()


@register.filter
def percent(value: float | None, digits: int = 1) -> str:
    """0.9731 → "97.3%"."""
    if value is None:
        return "—"
    return f"{value * 100:.{int(digits)}f}%"


@register.filter
def signed(value: float | None, digits: int = 2) -> str:
    """A figure that can be negative, with a real minus sign: −0.25."""
    if value is None:
        return "—"
    return f"{value:.{int(digits)}f}".replace("-", "−")


@register.filter
def feature_value(value: float | None, feature: Feature) -> str:
    """A feature's value as the labeling screen shows it: "missing", yes/no for 0/1, else the
    number with its unit."""
    if value is None:
        return format_html('<span class="missing">missing</span>')
    if feature.unit == "0/1" and value in (0, 1):
        return "yes" if value == 1 else "no"
    number = intcomma(f"{value:.10g}")
    if feature.unit:
        return format_html('{} <span class="unit">{}</span>', number, feature.unit)
    return number


@register.filter
def lookup(mapping: dict, key: str) -> object:
    return mapping.get(key)


@register.filter
def moved_badge(row: object) -> str:
    """How far the reviewer moved a case from the model's rank: ▲ up, ▼ down (the page's
    script keeps it up to date as cases move)."""
    places = row.model_rank - row.position
    if places == 0:
        return mark_safe('<span class="delta" title="Where the model put it"></span>')
    direction, arrow = ("up", "▲") if places > 0 else ("down", "▼")
    return format_html(
        '<span class="delta {}" title="You moved it {} {} place{}">{}{}</span>',
        direction,
        direction,
        abs(places),
        "" if abs(places) == 1 else "s",
        arrow,
        abs(places),
    )
