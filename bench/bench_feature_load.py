"""Feature load: a project's cases as one numpy matrix for training, ours against Parquet.

"ours" is `apps.cases.selectors.case_feature_matrix`: case ids, occurred_at and the (n, 30)
float64 matrix, in two rows:

- read from PostgreSQL (the project's copy on disk turned off), what a project's first run
  does;
- from the copy on disk that the first read left (apps/cases/feature_cache.py), what every
  later run does: one count checks it against the database, the ids and dates are read and
  the values are memory-mapped from `.npy` files. So that the mapped pages are paid for, this
  row times the load and then one pass over every value (the checksum), on both sides.

"raw", from the database: pandas `read_parquet` of the same cases (ids, occurred_at and the 30
feature columns, written once to a temporary Parquet file from what ours loaded), followed by
`to_numpy()` of the feature columns so that both end with the same matrix. This is not the
same work (a file against a database): it shows what the database costs.
"raw", from the kept copy: numpy alone doing what the copy does, on `.npy` files of the same
arrays written once beside the Parquet file: `np.load` of the ids and dates, `np.load(...,
mmap_mode="r")` of the values, and the same pass. The difference is what ours adds (the count
against the database, the pointer file, the checks).
Both report a checksum of the matrix, and the runner checks that they agree. Each side runs
three times, the sides alternating; the medians are reported.

Run as a module it is the child process of one step:
    python -m bench.bench_feature_load prepare --project-id N --parquet FILE
    python -m bench.bench_feature_load ours --project-id N [--from-copy]
    python -m bench.bench_feature_load raw --parquet FILE
    python -m bench.bench_feature_load raw-npy --parquet FILE
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import REPEATS, Row, emit, measure, median_run, run_step, spread


def checksum(values: np.ndarray) -> float:
    """A figure both sides must agree on: the sum of the matrix, missing values left out."""
    return float(np.nansum(values))


def load_ours(project_id: int):
    from apps.cases.selectors import case_feature_matrix

    return case_feature_matrix(project_id=project_id)


def write_parquet(matrix, path: Path) -> int:
    """Write a FeatureMatrix as a Parquet file (one column per feature); its size in bytes."""
    columns = {
        "case_id": pa.array(matrix.case_ids),
        "occurred_at": pa.array(matrix.occurred_at),
    }
    for position, name in enumerate(matrix.feature_names):
        columns[name] = pa.array(matrix.values[:, position])
    pq.write_table(pa.table(columns), path)
    return path.stat().st_size


def load_parquet(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pandas reads the file; the features become one float64 matrix."""
    frame = pd.read_parquet(path)
    features = [c for c in frame.columns if c not in ("case_id", "occurred_at")]
    return (
        frame["case_id"].to_numpy(),
        frame["occurred_at"].to_numpy(),
        frame[features].to_numpy(dtype=np.float64),
    )


def npy_paths(parquet: Path) -> tuple[Path, Path, Path]:
    """Where raw's copy of the same arrays lives: beside the Parquet file."""
    return tuple(
        parquet.with_name(f"{parquet.stem}-{name}.npy") for name in ("ids", "occurred", "values")
    )


def write_npy(matrix, parquet: Path) -> None:
    for path, array in zip(
        npy_paths(parquet), (matrix.case_ids, matrix.occurred_at, matrix.values), strict=True
    ):
        np.save(path, np.ascontiguousarray(array))


def load_npy(parquet: Path) -> np.ndarray:
    """numpy alone, as the kept copy is read: ids and dates loaded, the values mapped."""
    ids_path, occurred_path, values_path = npy_paths(parquet)
    np.load(ids_path)
    np.load(occurred_path)
    return np.asarray(np.load(values_path, mmap_mode="r"))


