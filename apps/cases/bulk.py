"""Fast inserts: PostgreSQL's COPY where available, bulk_create elsewhere.

Import speed is a product requirement (a million cases in seconds), and COPY is the fastest
way into PostgreSQL; SQLite, the embedded default, takes Django's batched inserts.
"""

from collections.abc import Sequence

import numpy as np
from django.db import connection

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def copy_text(value: str) -> str:
    """A text value escaped for COPY's text format."""
    return value.translate(_COPY_ESCAPES)


def copy_lines(table: str, columns: Sequence[str], lines: list[str]) -> None:
    """Send rows already formatted for COPY's text format (tab-separated, '\\N' for NULL)."""
    if not lines:
        return
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        # One large write per chunk: psycopg streams it without per-row Python overhead.
        copy.write("".join(lines))


def reserve_ids(table: str, count: int) -> np.ndarray:
    """Take `count` ids from a PostgreSQL table's sequence, so rows referring to each other can
    be copied in one pass."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return np.fromiter((row[0] for row in cursor.fetchall()), dtype=np.int64, count=count)


def timestamps_for_copy(values: np.ndarray) -> list[str]:
    """datetime64[us] (UTC) to COPY text; NaT becomes NULL."""
    text = np.datetime_as_string(values, unit="us")
    return [r"\N" if t == "NaT" else t + "+00" for t in text.tolist()]
