"""Ids as they arrive from outside: in the path, a query string or a form field.

Every table's id is a signed 64-bit integer. A larger number handed to raw SQL makes the
driver fail (SQLite's raises OverflowError) instead of finding nothing, so ids are bounded
where they enter, once: the `id` path converter for URLs, `id_parse` for the query string and
forms, `ID_MAX` for the API's serializers.
"""

from __future__ import annotations

ID_MAX = 2**63 - 1


class IdConverter:
    """`<id:name>` in a URL pattern: a positive id of at most 19 digits that fits the column.
    Anything else does not match the route, so Django answers 404 before any view runs."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number <= ID_MAX:
            raise ValueError(f"{value} is not an id")  # Django: the route does not match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def id_parse(value: object) -> int | None:
    """The id in a query-string or form value, or None when it is not one (not digits, zero,
    or past ID_MAX)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    number = int(text)
    return number if 0 < number <= ID_MAX else None