def run(
    project_id: int,
    rows: int,
    parquet: Path,
    var_dir: Path,
    target_s: float | None,
    repeats: int = REPEATS,
) -> list[Row]:
    """Write the Parquet and .npy files (and our copy) once, then time each side `repeats`
    times, alternating (medians reported): from the database, then from the copy."""
    prepared = run_step(
        "bench_feature_load",
        ["prepare", "--project-id", str(project_id), "--parquet", str(parquet)],
        var_dir,
    )
    out = []
    for name, ours_args, raw_step, raw_name, note in [
        ("feature load (DB -> numpy)", [], "raw", "pandas read_parquet", ""),
        (
            "feature load (kept copy -> numpy)",
            ["--from-copy"],
            "raw-npy",
            "np.load, values mmap + 1 pass",
            "both: .npy files, values memory-mapped, one pass over every value; ",
        ),
    ]:
        ours, raw = [], []
        for _ in range(repeats):
            raw.append(
                run_step("bench_feature_load", [raw_step, "--parquet", str(parquet)], var_dir)
            )
            ours.append(
                run_step(
                    "bench_feature_load",
                    ["ours", "--project-id", str(project_id), *ours_args],
                    var_dir,
                )
            )
        best_ours, best_raw = median_run(ours), median_run(raw)
        for result in (*ours, *raw):
            if result["rows"] != rows or not np.isclose(result["checksum"], prepared["checksum"]):
                raise RuntimeError(f"feature load disagrees: {result} vs {prepared}")
        out.append(
            Row(
                benchmark=name,
                size=f"{rows:,} x {best_ours['features']}",
                ours_s=best_ours["seconds"],
                raw_s=best_raw["seconds"],
                raw_name=raw_name,
                rows=rows,
                peak_mb=best_ours["peak_mb"],
                raw_peak_mb=best_raw["peak_mb"],
                target_s=target_s,
                note=(
                    f"{note}ours {spread(best_ours)}, raw {spread(best_raw)}; "
                    f"Parquet file {prepared['parquet_mb']:.0f} MB"
                ),
            )
        )
    return out


def _child(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.bench_feature_load")
    parser.add_argument("step", choices=["prepare", "ours", "raw", "raw-npy"])
    parser.add_argument("--project-id", type=int)
    parser.add_argument("--parquet", type=Path)
    parser.add_argument("--from-copy", action="store_true")
    args = parser.parse_args(argv)
    if args.step in ("raw", "raw-npy"):

        def raw() -> tuple[np.ndarray, float | None]:
            if args.step == "raw":
                return load_parquet(args.parquet)[2], None
            values = load_npy(args.parquet)
            return values, checksum(values)  # the pass, timed as ours times it

        seconds, peak_mb, (values, total) = measure(raw)
        emit(
            {
                "seconds": seconds,
                "peak_mb": peak_mb,
                "rows": len(values),
                "checksum": checksum(values) if total is None else total,
            }
        )
        return
    from bench.common import django_setup

    django_setup(Path(os.environ["CASEBOOK_VAR_DIR"]))
    from django.conf import settings

    import apps.cases.selectors  # noqa: F401  (imported before the clock starts)
    from apps.cases import feature_cache

    if args.step == "prepare":
        matrix = load_ours(args.project_id)  # from the database; the copy is written
        size = write_parquet(matrix, args.parquet)
        write_npy(matrix, args.parquet)
        feature_cache.copies_wait()
        emit({"checksum": checksum(matrix.values), "parquet_mb": size / 1048576})
        return
    if not args.from_copy:
        settings.CASEBOOK_FEATURE_CACHE_DIR = ""  # the database alone

    def ours():
        matrix = load_ours(args.project_id)
        return matrix, (checksum(matrix.values) if args.from_copy else None)

    seconds, peak_mb, (matrix, total) = measure(ours)
    emit(
        {
            "seconds": seconds,
            "peak_mb": peak_mb,
            "rows": len(matrix.case_ids),
            "features": matrix.values.shape[1],
            "checksum": checksum(matrix.values) if total is None else total,
        }
    )


if __name__ == "__main__":
    _child()
