"""Run every Casebook benchmark and print their tables: `.venv/bin/python bench/run.py [--quick]`.

The full run imports 100,000 and 1,000,000 cases of 30 features and loads the million back as
a matrix (a few minutes on a 2-core machine); --quick does 100,000 cases only. Each measured
step runs in its own process against a database that is dropped and created at the start
(casebook_bench on 127.0.0.1:5432, user postgres); generated files live in a temporary folder
that is removed at the end. Then the labeling queue is measured through the HTTP API
(bench/bench_queue.py: 10k and 1M cases on PostgreSQL, 10k on SQLite; --quick: 10k only, fewer
requests), in its own database casebook_bench_queue. Then training (bench/bench_training.py): a
retrain of 1,000,000 labeled cases end to end against raw scikit-learn, and a burst of labels to
a new model version through a real Celery worker on the demo cohort (--quick: 100,000 cases, one
burst), in databases casebook_bench_training*. Then label issues (bench/bench_label_issues.py):
the review board's ranking against the demos' deliberately flipped labels,
label_issues_find on 1,000,000 labeled cases against scikit-learn and cleanlab, and the board's
page queries on 1,000,000 label issues (--quick: 100,000), in databases
casebook_bench_label_issues* and casebook_bench_board. Then derived features
(bench/bench_features.py, no database): ten expressions over 1,000,000 cases × 30 features
against the same in numpy, and the cost of permutation importance in a run (--quick: 100,000).
`--only import`, `--only queue`, `--only training`, `--only label_issues`, `--only load` or
`--only features` runs one of them. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    bench_feature_load,
    bench_features,
    bench_import,
    bench_label_issues,
    bench_queue,
    bench_training,
)
from bench.common import Row, migrate_and_seed, recreate_database  # noqa: E402

# The design constraints (seconds): import 100k and 1M cases, load 1M as a matrix. "In seconds"
# for the load is read as under ten.
IMPORT_TARGETS = {100_000: 1.5, 1_000_000: 15.0}
LOAD_TARGETS = {1_000_000: 10.0}

COLUMNS = [
    ("benchmark", 30, "<"),
    ("size", 15, ">"),
    ("ours (s)", 9, ">"),
    ("raw (s)", 8, ">"),
    ("raw is", 20, "<"),
    ("ours/raw", 8, ">"),
    ("rows/s", 10, ">"),
    ("peak MB ours/raw", 16, ">"),
    ("target", 9, ">"),
    ("met?", 4, "<"),
    ("note", 0, "<"),
]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_row(row: Row) -> list[str]:
    peak = "-"
    if row.peak_mb is not None:
        raw_peak = "-" if row.raw_peak_mb is None else f"{row.raw_peak_mb:.0f}"
        peak = f"{row.peak_mb:.0f} / {raw_peak}"
    met = {None: "-", True: "yes", False: "NO"}[row.met]
    return [
        row.benchmark,
        row.size,
        _seconds(row.ours_s),
        _seconds(row.raw_s),
        row.raw_name if row.raw_s is not None else "-",
        "-" if row.ratio is None else f"{row.ratio:.2f}",
        "-" if row.rows_per_s is None else f"{row.rows_per_s:,.0f}",
        peak,
        "-" if row.target_s is None else f"<= {row.target_s:g} s",
        met,
        row.note,
    ]


def format_table(rows: list[Row]) -> str:
    def line(cells: list[str]) -> str:
        return " | ".join(
            f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, COLUMNS, strict=True)
        ).rstrip()

    header = line([name for name, _, _ in COLUMNS])
    rule = "-" * len(header)
    return "\n".join([header, rule, *(line(format_row(row)) for row in rows)])


def run(quick: bool, workdir: Path) -> list[Row]:
    var_dir = workdir / "var"
    var_dir.mkdir(parents=True)
    # Each size: three runs of each side, alternating; the medians are reported.
    imports = [100_000] if quick else [100_000, 1_000_000]
    load_size = imports[-1]

    def say(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    say("creating the casebook_bench database")
    recreate_database()
    migrate_and_seed(var_dir)
    rows: list[Row] = []
    load_project = 0
    for size in imports:
        path = workdir / f"cases_{size}.csv"
        say(f"writing {path.name}")
        megabytes = bench_import.write_cases_csv(path, size) / 1048576
        say(f"import {size:,} cases ({megabytes:.0f} MB CSV)")
        measured, project_id = bench_import.run(
            path, "import CSV -> PostgreSQL", size, var_dir, IMPORT_TARGETS.get(size)
        )
        measured[0].note = ", ".join(filter(None, [f"{megabytes:.0f} MB CSV", measured[0].note]))
        rows += measured
        if size == load_size:
            load_project = project_id
        path.unlink()
    path = workdir / "cases_labeled_100000.csv"
    say("import 100,000 cases with occurred_at and labels")
    megabytes = bench_import.write_cases_csv(path, 100_000, with_time_and_label=True) / 1048576
    measured, _ = bench_import.run(path, "import +occurred_at +label", 100_000, var_dir, None)
    measured[0].note = ", ".join(
        filter(None, [f"{megabytes:.0f} MB CSV, 20% labeled", measured[0].note])
    )
    rows += measured
    path.unlink()
    say(f"feature load of {load_size:,} cases")
    rows += bench_feature_load.run(
        load_project,
        load_size,
        workdir / "features.parquet",
        var_dir,
        LOAD_TARGETS.get(load_size),
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="import 100k only; queue 10k, fewer requests; training 100k, one burst; "
        "label issues timed on 100k; derived features 100k",
    )
    parser.add_argument(
        "--only",
        choices=["import", "queue", "training", "label_issues", "load", "features"],
        help="run one benchmark only",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[Row] = []
    queue_report = training_report = label_issues_report = load_report = features_report = ""
    with tempfile.TemporaryDirectory(prefix="casebook-bench-") as tmp:
        if args.only in (None, "import"):
            rows = run(args.quick, Path(tmp) / "import")
        if args.only in (None, "queue"):
            queue_report = bench_queue.run(args.quick, Path(tmp) / "queue")
        if args.only in (None, "training"):
            training_report = bench_training.run(args.quick, Path(tmp) / "training")
        if args.only in (None, "label_issues"):
            label_issues_report = bench_label_issues.run(args.quick, Path(tmp) / "label_issues")
        if args.only in (None, "load"):
            # 20 clinicians on the production topology (bench/bench_load.py).
            from bench import bench_load

            load_report = bench_load.run(20, 30 if args.quick else 120, 20_000)
        if args.only in (None, "features"):
            features_report = bench_features.run(args.quick, Path(tmp) / "features")
    if rows:
        print(format_table(rows))
        met = [row.met for row in rows if row.met is not None]
        print(f"\n{sum(met)} of {len(met)} targets met.")
    if queue_report:
        print(("\n" if rows else "") + queue_report)
    if training_report:
        print(("\n" if rows or queue_report else "") + training_report)
    if label_issues_report:
        print(("\n" if rows or queue_report or training_report else "") + label_issues_report)
    if load_report:
        print("\n" + load_report)
    if features_report:
        print(("\n" if args.only is None else "") + features_report)
    print(f"\nwhole run {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
