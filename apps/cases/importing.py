"""Reading and checking case files (CSV or Parquet) in bounded chunks.

Plain Python over pyarrow: no Django here, so the benchmarks and tests use it directly. The
services module decides what to store; this module only says what a file holds and what is
wrong with it, naming rows and columns.

Row numbers count the header as row 1, as spreadsheets and text editors do, so "row 7" is the
seventh line of a CSV file without quoted line breaks.
"""

from __future__ import annotations

import codecs
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

T = TypeVar("T")
RESERVED_COLUMNS = ("external_id", "occurred_at", "label")
CHUNK_ROWS = 32_768
# pyarrow parses a CSV file block by block; blocks that fit in the CPU's cache parse about twice
# as fast as 8 MB ones. They are joined into chunks of about CHUNK_ROWS rows.
CSV_BLOCK_BYTES = 1 << 20
HEADER_BLOCK_BYTES = 16 << 20
MAX_REPORTED_ISSUES = 100
# Spreadsheets write these for an empty cell; they mean "missing", not an error.
MISSING_MARKERS = ["", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "#N/A", "-"]

# Separators a spreadsheet may have used instead of commas, for a better error message.
_OTHER_SEPARATORS = ((";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars"))


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
        # Checks run column by column; users read the report row by row.
        ordered = sorted(self.issues, key=lambda i: (i.row is not None, i.row or 0))
        return ImportRejected(ordered, self.more)


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
    """The CSV's column names, parsed by pyarrow from the first line alone.

    pyarrow would otherwise parse a whole block of rows to learn the header; a line is read
    up to HEADER_BLOCK_BYTES, enough for thousands of columns.
    """
    with open(path, "rb") as handle:
        first = handle.readline(HEADER_BLOCK_BYTES)
    try:
        reader = pacsv.open_csv(
            io.BytesIO(first),
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
    if "straddling object" in text:
        return (
            f"A line of the file is longer than {CSV_BLOCK_BYTES >> 20} MB, or a quote is not "
            "closed."
        )
    return f"The CSV file could not be read: {text}"


def _csv_reader(
    path: Path, include: list[str], numeric: set[str], ragged: list[pacsv.InvalidRow]
) -> pacsv.CSVStreamingReader:
    def refuse(row: pacsv.InvalidRow) -> str:
        # pyarrow's streaming reader does not know the row's number: keep its text, whose line
        # `_ragged_row_issue` finds, and fail as before.
        ragged.append(row)
        return "error"

    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=False, invalid_row_handler=refuse),
        convert_options=pacsv.ConvertOptions(
            column_types={
                name: pa.float64() if name in numeric else pa.string() for name in include
            },
            include_columns=include,
            # The missing-value words apply to the numeric columns only: "NA" may be a class or
            # an id. Text columns keep their text; an empty cell is the empty string.
            null_values=MISSING_MARKERS,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _chunked(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Join pyarrow's small CSV batches into batches of about CHUNK_ROWS rows.

    When pyarrow fails on a block, the rows read before it are given first, so they are still
    checked.
    """
    pending: list[pa.RecordBatch] = []
    count = 0
    try:
        for batch in batches:
            pending.append(batch)
            count += batch.num_rows
            if count >= CHUNK_ROWS:
                yield _joined(pending)
                pending, count = [], 0
    except pa.ArrowInvalid:
        if count:
            yield _joined(pending)
        raise
    if count:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        batch = batches[0]
    else:
        batch = pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
    return batch.rename_columns([name.strip() for name in batch.schema.names])


def _ragged_row_issue(path: Path, row: pacsv.InvalidRow) -> ImportIssue:
    """The issue of a row with the wrong number of cells, by its line: the first line of the
    file that reads as the row (an identical line before it would have been refused first)."""
    target = row.text.encode()
    message = f"Expected {row.expected_columns} columns, got {row.actual_columns}: {row.text[:100]}"
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.rstrip(b"\r\n") == target:
                return ImportIssue(message, row=number)
    return ImportIssue(message)


def _batches(
    path: Path, file_format: str, columns: list[str], ragged: list[pacsv.InvalidRow]
) -> Iterator[pa.RecordBatch]:
    if file_format == "parquet":
        parquet = pq.ParquetFile(path)
        yield from parquet.iter_batches(batch_size=CHUNK_ROWS, columns=columns)
        return
    raw_names = _csv_header(path)
    wanted = {name.strip() for name in columns}
    include = [raw for raw in raw_names if raw.strip() in wanted]
    # Fast path: pyarrow parses the feature columns as numbers. It accepts a subset of what the
    # text path below accepts (it trims only spaces and tabs) and gives the same values, so a
    # file it reads whole is read exactly as the text path would read it.
    numeric = {raw for raw in include if raw.strip() not in RESERVED_COLUMNS}
    done = 0
    if numeric:
        try:
            for batch in _chunked(_csv_reader(path, include, numeric, ragged)):
                done += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid:
            pass  # A value that is not a plain number, or a malformed file: read it as text.
    # Every column is read as text and converted here, so that a bad value is reported with its
    # row and column instead of failing the whole block. Rows the fast path already gave are
    # skipped, and errors of the file itself (ragged rows...) are raised here as before.
    skip = done
    for batch in _chunked(_csv_reader(path, include, set(), ragged)):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if skip:
            batch, skip = batch.slice(skip), 0
        yield batch


def _float_column(array: pa.Array, name: str, first_row: int, log: IssueLog) -> np.ndarray:
    kind = array.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        # Unsafe: a whole number past 2**53 becomes the nearest float, as the same digits in a
        # CSV file do (pyarrow's safe cast would refuse the whole file).
        return pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    if pa.types.is_null(kind):
        return np.full(len(array), np.nan)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        log.add(f"the column holds {kind} values, not numbers", column=name)
        return np.full(len(array), np.nan)
    # Text: the missing-value words (and empty cells) are missing, as in a CSV.
    text = pc.utf8_trim_whitespace(array)
    text = pc.if_else(pc.is_in(text, pa.array(MISSING_MARKERS)), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
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
    text = pc.utf8_trim_whitespace(pc.cast(array, pa.string()))
    text = pc.if_else(pc.is_in(text, pa.array(MISSING_MARKERS)), pa.scalar(None, pa.string()), text)
    values = pd.Series(text.to_pylist(), dtype="object")
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


# What a Python datetime (and so the database layer) holds: years 1 to 9999.
_EARLIEST = np.datetime64("0001-01-01T00:00:00", "us")
_LATEST = np.datetime64("9999-12-31T23:59:59.999999", "us")


def _check_timestamp_range(values: np.ndarray, first_row: int, log: IssueLog) -> None:
    """Report each time outside years 1 to 9999 in UTC (a time of 31 December 9999 west of
    Greenwich is in year 10000 there)."""
    outside = ~np.isnat(values) & ((values < _EARLIEST) | (values > _LATEST))
    for index in np.flatnonzero(outside)[:MAX_REPORTED_ISSUES]:
        log.add(
            f"{np.datetime_as_string(values[index])}Z (in UTC) is outside years 1 to 9999",
            row=first_row + int(index),
            column="occurred_at",
        )


# What str.strip() removes from ASCII text.
_ASCII_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "


def _text_column(array: pa.Array) -> list[str]:
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    if pc.all(pc.string_is_ascii(array)).as_py() is not False:
        # ASCII text (the usual case) is trimmed by pyarrow, exactly as str.strip() would.
        return pc.ascii_trim(array, _ASCII_WHITESPACE).fill_null("").to_pylist()
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
            message = (
                f"Missing column(s): {', '.join(missing)}. The file has: {', '.join(self.columns)}."
            )
            # A file saved with another separator arrives as one column holding them all.
            separator = next(
                (
                    name
                    for sep, name in _OTHER_SEPARATORS
                    if len(self.columns) == 1 and sep in self.columns[0]
                ),
                None,
            )
            if separator:
                message += (
                    f" Its columns look separated by {separator}: Casebook reads commas. Save it"
                    " as 'CSV UTF-8 (comma delimited)' and import it again."
                )
            self.log.add(message)
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            self.log.add(f"Column(s) appear twice: {', '.join(repeated)}.")
        if self.file_format == "parquet" and not self.log:
            self._check_parquet_types()
        if self.log:
            raise self.log.reject()

    def _check_parquet_types(self) -> None:
        """A Parquet column may hold lists, structs or maps, which no cell of a case can be."""
        schema = pq.ParquetFile(self.path).schema_arrow
        wanted = ["external_id", *self.features, "occurred_at", "label"]
        for name in (n for n in wanted if n in self.columns):
            kind = schema.field(name).type
            if pa.types.is_nested(kind):
                what = "numbers" if name in self.features else "text"
                what = "dates/times" if name == "occurred_at" else what
                self.log.add(f"the column holds {kind} values, not {what}", column=name)

    def chunks_read_ahead(self, depth: int = 2) -> Iterator[CaseChunk]:
        """`chunks()`, read and checked in a thread while the caller stores the chunk before.

        Parsing (pyarrow) and storing (the database's COPY) both release the GIL, so a file
        goes in at about the speed of the slower of the two instead of their sum.
        """
        return read_ahead(self.chunks(), depth)

    def chunks(self) -> Iterator[CaseChunk]:
        """Checked chunks; after a problem, rows are still checked but no chunk is yielded."""
        wanted = ["external_id", *self.features]
        wanted += [c for c in ("occurred_at", "label") if c in self.columns]
        allowed = set(self.classes)
        ragged: list[pacsv.InvalidRow] = []
        try:
            for batch in _batches(self.path, self.file_format, wanted, ragged):
                first_row = self.row_count + 2
                self.row_count += batch.num_rows
                chunk = self._check(batch, first_row, allowed)
                if not self.log:
                    yield chunk
        except (pa.ArrowException, OSError) as error:
            if ragged:
                issue = _ragged_row_issue(self.path, ragged[-1])
                self.log.add(issue.message, row=issue.row)
            else:
                self.log.add(_arrow_message(error))
        if self.row_count == 0 and not self.log:
            self.log.add("The file has a header but no rows.")

    def _ids_are_new(self, external_ids: list[str]) -> bool:
        """True when no id of the chunk would be reported (the per-row loop would pass)."""
        unique = set(external_ids)
        return (
            len(unique) == len(external_ids)
            and "" not in unique
            and max(map(len, external_ids), default=0) <= 200
            and not any("\x00" in external_id for external_id in external_ids)
            and self.seen_ids.keys().isdisjoint(unique)
            and unique.isdisjoint(self.known_external_ids)
        )

    def _check(self, batch: pa.RecordBatch, first_row: int, allowed: set[str]) -> CaseChunk:
        log = self.log
        external_ids = _text_column(batch.column("external_id"))
        n = batch.num_rows
        # The usual case is checked in bulk: every id new, unique, non-empty and short. Otherwise
        # each row is checked so that the report names the offending rows.
        checked = self._ids_are_new(external_ids)
        if checked:
            self.seen_ids.update(zip(external_ids, range(first_row, first_row + n), strict=True))
        for offset, external_id in enumerate(() if checked else external_ids):
            row = first_row + offset
            if not external_id:
                log.add("external_id is empty", row=row, column="external_id")
            elif len(external_id) > 200:
                log.add("external_id is longer than 200 characters", row=row, column="external_id")
            elif "\x00" in external_id:
                log.add("external_id contains a NUL character", row=row, column="external_id")
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
            _check_timestamp_range(occurred_at, first_row, log)
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


_DONE = object()


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """Yield `items`, produced by a thread up to `depth` ahead; its errors are raised here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        """Put `item` in a slot unless the consumer has stopped; False when it has."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand_over(item):
                    return
            hand_over(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over(error)

    producer = threading.Thread(target=produce, name="case-file-reader", daemon=True)
    producer.start()
    try:
        while (item := slots.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The consumer stopped early (an error while storing): let the thread finish.
        stop.set()
        producer.join()


def feature_columns_from_header(columns: Sequence[str]) -> list[str]:
    """A project without declared features takes every column that is not reserved."""
    return [c for c in columns if c not in RESERVED_COLUMNS]
