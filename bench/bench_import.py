"""Import: a CSV of cases with 30 float features into PostgreSQL, ours against a raw COPY.

"ours" is the product's whole import service, `apps.labeling.services.cases_import`: UTF-8
check, chunked pyarrow reading, per-row checks (ids, numbers, labels), COPY into the indexed
case table (and imported labels into the label table), one transaction. "raw" is what
PostgreSQL alone does with the same file: psycopg3 streams it through
`COPY t FROM STDIN WITH (FORMAT csv, HEADER true)` into a plain table with one typed column per
CSV column and no index or constraint; the table is created before the clock starts, and
counted and dropped after it stops, so raw times the COPY and its commit only. The ratio is
the price of checking and of the product's storage layout. "of which PostgreSQL" replays the
very COPYs our import sent (binary rows for cases, text rows for labels) with no Python work
around them: the floor that the product's schema (its indexes and deferred foreign keys)
sets, whatever the Python side does. Each side runs three times, alternating (raw, ours,
floor, raw, ...); the medians are reported.

Run as a module it is the child process of one measured step:
    python -m bench.bench_import ours --csv FILE --name NAME
    python -m bench.bench_import raw --csv FILE
    python -m bench.bench_import floor --csv FILE --name NAME
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.common import (
    BENCH_DSN,
    BENCH_USERNAME,
    REPEATS,
    Row,
    emit,
    measure,
    median_run,
    run_step,
    spread,
)

FEATURES = 30
CLASSES = ["neg", "pos"]
WRITE_ROWS = 100_000


def feature_names(count: int = FEATURES) -> list[str]:
    return [f"f{i:02d}" for i in range(count)]


def write_cases_csv(
    path: Path,
    rows: int,
    *,
    features: int = FEATURES,
    with_time_and_label: bool = False,
    seed: int = 20250331,
) -> int:
    """Write a seeded CSV of `rows` cases; returns its size in bytes.

    Columns: external_id, [occurred_at, label,] f00..fNN. Feature values have 4 decimals on
    scales from 1 to 1000 (like lab values), with 1% empty cells (missing). When asked, every
    row has an ISO 8601 occurred_at and one in five a label.
    """
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(0, 3, size=features)
    names = feature_names(features)
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    start_time = np.datetime64("2020-01-01T00:00:00", "s")
    writer = None
    try:
        for first in range(0, rows, WRITE_ROWS):
            n = min(WRITE_ROWS, rows - first)
            columns: dict[str, pa.Array] = {
                "external_id": pa.array([f"C{i:08d}" for i in range(first, first + n)]),
            }
            if with_time_and_label:
                seconds = rng.integers(0, 5 * 365 * 86400, size=n)
                stamps = np.datetime_as_string(start_time + seconds, unit="s")
                columns["occurred_at"] = pa.array(np.char.add(stamps, "Z"))
                labels = np.where(rng.random(n) < 0.5, *CLASSES)
                labels[rng.random(n) >= 0.2] = ""
                columns["label"] = pa.array(labels)
            values = np.round(rng.normal(size=(n, features)) * scales, 4)
            missing = rng.random((n, features)) < 0.01
            for j, name in enumerate(names):
                columns[name] = pa.array(values[:, j], mask=missing[:, j])
            table = pa.table(columns)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema, write_options=options)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path.stat().st_size


def raw_table_create(path: Path, dsn: str = BENCH_DSN, table: str = "bench_raw_cases") -> None:
    """A fresh plain table for the raw COPY (one typed column per CSV column); not timed."""
    header = path.open(encoding="utf-8").readline().strip().split(",")
    types = {"external_id": "text", "occurred_at": "timestamptz", "label": "text"}
    columns = ", ".join(f"{name} {types.get(name, 'double precision')}" for name in header)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({columns})")


def raw_copy(path: Path, dsn: str = BENCH_DSN, table: str = "bench_raw_cases") -> None:
    """The timed part of raw: COPY the CSV into the table, and commit (ours commits too)."""
    with psycopg.connect(dsn) as conn:
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as handle,
        ):
            while data := handle.read(1 << 20):
                copy.write(data)
        conn.commit()


def raw_table_count_drop(dsn: str = BENCH_DSN, table: str = "bench_raw_cases") -> int:
    """After the clock: the rows the raw COPY stored, then the table dropped."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        conn.execute(f"DROP TABLE {table}")
    return rows


def new_project(name: str, features: int = FEATURES):
    """A project with the benchmark's features declared, owned by the bench user."""
    from apps.accounts.models import User
    from apps.projects.services import FeatureSpec, project_create

    user = User.objects.get(username=BENCH_USERNAME)
    specs = [FeatureSpec(name=n) for n in feature_names(features)]
    return project_create(name=name, classes=CLASSES, created_by=user, features=specs)


def ours_import(path: Path, project) -> int:
    """The product's import service on the file; number of cases stored."""
    from apps.labeling.services import cases_import

    result = cases_import(
        project=project, path=path, filename=path.name, imported_by=project.created_by
    )
    return result.imported


