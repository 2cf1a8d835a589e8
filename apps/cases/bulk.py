"""Fast inserts: PostgreSQL's COPY where available, bulk_create elsewhere.

Import speed is a product requirement (a million cases in seconds), and COPY is the fastest
way into PostgreSQL; SQLite, the embedded default, takes Django's batched inserts.

Cases go in with COPY's binary format, built column by column in numpy and pyarrow (no Python
object per row or per value); smaller tables use the text format (`copy_lines`).
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

# COPY's binary format: signature, flags, header extension length; each row is a 16-bit field
# count then, per field, a 32-bit length (-1 for NULL) and the value; all big-endian.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_BINARY_TRAILER = b"\xff\xff"
_BINARY_NULL = b"\xff\xff\xff\xff"
# PostgreSQL counts timestamps in microseconds from 2000-01-01 00:00 UTC.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# PostgreSQL counts timestamps in microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH_US = np.int64(946_684_800_000_000)
_MICROSECOND = timedelta(microseconds=1)

# One COPY field of every row: a fixed-width block (rows x bytes, uint8) or, when widths vary,
# a binary array.
Field = np.ndarray | pa.Array


# The first key of the advisory locks Casebook takes ("CB" + 1), so they cannot collide with
# another application's locks on the same database.
_IMPORT_LOCK_NAMESPACE = 0x4342_0001


def fetch_binary(sql: str, params: list) -> list[tuple]:
    """Run a query on Django's connection with results in PostgreSQL's binary format (bytea
    comes as bytes, not hex text), for the few bulk reads that aggregate into bytea."""
    import psycopg  # only on PostgreSQL

    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall()


def timestamps_from_send(blob: bytes) -> np.ndarray:
    """UTC datetime64[us] of concatenated `timestamptz_send` values (8 bytes each)."""
    return (np.frombuffer(blob, dtype=">i8").astype(np.int64) + PG_EPOCH_US).view("datetime64[us]")


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def import_lock(project_id: int) -> None:
    """Hold, until the transaction ends, the lock that lets one import at a time into a project.

    On SQLite every write transaction is already exclusive, so there is nothing to take.
    """
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [_IMPORT_LOCK_NAMESPACE, project_id]
            )


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
    # The sequence is looked up once (a materialized CTE), not once per id, and the ids come
    # back as one binary COPY that numpy reads, not as `count` Python tuples.
    sql = (
        "COPY (WITH seq AS MATERIALIZED "
        f"(SELECT pg_get_serial_sequence({_quote(table)}, 'id')::regclass AS oid) "
        f"SELECT nextval(seq.oid) FROM seq, generate_series(1, {int(count):d})) "
        "TO STDOUT WITH (FORMAT binary)"
    )
    data = bytearray()
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for block in copy:
            data += block
    record = np.dtype([("fields", ">i2"), ("length", ">i4"), ("id", ">i8")])
    rows = np.frombuffer(memoryview(data)[len(_BINARY_HEADER) : -len(_BINARY_TRAILER)], record)
    if len(rows) != count or not (rows["length"] == 8).all():
        raise RuntimeError(f"expected {count} ids from the sequence of {table}, got {len(rows)}")
    return rows["id"].astype(np.int64)


def _quote(text: str) -> str:
    """A SQL string literal (for a table name we own, not user input)."""
    return "'" + text.replace("'", "''") + "'"


def _fixed(values: np.ndarray, dtype: str) -> np.ndarray:
    """A length-prefixed fixed-width field: (rows, 4 + width) bytes."""
    width = np.dtype(dtype).itemsize
    block = np.empty(len(values), dtype=[("length", ">i4"), ("value", dtype)])
    block["length"] = width
    block["value"] = values
    return block.view(np.uint8).reshape(len(values), 4 + width)


def binary_int8(values: np.ndarray | int, rows: int) -> np.ndarray:
    """A bigint field: one value per row, or the same value for every row."""
    return _fixed(np.broadcast_to(np.asarray(values, dtype=np.int64), (rows,)), ">i8")


def binary_int8_or_null(values: np.ndarray, missing: np.ndarray) -> Field:
    """A nullable bigint field: NULL where `missing` is true."""
    block = _fixed(np.asarray(values, dtype=np.int64), ">i8")
    if not missing.any():
        return block
    if missing.all():
        return np.frombuffer(_BINARY_NULL * len(block), dtype=np.uint8).reshape(len(block), 4)
    return pc.if_else(
        pa.array(missing), pa.scalar(_BINARY_NULL, pa.large_binary()), _as_binary(block)
    )


def binary_int4(values: np.ndarray | int, rows: int) -> np.ndarray:
    """An integer field: one value per row, or the same value for every row."""
    return _fixed(np.broadcast_to(np.asarray(values, dtype=np.int32), (rows,)), ">i4")


def binary_float8(values: np.ndarray, rows: int) -> np.ndarray:
    """A double precision field (NaN stays NaN, not NULL)."""
    return _fixed(np.broadcast_to(np.asarray(values, dtype=np.float64), (rows,)), ">f8")


def binary_bool(values: np.ndarray, rows: int) -> np.ndarray:
    """A boolean field."""
    return _fixed(np.broadcast_to(np.asarray(values, dtype=np.uint8), (rows,)), "u1")


def binary_int2(values: np.ndarray | int, rows: int) -> np.ndarray:
    """A smallint field: one value per row, or the same value for every row."""
    return _fixed(np.broadcast_to(np.asarray(values, dtype=np.int16), (rows,)), ">i2")


def binary_timestamptz(values: np.ndarray | datetime, rows: int) -> Field:
    """A timestamptz field from datetime64[us] in UTC (NaT is NULL), or one aware datetime."""
    if isinstance(values, datetime):
        if values.tzinfo is None:
            raise ValueError("binary_timestamptz takes an aware datetime")
        return binary_int8((values - _PG_EPOCH) // _MICROSECOND, rows)
    micros = values.astype("datetime64[us]").view(np.int64)
    missing = np.isnat(values)
    block = _fixed(np.where(missing, PG_EPOCH_US, micros) - PG_EPOCH_US, ">i8")
    if not missing.any():
        return block
    if missing.all():
        return np.frombuffer(_BINARY_NULL * rows, dtype=np.uint8).reshape(rows, 4)
    present = _as_binary(block)
    return pc.if_else(pa.array(missing), pa.scalar(_BINARY_NULL, pa.large_binary()), present)


def binary_bytea_rows(matrix: np.ndarray) -> np.ndarray:
    """A bytea field holding each row of a 2-D array as its raw bytes."""
    rows = np.ascontiguousarray(matrix)
    raw = rows.view(np.uint8).reshape(len(rows), -1)
    block = np.empty((len(rows), 4 + raw.shape[1]), dtype=np.uint8)
    block[:, :4] = np.frombuffer(np.array(raw.shape[1], dtype=">i4").tobytes(), dtype=np.uint8)
    block[:, 4:] = raw
    return block


def binary_text(values: Sequence[str]) -> list[Field]:
    """A text/varchar field (length prefix and UTF-8 bytes); values must not be None."""
    text = pa.array(values, type=pa.large_string())
    if text.null_count:
        raise ValueError("binary_text takes strings, not None")
    lengths = pc.binary_length(text).to_numpy().astype(">i4")
    prefix = lengths.view(np.uint8).reshape(len(lengths), 4)
    return [prefix, text.cast(pa.large_binary())]


def _as_binary(block: np.ndarray) -> pa.Array:
    rows, width = block.shape
    data = pa.py_buffer(np.ascontiguousarray(block))
    return pa.Array.from_buffers(pa.binary(width), rows, [None, data]).cast(pa.large_binary())


def binary_rows(fields: Sequence[Field | list[Field]]) -> memoryview:
    """The rows of a binary COPY (without header and trailer), from one field per column.

    Fixed-width fields next to each other are laid side by side in numpy; the row's pieces are
    then joined in pyarrow, whose joined values are the COPY data, row after row.
    """
    pieces: list[Field] = []
    for field in fields:
        pieces.extend(field if isinstance(field, list) else [field])
    rows = len(pieces[0])
    if rows == 0:
        return memoryview(b"")
    count = np.frombuffer(np.array(len(fields), dtype=">i2").tobytes(), dtype=np.uint8)
    arrays: list[pa.Array] = []
    run: list[np.ndarray] = [np.broadcast_to(count, (rows, 2))]
    for piece in pieces:
        if isinstance(piece, np.ndarray):
            run.append(piece)
            continue
        if run:  # none between two pieces already in Arrow (two nullable fields in a row)
            arrays.append(_as_binary(np.hstack(run)))
        run = []
        arrays.append(piece)
    if run:
        arrays.append(_as_binary(np.hstack(run)))
    joined = (
        arrays[0]
        if len(arrays) == 1
        else pc.binary_join_element_wise(*arrays, pa.scalar(b"", pa.large_binary()))
    )
    if joined.null_count:
        raise ValueError("a COPY row came out NULL")
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    start, end = offsets[joined.offset], offsets[joined.offset + rows]
    return memoryview(joined.buffers()[2])[start:end]


def copy_binary_rows(table: str, columns: Sequence[str], rows: memoryview) -> None:
    """Send rows made by `binary_rows` with one COPY."""
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT binary)"
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        copy.write(_BINARY_HEADER)
        copy.write(rows)
        copy.write(_BINARY_TRAILER)


def copy_binary(table: str, columns: Sequence[str], fields: Sequence[Field | list[Field]]) -> None:
    """COPY rows given column by column: one field (from the binary_* helpers) per column."""
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} fields for {len(columns)} columns")
    rows = binary_rows(fields)
    if rows.nbytes:
        copy_binary_rows(table, columns, rows)
