"""The API's JSON parser: DRF's, with a bound on how deeply a body may nest.

Python's json module parses nesting by recursion: a body of a thousand `[` fails with
RecursionError, which DRF does not catch (a 500). No request of this API nests more than a few
levels (a cost matrix is a list of lists), so anything deeper than MAX_JSON_DEPTH is refused
with 400 before any view sees it.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON parse error - the body is nested more than {MAX_JSON_DEPTH} deep."


def nesting_exceeds(value: object, limit: int) -> bool:
    """True when lists and objects in `value` nest deeper than `limit`; iterative, so it
    cannot itself run out of stack."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        if nesting_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(TOO_DEEP)
        return data
