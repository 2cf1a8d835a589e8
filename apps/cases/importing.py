"""Reading and checking case files (CSV or Parquet) in bounded chunks.

Plain Python over pyarrow: no Django here, so the benchmarks and tests use it directly. The
services module decides what to store; this module only says what a file holds and what is
wrong with it, naming rows and columns.

Row numbers count the header as row 1, as spreadsheets and text editors do, so "row 7" is the
seventh line of a CSV file without quoted line breaks.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

RESERVED_COLUMNS = ("external_id", "occurred_at", "label")
CHUNK_ROWS = 65_536
CSV_BLOCK_BYTES = 8 << 20
MAX_REPORTED_ISSUES = 100
# Spreadsheets write these for an empty cell; they mean "missing", not an error.
MISSING_MARKERS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "-"]


@dataclass(frozen=True)
class ImportIssue:
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "column": self.column, "message": self.message}


class ImportRejected(Exception):
    """The file cannot be imported; nothing was stored. `issues` names each problem."""

    def __init__(self, issues: Sequence[ImportIssue], more: int = 0) -> None:
        self.issues = list(issues)
        self.more = more
        first = str(self.issues[0]) if self.issues else "the file was rejected"
        super().__init__(first)

    def summary(self) -> str:
        count = len(self.issues) + self.more
        noun = "problem" if count == 1 else "problems"
        return f"The file was not imported ({count} {noun}); nothing was stored."


@dataclass
class IssueLog:
    issues: list[ImportIssue] = field(default_factory=list)
    more: int = 0

    def add(self, message: str, row: int | None = None, column: str | None = None) -> None:
        if len(self.issues) < MAX_REPORTED_ISSUES:
            self.issues.append(ImportIssue(message=message, row=row, column=column))
        else:
            self.more += 1

    def __bool__(self) -> bool:
        return bool(self.issues)

    def reject(self) -> ImportRejected:
        return ImportRejected(self.issues, self.more)


@dataclass
class CaseChunk:
    """Checked rows of one chunk, ready to store."""

    first_row: int
    external_ids: list[str]
    occurred_at: np.ndarray  # datetime64[us] in UTC, NaT where absent
    features: np.ndarray  # (n, k) float64, C order, NaN where missing
    labels: list[str] | None  # '' where the row has no label

    def __len__(self) -> int:
        return len(self.external_ids)


def detect_format(path: Path, filename: str = "") -> str:
    """'parquet' or 'csv', from the file's first bytes (its name can lie)."""
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"PAR1":
        return "parquet"
    if filename.lower().endswith((".parquet", ".pq")):
        raise ImportRejected([ImportIssue("The file is named .parquet but is not a Parquet file.")])
    return "csv"


