"""What Casebook makes of an uploaded table's columns, before anything is stored.

A real hospital export has headers as people write them (`ph.ecog`, `Sex (F/M)`, `Âge`, an
empty first header over row numbers) and values as spreadsheets write them (`yes`/`no`, grades
`I`/`II`/`III`, day-month-year dates, free-text notes). For each column this module derives a
safe key from the header (the header itself stays the display name), infers a type (`number`,
`category`, `boolean`, `date`, `text`, `identifier`) and a role (`id`, `label`, `occurred_at`,
`feature`, `context`, `ignore`) from a sample of the values, and names the problems: two headers
that give one key, a date that could be day-month or month-day (asked, never guessed).

Plain Python over pandas, no Django: the import page, the API and the tests call it alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from apps.cases.importing import ImportIssue, ImportRejected, detect_format, read_columns

TYPES = ("number", "category", "boolean", "date", "text", "identifier")
ROLES = ("id", "label", "occurred_at", "feature", "context", "ignore")
MISSING_VALUES = (
    "",
    "NA",
    "N/A",
    "n/a",
    "na",
    "NaN",
    "nan",
    "NULL",
    "null",
    "None",
    "#N/A",
    "-",
    ".",
    "?",
)
SAMPLE_SIZE = 5
# A column of text with at most this many distinct values (and repeats) is a category.
MAX_CATEGORIES = 50
# Longer values than this, on average, are a note to read rather than a category.
NOTE_LENGTH = 40

TRUE_WORDS = frozenset({"yes", "y", "true", "t", "oui", "ja", "si", "sí"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "non", "nein"})
# Date formats tried, in order; a value must parse under one format for the whole column.
DAY_FIRST = ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d/%m/%y")
MONTH_FIRST = ("%m/%d/%Y", "%m-%d-%Y", "%m.%d.%Y", "%m/%d/%y")
ISO_DATES = ("ISO8601",)  # pandas: any ISO 8601 date or date and time

ID_HEADERS = (
    "external_id",
    "id",
    "patient_id",
    "patientid",
    "case_id",
    "mrn",
    "record_id",
    "subject_id",
)
LABEL_HEADERS = ("label", "outcome", "target", "class", "diagnosis", "status")
DATE_HEADERS = ("occurred_at", "date", "admission_date", "admitted", "visit_date", "encounter_date")


@dataclass(frozen=True)
class ColumnProblem:
    message: str
    column: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"column": self.column, "message": self.message}


@dataclass
class ColumnPreview:
    name: str  # the header as written
    key: str
    type: str
    role: str
    missing: int
    distinct: int
    samples: list[str]
    # For a date column: the formats every value fits (two when day and month are ambiguous).
    date_formats: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class TablePreview:
    columns: list[ColumnPreview]
    rows: int
    problems: list[ColumnProblem]

    def as_dict(self) -> dict[str, object]:
        return {
            "columns": [column.as_dict() for column in self.columns],
            "rows": self.rows,
            "problems": [problem.as_dict() for problem in self.problems],
        }


def column_key(header: str, position: int) -> str:
    """A safe key for a header: ASCII, lower case, words joined by `_`; `column_<n>` (1-based)
    for an empty header; a key never starts with a digit."""
    text = unicodedata.normalize("NFKD", str(header)).encode("ascii", "ignore").decode()
    key = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not key:
        return f"column_{position}"
    return f"c_{key}" if key[0].isdigit() else key


def column_keys(headers: Sequence[str]) -> tuple[list[str], list[ColumnProblem]]:
    """Keys for all headers, and a problem for each pair of headers that give one key."""
    keys = [column_key(header, i + 1) for i, header in enumerate(headers)]
    first: dict[str, str] = {}
    problems = []
    for header, key in zip(headers, keys, strict=True):
        if key in first:
            problems.append(
                ColumnProblem(
                    f"the headers {first[key]!r} and {header!r} both become {key!r}: "
                    "rename one of them",
                    header,
                )
            )
        else:
            first[key] = header
    return keys, problems


def _present(values: pd.Series, missing_values: Sequence[str]) -> pd.Series:
    text = values.astype("string").str.strip()
    return text[~text.isna() & ~text.isin(list(missing_values))]


def _as_numbers(present: pd.Series) -> pd.Series | None:
    numbers = pd.to_numeric(present, errors="coerce")
    return None if numbers.isna().any() else numbers


def _is_boolean(distinct: set[str]) -> bool:
    lowered = {value.lower() for value in distinct}
    return bool(lowered) and lowered <= (TRUE_WORDS | FALSE_WORDS) and len(lowered) <= 2


def date_formats(present: pd.Series) -> list[str]:
    """The formats that every value fits: ISO first; both day-first and month-first when the
    values cannot tell them apart (every day ≤ 12), so the user is asked."""
    if present.empty:
        return []
    fitting = []
    for formats in (ISO_DATES, DAY_FIRST, MONTH_FIRST):
        for fmt in formats:
            parsed = pd.to_datetime(present, format=fmt, errors="coerce")
            if not parsed.isna().any():
                fitting.append(fmt)
                break
        if fitting and formats is ISO_DATES:
            return fitting
    return fitting


def _looks_like_row_numbers(header: str, numbers: pd.Series | None, rows: int) -> bool:
    if header.strip() or numbers is None or len(numbers) != rows or rows == 0:
        return False
    values = numbers.to_numpy()
    return bool(
        np.array_equal(values, np.arange(rows)) or np.array_equal(values, np.arange(1, rows + 1))
    )


def infer_type(
    header: str, values: pd.Series, missing_values: Sequence[str] = MISSING_VALUES
) -> tuple[str, list[str]]:
    """The column's type and, for a date, the formats its values fit."""
    present = _present(values, missing_values)
    if present.empty:
        return "text", []
    numbers = _as_numbers(present)
    distinct = set(present.unique().tolist())
    if numbers is not None:
        unique = len(distinct) == len(present) == len(values)
        if unique and _named_like(header, ID_HEADERS) and (numbers % 1 == 0).all():
            return "identifier", []
        return "number", []
    if _is_boolean(distinct):
        return "boolean", []
    formats = date_formats(present)
    if formats:
        return "date", formats
    if len(distinct) == len(present) == len(values) and present.str.len().mean() < NOTE_LENGTH:
        return "identifier", []
    if present.str.len().mean() >= NOTE_LENGTH:
        return "text", []
    if len(distinct) <= MAX_CATEGORIES and len(distinct) < len(present):
        return "category", []
    return "text", []


