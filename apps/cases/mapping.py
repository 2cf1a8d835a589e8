"""A user's file, imported with a mapping: rewritten into the shape the case importer reads.

The importer (apps/cases/importing.py) reads `external_id`, `occurred_at`, `label` and numeric
features at full speed. A real export has its own headers, ids, date format, label words and
yes/no columns; with the mapping the user confirmed in the preview (apps/cases/columns.py), the
file is rewritten batch by batch into a Parquet file of that shape, and a value that does not
fit its column is refused naming the row and the header as written. Nothing is stored here.

What is stored today: numbers, and booleans as 1/0 (missing stays missing). Category, date and
text columns that are not the case's id, date or label are not stored yet; they are reported
as ignored, by header, so the user knows.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from apps.cases.columns import (
    FALSE_WORDS,
    MISSING_VALUES,
    TRUE_WORDS,
    preview_with,
    table_sample,
)
from apps.cases.importing import (
    MAX_REPORTED_ISSUES,
    ImportIssue,
    ImportRejected,
    detect_format,
    read_columns,
)

BATCH_ROWS = 65_536
STORED_TYPES = ("number", "boolean")


class _Plan:
    """Which header becomes which column of the rewritten file."""

    def __init__(self, headers: list[str], preview, mapping: dict) -> None:
        self.headers = headers
        self.id_column = mapping["id_column"]
        self.label_column = mapping["label_column"]
        self.date_column = mapping["occurred_at_column"]
        self.date_format = mapping["date_format"] or "ISO8601"
        self.label_values = mapping["label_values"] or {}
        self.missing = list(mapping["missing_values"] or MISSING_VALUES)
        self.features = [
            (c.name, c.key, c.type)
            for c in preview.columns
            if c.role == "feature" and c.type in STORED_TYPES
        ]
        self.ignored = [
            c.name or c.key
            for c in preview.columns
            if c.role in ("feature", "context") and c.type not in STORED_TYPES
        ]


def _batches(path: Path, file_format: str, headers: list[str]) -> Iterator[pd.DataFrame]:
    if file_format == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            frame = batch.to_pandas()
            frame.columns = headers
            yield frame
        return
    names = [f"c{i}" for i in range(len(headers))]
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 20),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names}, strings_can_be_null=False
        ),
    )
    for batch in reader:
        frame = batch.to_pandas()
        frame.columns = headers
        yield frame


def _text(values: pd.Series, missing: Sequence[str]) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text.isna() | text.isin(list(missing)))


class _Issues:
    def __init__(self) -> None:
        self.issues: list[ImportIssue] = []
        self.more = 0

    def add(self, rows: np.ndarray, first_row: int, header: str, message: str) -> None:
        for row in rows:
            if len(self.issues) >= MAX_REPORTED_ISSUES:
                self.more += 1
            else:
                self.issues.append(ImportIssue(message, row=first_row + int(row), column=header))


def _numbers(values: pd.Series, plan: _Plan, first_row: int, header: str, log: _Issues):
    text = _text(values, plan.missing)
    numbers = pd.to_numeric(text, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & text.notna().to_numpy())
    log.add(bad, first_row, header, "not a number")
    return numbers.astype("float64").to_numpy()


def _booleans(values: pd.Series, plan: _Plan, first_row: int, header: str, log: _Issues):
    lowered = _text(values, plan.missing).str.lower()
    result = np.full(len(values), np.nan)
    result[lowered.isin(TRUE_WORDS).to_numpy()] = 1.0
    result[lowered.isin(FALSE_WORDS).to_numpy()] = 0.0
    bad = np.flatnonzero(np.isnan(result) & lowered.notna().to_numpy())
    log.add(bad, first_row, header, "not yes or no")
    return result


def _dates(values: pd.Series, plan: _Plan, first_row: int, log: _Issues) -> pd.Series:
    text = _text(values, plan.missing)
    parsed = pd.to_datetime(text, format=plan.date_format, errors="coerce", utc=True)
    bad = np.flatnonzero(parsed.isna().to_numpy() & text.notna().to_numpy())
    log.add(bad, first_row, plan.date_column, f"not a date in the format {plan.date_format}")
    return parsed


def _labels(values: pd.Series, plan: _Plan, classes: Sequence[str], first_row: int, log):
    text = _text(values, plan.missing)
    mapped = text.map(lambda v: plan.label_values.get(v, v), na_action="ignore")
    bad = np.flatnonzero(mapped.notna().to_numpy() & ~mapped.isin(list(classes)).to_numpy())
    log.add(
        bad,
        first_row,
        plan.label_column,
        f"not one of the project's classes ({', '.join(classes)}); map it in label_values",
    )
    return mapped.fillna("").astype(str)


def _rewrite(frame: pd.DataFrame, plan: _Plan, classes, first_row: int, stamp: str, log):
    out: dict[str, object] = {}
    if plan.id_column is None:
        rows = np.arange(first_row, first_row + len(frame))
        out["external_id"] = [f"{stamp}-row-{row}" for row in rows]
    else:
        ids = _text(frame[plan.id_column], plan.missing)
        log.add(np.flatnonzero(ids.isna().to_numpy()), first_row, plan.id_column, "no id")
        out["external_id"] = ids.fillna("").astype(str).tolist()
    if plan.date_column is not None:
        out["occurred_at"] = _dates(frame[plan.date_column], plan, first_row, log)
    if plan.label_column is not None:
        out["label"] = _labels(frame[plan.label_column], plan, classes, first_row, log)
    for header, key, kind in plan.features:
        convert = _booleans if kind == "boolean" else _numbers
        out[key] = convert(frame[header], plan, first_row, header, log)
    return pa.Table.from_pandas(pd.DataFrame(out), preserve_index=False)


def file_with_mapping(
    path: Path,
    filename: str,
    mapping: object,
    classes: Sequence[str],
    folder: Path | None = None,
) -> tuple[Path, list[str]]:
    """`path` rewritten under `mapping` into a Parquet file in `folder` that the importer
    reads, and the headers not stored. ImportRejected names each value that does not fit."""
    file_format = detect_format(path, filename)
    headers = read_columns(path, file_format)
    preview, full = preview_with(table_sample(path, file_format), mapping)
    if preview.problems:  # two headers giving one key, a date order not chosen
        raise ImportRejected(
            [ImportIssue(problem.message, column=problem.column) for problem in preview.problems]
        )
    plan = _Plan(headers, preview, full)
    # Numbered rows get ids unique in the project: the moment of the import, then the row.
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    log = _Issues()
    out = Path(tempfile.mkstemp(suffix=".parquet", dir=folder)[1])
    writer = None
    first_row = 2  # the header is row 1, as in a spreadsheet
    try:
        for frame in _batches(path, file_format, headers):
            table = _rewrite(frame, plan, classes, first_row, stamp, log)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table.cast(writer.schema))
            first_row += len(frame)
    except (pa.ArrowInvalid, KeyError) as error:
        raise ImportRejected([ImportIssue(f"The file could not be read: {error}")]) from None
    finally:
        if writer is not None:
            writer.close()
    if log.issues:
        out.unlink(missing_ok=True)
        raise ImportRejected(log.issues, log.more)
    if writer is None:
        out.unlink(missing_ok=True)
        raise ImportRejected([ImportIssue("The file has no rows.")])
    return out, plan.ignored
