"""Feature load: a project's cases as one numpy matrix for training, ours against Parquet.

"ours" is `apps.cases.selectors.case_feature_matrix`: case ids, occurred_at and the (n, 30)
float64 matrix, read from PostgreSQL. "raw" is pandas `read_parquet` of the same cases (ids,
occurred_at and the 30 feature columns, written once to a temporary Parquet file from what ours
loaded), followed by `to_numpy()` of the feature columns so that both end with the same matrix.
Both report a checksum of the matrix, and the runner checks that they agree.

Run as a module it is the child process of one step:
    python -m bench.bench_feature_load prepare --project-id N --parquet FILE
    python -m bench.bench_feature_load ours --project-id N
    python -m bench.bench_feature_load raw --parquet FILE
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import Row, emit, measure, run_step


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


def run(
    project_id: int, rows: int, parquet: Path, var_dir: Path, target_s: float | None, repeats: int
) -> Row:
    """Write the Parquet file once, then time each side `repeats` times (best kept)."""
    prepared = run_step(
        "bench_feature_load",
        ["prepare", "--project-id", str(project_id), "--parquet", str(parquet)],
        var_dir,
    )
    ours = [
        run_step("bench_feature_load", ["ours", "--project-id", str(project_id)], var_dir)
        for _ in range(repeats)
    ]
    raw = [
        run_step("bench_feature_load", ["raw", "--parquet", str(parquet)], var_dir)
        for _ in range(repeats)
    ]
    best_ours = min(ours, key=lambda r: r["seconds"])
    best_raw = min(raw, key=lambda r: r["seconds"])
    for result in (*ours, *raw):
        if result["rows"] != rows or not np.isclose(result["checksum"], prepared["checksum"]):
            raise RuntimeError(f"feature load disagrees: {result} vs {prepared}")
    return Row(
        benchmark="feature load (DB -> numpy)",
        size=f"{rows:,} x {best_ours['features']}",
        ours_s=best_ours["seconds"],
        raw_s=best_raw["seconds"],
        raw_name="pandas read_parquet",
        rows=rows,
        peak_mb=best_ours["peak_mb"],
        raw_peak_mb=best_raw["peak_mb"],
        target_s=target_s,
        note=f"Parquet file {prepared['parquet_mb']:.0f} MB",
    )


def _child(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.bench_feature_load")
    parser.add_argument("step", choices=["prepare", "ours", "raw"])
    parser.add_argument("--project-id", type=int)
    parser.add_argument("--parquet", type=Path)
    args = parser.parse_args(argv)
    if args.step == "raw":
        seconds, peak_mb, (_, _, values) = measure(lambda: load_parquet(args.parquet))
        emit(
            {
                "seconds": seconds,
                "peak_mb": peak_mb,
                "rows": len(values),
                "checksum": checksum(values),
            }
        )
        return
    from bench.common import django_setup

    django_setup(Path(os.environ["CASEBOOK_VAR_DIR"]))
    import apps.cases.selectors  # noqa: F401  (imported before the clock starts)

    if args.step == "prepare":
        matrix = load_ours(args.project_id)
        size = write_parquet(matrix, args.parquet)
        emit({"checksum": checksum(matrix.values), "parquet_mb": size / 1048576})
        return
    seconds, peak_mb, matrix = measure(lambda: load_ours(args.project_id))
    emit(
        {
            "seconds": seconds,
            "peak_mb": peak_mb,
            "rows": len(matrix.case_ids),
            "features": matrix.values.shape[1],
            "checksum": checksum(matrix.values),
        }
    )


if __name__ == "__main__":
    _child()