def check_utf8(path: Path) -> None:
    """Reject a CSV that is not UTF-8, naming the first line with a bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                line += chunk.count(b"\n", 0, error.start)
                bad = chunk[error.start : error.start + 1].hex()
                raise ImportRejected(
                    [
                        ImportIssue(
                            f"The file is not UTF-8 text (byte 0x{bad} on line {line}). "
                            "Save it as 'CSV UTF-8' and import it again.",
                            row=line,
                        )
                    ]
                ) from None
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportRejected(
                [ImportIssue("The file is not UTF-8 text: it ends inside a character.", row=line)]
            ) from None


def _csv_header(path: Path) -> list[str]:
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 16),
            convert_options=pacsv.ConvertOptions(column_types={}, include_columns=[]),
        )
    except pa.ArrowInvalid as error:
        raise ImportRejected([ImportIssue(_arrow_message(error))]) from None
    return list(reader.schema.names)


def read_columns(path: Path, file_format: str) -> list[str]:
    if path.stat().st_size == 0:
        raise ImportRejected([ImportIssue("The file is empty.")])
    if file_format == "parquet":
        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowInvalid, OSError) as error:
            raise ImportRejected([ImportIssue(f"Unreadable Parquet file: {error}")]) from None
    check_utf8(path)
    return [name.strip() for name in _csv_header(path)]


def _arrow_message(error: Exception) -> str:
    text = str(error).strip()
    if "Empty CSV file" in text:
        return "The file is empty."
    return f"The CSV file could not be read: {text}"


def _batches(path: Path, file_format: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    if file_format == "parquet":
        parquet = pq.ParquetFile(path)
        yield from parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns)
        return
    # Every column is read as text and converted here, so that a bad value is reported with its
    # row and column instead of failing the whole block.
    raw_names = _csv_header(path)
    wanted = {name.strip() for name in columns}
    include = [raw for raw in raw_names if raw.strip() in wanted]
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in include},
            include_columns=include,
            null_values=MISSING_MARKERS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    for batch in reader:
        yield batch.rename_columns([name.strip() for name in batch.schema.names])


def _float_column(array: pa.Array, name: str, first_row: int, log: IssueLog) -> np.ndarray:
    if pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(array.type):
        return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    text = pc.cast(array, pa.string())
    try:
        return pc.cast(pc.utf8_trim_whitespace(text), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        pass
    values = pd.Series(text.to_pylist(), dtype="object")
    numbers = pd.to_numeric(values.str.strip(), errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & values.notna().to_numpy())
    for index in bad:
        log.add(f"{values.iloc[index]!r} is not a number", row=first_row + int(index), column=name)
    return numbers.to_numpy(dtype="float64", na_value=np.nan)


def _timestamp_column(array: pa.Array, first_row: int, log: IssueLog) -> np.ndarray:
    if pa.types.is_timestamp(array.type):
        series = array.to_pandas()
        if series.dt.tz is None:
            series = series.dt.tz_localize("UTC")
        return series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    if pa.types.is_date(array.type):
        return pd.to_datetime(array.to_pandas()).to_numpy("datetime64[us]")
    values = pd.Series(pc.cast(array, pa.string()).to_pylist(), dtype="object")
    parsed = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy() & values.notna().to_numpy())
    for index in bad:
        log.add(
            f"{values.iloc[index]!r} is not a date/time (use ISO 8601, e.g. 2025-03-31 or "
            "2025-03-31T14:05:00Z)",
            row=first_row + int(index),
            column="occurred_at",
        )
    return parsed.dt.tz_localize(None).to_numpy("datetime64[us]")


def _text_column(array: pa.Array) -> list[str]:
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    return [("" if value is None else value.strip()) for value in array.to_pylist()]


@dataclass
class CaseFileReader:
    """Reads a case file chunk by chunk, checking each row.

    `features` are the project's features in storage order; `known_external_ids` the ids the
    project already has.
    """

    path: Path
    file_format: str
    features: list[str]
    classes: list[str]
    known_external_ids: set[str]
    columns: list[str]
    log: IssueLog = field(default_factory=IssueLog)
    seen_ids: dict[str, int] = field(default_factory=dict)
    row_count: int = 0

    @property
    def has_labels(self) -> bool:
        return "label" in self.columns

    @property
    def has_occurred_at(self) -> bool:
        return "occurred_at" in self.columns

    def check_columns(self) -> None:
        missing = []
        if "external_id" not in self.columns:
            missing.append("external_id")
        missing += [name for name in self.features if name not in self.columns]
        if missing:
            self.log.add(
                f"Missing column(s): {', '.join(missing)}. The file has: {', '.join(self.columns)}."
            )
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            self.log.add(f"Column(s) appear twice: {', '.join(repeated)}.")
        if self.log:
            raise self.log.reject()

    def chunks(self) -> Iterator[CaseChunk]:
        """Checked chunks; after a problem, rows are still checked but no chunk is yielded."""
        wanted = ["external_id", *self.features]
        wanted += [c for c in ("occurred_at", "label") if c in self.columns]
        allowed = set(self.classes)
        try:
            for batch in _batches(self.path, self.file_format, wanted):
                first_row = self.row_count + 2
                self.row_count += batch.num_rows
                chunk = self._check(batch, first_row, allowed)
                if not self.log:
                    yield chunk
        except pa.ArrowInvalid as error:
            self.log.add(_arrow_message(error))
        if self.row_count == 0 and not self.log:
            self.log.add("The file has a header but no rows.")

    def _check(self, batch: pa.RecordBatch, first_row: int, allowed: set[str]) -> CaseChunk:
        log = self.log
        external_ids = _text_column(batch.column("external_id"))
        for offset, external_id in enumerate(external_ids):
            row = first_row + offset
            if not external_id:
                log.add("external_id is empty", row=row, column="external_id")
            elif len(external_id) > 200:
                log.add("external_id is longer than 200 characters", row=row, column="external_id")
            elif external_id in self.seen_ids:
                log.add(
                    f"duplicate external_id {external_id!r} (first on row "
                    f"{self.seen_ids[external_id]})",
                    row=row,
                    column="external_id",
                )
            elif external_id in self.known_external_ids:
                log.add(
                    f"external_id {external_id!r} is already in this project",
                    row=row,
                    column="external_id",
                )
            else:
                self.seen_ids[external_id] = row
        n = batch.num_rows
        features = np.empty((n, len(self.features)), dtype="<f8")
        for position, name in enumerate(self.features):
            features[:, position] = _float_column(batch.column(name), name, first_row, log)
        infinite = np.argwhere(np.isinf(features))
        for index, position in infinite[:MAX_REPORTED_ISSUES]:
            log.add(
                "infinite values are not allowed",
                row=first_row + int(index),
                column=self.features[position],
            )
        if self.has_occurred_at:
            occurred_at = _timestamp_column(batch.column("occurred_at"), first_row, log)
        else:
            occurred_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
        labels = None
        if self.has_labels:
            labels = _text_column(batch.column("label"))
            for offset, value in enumerate(labels):
                if value and value not in allowed:
                    log.add(
                        f"unknown label {value!r}; this project's classes are "
                        f"{', '.join(self.classes)}",
                        row=first_row + offset,
                        column="label",
                    )
        return CaseChunk(
            first_row=first_row,
            external_ids=external_ids,
            occurred_at=occurred_at,
            features=np.ascontiguousarray(features),
            labels=labels,
        )


def feature_columns_from_header(columns: Sequence[str]) -> list[str]:
    """A project without declared features takes every column that is not reserved."""
    return [c for c in columns if c not in RESERVED_COLUMNS]