def _named_like(header: str, names: Sequence[str]) -> bool:
    return column_key(header, 0) in names


def _roles(previews: list[ColumnPreview], rows_are_numbers: set[int]) -> None:
    """Give each column its role: the id, label and date columns by name first, then by type;
    every other number, category or boolean a feature, text and dates context."""

    def take(role: str, names: Sequence[str], types: Sequence[str], by_type: bool) -> None:
        if any(preview.role == role for preview in previews):
            return  # one id, one label, one date
        for preview in previews:
            if preview.role == "" and preview.key in names and preview.type in types:
                preview.role = role
                return
        if by_type:
            for preview in previews:
                if preview.role == "" and preview.type in types:
                    preview.role = role
                    return

    for i in rows_are_numbers:
        previews[i].role = "ignore"
    take("id", ID_HEADERS, ("identifier", "number", "text", "category"), by_type=False)
    take("id", (), ("identifier",), by_type=True)
    take("label", LABEL_HEADERS, ("category", "boolean", "number", "text"), by_type=False)
    take("occurred_at", DATE_HEADERS, ("date",), by_type=True)
    for preview in previews:
        if preview.role:
            continue
        if preview.type in ("number", "category", "boolean"):
            preview.role = "feature"
        elif preview.type in ("text", "date"):
            preview.role = "context"
        else:
            preview.role = "ignore"


def table_preview(
    frame: pd.DataFrame, missing_values: Sequence[str] = MISSING_VALUES
) -> TablePreview:
    """What Casebook makes of `frame` (every column as read, strings or numbers): a preview of
    each column and the problems. Stores nothing."""
    headers = [str(name) for name in frame.columns]
    keys, problems = column_keys(headers)
    rows = len(frame)
    previews, row_numbers = [], set()
    for i, (header, key) in enumerate(zip(headers, keys, strict=True)):
        values = frame.iloc[:, i]
        present = _present(values, missing_values)
        kind, formats = infer_type(header, values, missing_values)
        if _looks_like_row_numbers(header, _as_numbers(present), rows):
            row_numbers.add(i)
        distinct = present.unique().tolist()
        previews.append(
            ColumnPreview(
                name=header,
                key=key,
                type=kind,
                role="",
                missing=rows - len(present),
                distinct=len(distinct),
                samples=[str(v) for v in distinct[:SAMPLE_SIZE]],
                date_formats=formats,
                categories=sorted(str(v) for v in distinct) if kind == "category" else [],
            )
        )
        if kind == "date" and len(formats) > 1:
            problems.append(
                ColumnProblem(
                    f"the dates could be day-month or month-day ({', '.join(formats)}): "
                    "choose the format",
                    header,
                )
            )
    _roles(previews, row_numbers)
    return TablePreview(columns=previews, rows=rows, problems=problems)


SAMPLE_ROWS = 10_000


def table_sample(path: Path, file_format: str, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """The first `rows` rows of a CSV or Parquet file, its headers exactly as written (an
    empty one stays empty, two alike stay two) and every CSV value as text: what the file
    says, before any type is chosen."""
    headers = read_columns(path, file_format)
    if file_format == "parquet":
        try:
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
        except (pa.ArrowInvalid, OSError) as error:
            raise ImportRejected([ImportIssue(f"Unreadable Parquet file: {error}")]) from None
        frame = batch.to_pandas() if batch is not None else pd.DataFrame(columns=headers)
        frame.columns = headers
        return frame
    # Positional names while reading: pyarrow renames neither empty nor repeated headers then.
    names = [f"c{i}" for i in range(len(headers))]
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names}, strings_can_be_null=False
            ),
        )
        batches, count = [], 0
        for batch in reader:
            batches.append(batch)
            count += batch.num_rows
            if count >= rows:
                break
    except pa.ArrowInvalid as error:
        raise ImportRejected([ImportIssue(f"The CSV file could not be read: {error}")]) from None
    table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, rows)
    frame = table.to_pandas()
    frame.columns = headers
    return frame


