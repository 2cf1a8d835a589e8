"""The import page's mapping step: the preview as form fields, and those fields back as a mapping.

Fields (all optional; without `mapping` the file imports as before):
- `mapping=1` marks a form that carries the mapping step;
- `id_column`, `label_column`, `occurred_at_column`: a header, or "" (number the rows / none);
- `date_format`; `col-<i>-name` (the header as written) with `col-<i>-type` (a type or ignore);
- `label-<j>-value` (a value of the label column) with `label-<j>-class` (a class, or "" to keep
  the value as it is).
"""

from __future__ import annotations

from django.http import QueryDict

from apps.cases.columns import TYPES

MAX_LABEL_VALUES = 30
DATE_FORMATS = [
    ("ISO8601", "ISO 8601 (2021-04-03)"),
    ("%d/%m/%Y", "day/month/year (03/04/2021 is 3 April)"),
    ("%m/%d/%Y", "month/day/year (03/04/2021 is 4 March)"),
    ("%d-%m-%Y", "day-month-year"),
    ("%m-%d-%Y", "month-day-year"),
    ("%d.%m.%Y", "day.month.year"),
    ("%d/%m/%y", "day/month/two-digit year"),
    ("%m/%d/%y", "month/day/two-digit year"),
]


def mapping_from_form(post: QueryDict) -> dict | None:
    """The mapping the page's fields say, or None when the form has no mapping step."""
    if post.get("mapping") != "1":
        return None
    mapping: dict = {}
    for field in ("id_column", "label_column", "occurred_at_column"):
        if field in post:
            mapping[field] = post.get(field) or None
    if post.get("date_format"):
        mapping["date_format"] = post["date_format"]
    columns = _pairs(post, "col", "name", "type")
    if columns:
        mapping["columns"] = columns
    labels = _pairs(post, "label", "value", "class")
    if labels:
        mapping["label_values"] = labels
    return mapping


def _pairs(post: QueryDict, prefix: str, key: str, value: str) -> dict[str, str]:
    """{`<prefix>-<n>-<key>`: `<prefix>-<n>-<value>`} for n = 0, 1, … while present; an empty
    value is left out (no choice made)."""
    pairs = {}
    n = 0
    while f"{prefix}-{n}-{key}" in post:
        if post.get(f"{prefix}-{n}-{value}"):
            pairs[post[f"{prefix}-{n}-{key}"]] = post[f"{prefix}-{n}-{value}"]
        n += 1
    return pairs


def mapping_context(preview: dict, classes: list[str]) -> dict:
    """What the mapping template shows: the columns with their selects, the id, label and date
    choices, the label column's values against the project's classes, and the problems."""
    mapping = preview["mapping"]
    columns = preview["columns"]
    label = next((c for c in columns if c["name"] == mapping["label_column"]), None)
    dated = next((c for c in columns if c["name"] == mapping["occurred_at_column"]), None)
    label_values = []
    if label is not None:
        given = mapping["label_values"] or {}
        for value in label["samples"] + label["categories"]:
            if value not in (v for v, _ in label_values):
                label_values.append((value, given.get(value, value if value in classes else "")))
        label_values = label_values[:MAX_LABEL_VALUES]
    return {
        "preview": preview,
        "mapping": mapping,
        "types": [*TYPES, "ignore"],
        "classes": classes,
        "label_values": label_values,
        "date_formats": DATE_FORMATS,
        "date_choices": dated["date_formats"] if dated else [],
        "rows_are_numbered": mapping["id_column"] is None,
    }