def storage_floor(path: Path, project) -> tuple[float, float, int]:
    """PostgreSQL's share of our import: (COPY seconds, commit seconds, rows).

    Our import runs once with its COPYs recorded instead of sent (everything else happens, so
    the ids are reserved and the import batch is stored); then the recorded COPYs are replayed
    into the case and label tables, with their indexes, and committed, which is when PostgreSQL
    checks the deferred foreign keys of every row. What the database needs for these rows,
    whatever the Python side does.
    """
    from django.db import transaction

    from apps.cases import bulk

    recorded: list[tuple[str, list[str], bytes | list[str]]] = []
    send_binary, send_lines = bulk.copy_binary_rows, bulk.copy_lines
    bulk.copy_binary_rows = lambda table, columns, rows: recorded.append(
        (table, list(columns), bytes(rows))
    )
    bulk.copy_lines = lambda table, columns, lines: recorded.append(
        (table, list(columns), list(lines))
    )
    try:
        rows = ours_import(path, project)
    finally:
        bulk.copy_binary_rows, bulk.copy_lines = send_binary, send_lines
    start = time.perf_counter()
    with transaction.atomic():
        for table, columns, data in recorded:
            if isinstance(data, bytes):
                send_binary(table, columns, memoryview(data))
            else:
                send_lines(table, columns, data)
        copied = time.perf_counter()
    committed = time.perf_counter()
    return copied - start, committed - copied, rows


def run(
    csv_path: Path,
    label: str,
    rows: int,
    var_dir: Path,
    target_s: float | None,
    repeats: int = REPEATS,
    floor: bool = True,
) -> tuple[list[Row], int]:
    """Measure raw, ours (each into a new project) and, if asked, the storage floor, each in
    its own child process, `repeats` times with the sides alternating; the median of each is
    reported. Returns the rows of the table and the id of a project that holds the imported
    cases."""
    raws: list[dict] = []
    ourses: list[dict] = []
    floors: list[dict] = []
    for i in range(repeats):
        raws.append(run_step("bench_import", ["raw", "--csv", str(csv_path)], var_dir))
        ourses.append(
            run_step(
                "bench_import", ["ours", "--csv", str(csv_path), "--name", f"{label} {i}"], var_dir
            )
        )
        if floor:
            floors.append(
                run_step(
                    "bench_import",
                    ["floor", "--csv", str(csv_path), "--name", f"{label} floor {i}"],
                    var_dir,
                )
            )
    for result in (*raws, *ourses, *floors):
        if result["rows"] != rows:
            raise RuntimeError(f"expected {rows} rows, got {result['rows']}")
    raw, ours = median_run(raws), median_run(ourses)
    size = f"{rows:,} x {FEATURES}"
    result = [
        Row(
            benchmark=label,
            size=size,
            ours_s=ours["seconds"],
            raw_s=raw["seconds"],
            raw_name="COPY csv",
            rows=rows,
            peak_mb=ours["peak_mb"],
            raw_peak_mb=raw["peak_mb"],
            target_s=target_s,
            note=f"ours {spread(ours)}, raw {spread(raw)}",
        )
    ]
    if floor:
        floor_result = median_run(floors)
        result.append(
            Row(
                benchmark="  of which PostgreSQL",
                size=size,
                ours_s=floor_result["seconds"],
                raw_s=raw["seconds"],
                raw_name="COPY csv",
                rows=rows,
                note=(
                    f"our COPYs replayed ({spread(floor_result)}): COPY "
                    f"{floor_result['copy_s']:.2f} s + commit (FK checks) "
                    f"{floor_result['commit_s']:.2f} s"
                ),
            )
        )
    return result, ours["project_id"]


def _child(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.bench_import")
    parser.add_argument("side", choices=["ours", "raw", "floor"])
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--name", default="import")
    args = parser.parse_args(argv)
    if args.side == "raw":
        # Only the COPY and its commit are timed: creating the table before, and counting
        # and dropping it after, are work ours does not do.
        raw_table_create(args.csv)
        seconds, peak_mb, _ = measure(lambda: raw_copy(args.csv))
        rows = raw_table_count_drop()
        emit({"seconds": seconds, "peak_mb": peak_mb, "rows": rows})
        return
    from bench.common import django_setup

    django_setup(Path(os.environ["CASEBOOK_VAR_DIR"]))
    import apps.labeling.services  # noqa: F401  (imported before the clock starts)

    project = new_project(args.name)
    if args.side == "floor":
        copy_s, commit_s, rows = storage_floor(args.csv, project)
        emit({"seconds": copy_s + commit_s, "copy_s": copy_s, "commit_s": commit_s, "rows": rows})
        return
    seconds, peak_mb, rows = measure(lambda: ours_import(args.csv, project))
    emit({"seconds": seconds, "peak_mb": peak_mb, "rows": rows, "project_id": project.pk})


if __name__ == "__main__":
    _child()