MAPPING_KEYS = (
    "id_column",
    "label_column",
    "label_values",
    "occurred_at_column",
    "date_format",
    "missing_values",
    "columns",
)


class MappingError(ValueError):
    """A mapping that names a header the file lacks, a type that does not exist, …"""


def preview_mapping(preview: TablePreview) -> dict[str, object]:
    """The full mapping the import would use for `preview`: what a user may change."""

    def header_of(role: str) -> str | None:
        return next((c.name for c in preview.columns if c.role == role), None)

    dated = next((c for c in preview.columns if c.role == "occurred_at"), None)
    return {
        "id_column": header_of("id"),
        "label_column": header_of("label"),
        "label_values": {},
        "occurred_at_column": dated.name if dated else None,
        "date_format": dated.date_formats[0] if dated and len(dated.date_formats) == 1 else None,
        "missing_values": list(MISSING_VALUES),
        "columns": {
            c.name: ("ignore" if c.role == "ignore" else c.type)
            for c in preview.columns
            if c.role not in ("id", "label", "occurred_at")
        },
    }


def mapping_check(mapping: object, headers: Sequence[str]) -> dict[str, object]:
    """`mapping` as sent by a user, checked against the file's headers; MappingError names
    the first thing wrong."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise MappingError("The mapping must be a JSON object.")
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise MappingError(
            f"The mapping has no field {unknown[0]!r}; its fields are {', '.join(MAPPING_KEYS)}."
        )
    known = set(headers)
    for field_name in ("id_column", "label_column", "occurred_at_column"):
        header = mapping.get(field_name)
        if header is not None and header not in known:
            raise MappingError(f"{field_name}: the file has no column {header!r}.")
    columns = mapping.get("columns") or {}
    if not isinstance(columns, dict):
        raise MappingError("columns must be an object from a header to a type.")
    for header, kind in columns.items():
        if header not in known:
            raise MappingError(f"columns: the file has no column {header!r}.")
        if kind not in (*TYPES, "ignore"):
            raise MappingError(
                f"columns: {kind!r} for {header!r} is not a type; the types are "
                f"{', '.join(TYPES)} and ignore."
            )
    missing = mapping.get("missing_values")
    if missing is not None and (
        not isinstance(missing, list) or not all(isinstance(v, str) for v in missing)
    ):
        raise MappingError("missing_values must be a list of strings.")
    fmt = mapping.get("date_format")
    if fmt is not None and (not isinstance(fmt, str) or ("%" not in fmt and fmt != "ISO8601")):
        raise MappingError(f"date_format {fmt!r} is not a date format such as '%d/%m/%Y'.")
    labels = mapping.get("label_values") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise MappingError("label_values must be an object from a value to a class.")
    return dict(mapping)


def preview_with(frame: pd.DataFrame, mapping: object = None) -> tuple[TablePreview, dict]:
    """The preview of `frame` once the user's `mapping` is applied, and the full mapping."""
    headers = [str(name) for name in frame.columns]
    chosen = mapping_check(mapping, headers)
    missing = chosen.get("missing_values") or MISSING_VALUES
    preview = table_preview(frame, missing)
    by_name = {c.name: c for c in preview.columns}
    for header, kind in (chosen.get("columns") or {}).items():
        column = by_name[header]
        if kind == "ignore":
            column.role = "ignore"
        else:  # typed by the user: a feature or context, unless named as id, label or date
            column.type = kind
            column.role = _plain_role(kind)
    for role, field_name in (
        ("id", "id_column"),
        ("label", "label_column"),
        ("occurred_at", "occurred_at_column"),
    ):
        if field_name not in chosen:
            continue
        for column in preview.columns:
            if column.role == role:
                column.role = _plain_role(column.type)
        if chosen[field_name] is not None:
            by_name[chosen[field_name]].role = role
    full = preview_mapping(preview)
    for key in ("label_values", "date_format", "missing_values"):
        if chosen.get(key) is not None:
            full[key] = chosen[key]
    if chosen.get("date_format"):  # the user answered the day-month question
        dated = full["occurred_at_column"]
        preview.problems = [p for p in preview.problems if not _asks_date_order(p, dated)]
    return preview, full


def _plain_role(kind: str) -> str:
    return "feature" if kind in ("number", "category", "boolean") else "context"


def _asks_date_order(problem: ColumnProblem, header: object) -> bool:
    return problem.column == header and "day-month" in problem.message


def file_preview(path: Path, filename: str, mapping: object = None) -> dict[str, object]:
    """The preview of an uploaded file as the API and the import page show it: every column,
    the rows sampled, the problems and the full mapping the import would use."""
    frame = table_sample(path, detect_format(path, filename))
    preview, full = preview_with(frame, mapping)
    return {**preview.as_dict(), "mapping": full}
