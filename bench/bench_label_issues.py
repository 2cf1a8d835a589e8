"""Label issues: how well the review board finds deliberately wrong labels, and how long
finding them takes on a million cases.

1. Quality, on the two demo projects (`apps.workbench.demo_data`), each loaded into PostgreSQL
   as `load_demo` loads it (`demo_users_ensure`, `demo_project_load`). Version 1 is trained
   with the default configuration (`training_run_request`, then `training_run_execute`), then
   `apps.review.services.label_issues_find(version_id=...)` fills the board. The board's top k
   (LabelIssue ordered by label_quality, id; k = the number of deliberately flipped labels
   among the labeled cases) is scored against the true flips (`flipped_external_ids`), as is
   the set cleanlab flagged (`is_label_issue`). Next to it, in the same child process:
   - cleanlab direct: the same out-of-fold probabilities, recomputed the way the service
     computes them (its snapshot, feature matrix, `training_data`, `out_of_fold` with the run's
     parameters, seed and folds; checked against the stored given_probability), passed
     straight to `cleanlab.filter.find_label_issues(..., return_indices_ranked_by=
     "self_confidence")` with cleanlab's defaults, whose first k are scored;
   - a random ranking: the mean over 1,000 seeded shuffles (its expectation is k x flips / n);
   - each model family alone and their average: out-of-fold probabilities of
     logistic_regression, hist_gradient_boosting and random_forest (`out_of_fold`, same
     folds and seed), each ranked with `apps.review.ranking.label_verdicts`, and the mean of
     the three probability matrices ranked the same way; then again under four more seeds
     (folds and models), so that a gain can be told from the luck of one split;
   - against class imbalance, under the same five seeds: the out-of-fold probabilities as the
     board has them, with `class_weight="balanced"`, and calibrated (isotonic, within each
     fold); cleanlab's `get_label_quality_scores(adjust_pred_probs=True)`; and its
     `find_label_issues(filter_by=...)` options. Each is scored on its top k and on what it
     flags: false flags (labels flagged that were not flipped) and how many of them are the
     rarer class's. The board's own `label_verdicts` must equal one of them, and the note
     says which.
   Breast cancer: 569 cases, 398 labeled, 40 flipped. Heart failure: 20,000 patients, 16,577
   labeled, 2% of them flipped.
2. Time, on 1,000,000 labeled cases x 30 features (--quick: 100,000): the training
   benchmark's data (`bench.bench_training.write_training_csv`, imported by its `prepare`
   step), version 1 trained, then `label_issues_find(version_id=...)` in a child process of
   its own, split by stage (the functions it calls are wrapped in that process only, as in
   bench_training; the app is not changed), with its peak memory. "raw" is scikit-learn's
   `cross_val_predict(method="predict_proba")` of the same pipeline on the same arrays in
   memory, then cleanlab's `find_label_issues` and `get_label_quality_scores` on those
   probabilities; its verdicts are compared with the rows ours stored. Three runs of each
   side, alternating (the board emptied before each of ours); the medians are reported.
3. The board's page queries on 1,000,000 label issues (--quick: 100,000), in a database of
   its own (the same data, version 1, `label_issues_find`, then VACUUM ANALYZE as autovacuum
   would): the first page and a deep page of four slices (the default view of likely label
   errors, all cases, given pos and suggested neg, two feature ranges), the count the board
   shows for each, the tables per month and per clinician, and the whole page through
   Django's test client; each 30 times after 3 unmeasured, as p50 and p95 in ms. Ours goes
   through the app's selectors; raw is the same keyset query written by hand, with a row
   comparison `(label_quality, id) > (q, id)`, sent through psycopg (its page must hold the
   same rows), and the full `count(*)` of each slice.

The databases are casebook_bench_label_issues, casebook_bench_label_issues_demo and
casebook_bench_board (PostgreSQL on 127.0.0.1:5432, user postgres), created at the start and
dropped at the end; files live in a temporary folder.

Run as a module it is either the whole benchmark or one child step:
    python -m bench.bench_label_issues [--quick] [--part quality|timing|board ...]
    python -m bench.bench_label_issues demo --dataset breast_cancer|heart_failure
    python -m bench.bench_label_issues train --project-id N
    python -m bench.bench_label_issues ours --version-id N
    python -m bench.bench_label_issues raw --size N --seed N --folds N [--compare-dsn DSN]
    python -m bench.bench_label_issues find --version-id N
    python -m bench.bench_label_issues board --project-id N [--repeats N]
(the child steps take the database from DATABASE_URL, as Django does).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_training import (  # noqa: E402
    CLASSES,
    FEATURES,
    MAX_ITER,
    PG_HOST,
    STAGE_COLUMNS,
    StageClock,
    StageTotal,
    _checkpoint,
    _runs,
    _status_kb,
    _table,
    case_arrays,
    child_env,
    write_training_csv,
)
from bench.common import (  # noqa: E402
    REPEATS,
    SERVER_DSN,
    emit,
    median_run,
    reset_peak_rss,
    run_module,
)

LABEL_DB = "casebook_bench_label_issues"
DEMO_DB = f"{LABEL_DB}_demo"
# DEBUG off, as a deployed worker runs (config.settings.local keeps every SQL statement).
SETTINGS = "bench.settings_queue"

DEMO_PATIENTS = 20_000
RANDOM_SHUFFLES = 1_000
RANDOM_SEED = 20250402
# Seeds (folds and models) under which the families and their average are ranked again.
SEEDS = 5
# Bounded waits (seconds) of the child steps.
DEMO_TIMEOUT = 900
PREPARE_TIMEOUT = 900
TRAIN_TIMEOUT = 900
OURS_TIMEOUT = 1800
RAW_TIMEOUT = 900

WHOLE = "label_issues_find (whole call)"
ROWS = "build the LabelIssue objects (list comprehension)"
ROWS_INIT = "LabelIssue.__init__ (Django model)"
READ_LABELS = "ORM reads: label authors and times"
OUT_OF_FOLD = "out-of-fold probabilities (out_of_fold)"
VERDICTS = "confident learning (label_verdicts)"
LOADING = (
    "label snapshot (read_parquet)",
    "feature matrix (case_feature_matrix)",
    "cut to window and features (training_data)",
    READ_LABELS,
)
# The stages that write the board, whichever way the service writes it (ORM objects and
# bulk_create, or a binary COPY), with the delete of the old board and the commit.
STORING = (
    ROWS,
    "ORM delete (the old board)",
    "store the board (_label_issues_write)",
    "ORM bulk_create",
    "ORM create (the computation row)",
    "commit (deferred foreign-key checks)",
)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _pg_drop_create(name: str, create: bool) -> None:
    """Drop (and recreate) one of this benchmark's own databases, never another."""
    import psycopg

    if not name.startswith((LABEL_DB, BOARD_DB)):
        raise ValueError(f"not a label-issues benchmark database: {name}")
    with psycopg.connect(SERVER_DSN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        if create:
            conn.execute(f"CREATE DATABASE {name}")


def _django_setup() -> None:
    import django

    django.setup()


def _train_version(project: Any) -> tuple[Any, float]:
    """Version 1 of the project with its default configuration, as a manual run: the run
    and its seconds."""
    from apps.modeling import services
    from apps.modeling.models import RunTrigger

    start = time.perf_counter()
    run, _ = services.training_run_request(project=project, trigger=RunTrigger.MANUAL)
    run = services.training_run_execute(run_id=run.pk)
    return run, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# 1. Quality on a demo project.


def _ranking_result(
    name: str,
    order: np.ndarray,
    flagged: np.ndarray | None,
    flipped: np.ndarray,
    k: int,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Hits of the first k of `order` (positions, best first) and of the flagged set."""
    top = order[:k]
    result: dict[str, Any] = {
        "name": name,
        "returned": len(top),
        "hits": int(flipped[top].sum()),
        "seconds": seconds,
    }
    if flagged is not None:
        result["flagged"] = int(flagged.sum())
        result["flagged_hits"] = int((flagged & flipped).sum())
    return result


def child_demo(dataset_name: str, patients: int) -> dict[str, Any]:
    """Load a demo project, train version 1, fill the board; score it and the alternatives."""
    _django_setup()
    import pandas as pd
    from cleanlab.filter import find_label_issues
    from django.core.management import call_command

    from apps.cases.models import Case
    from apps.cases.selectors import case_feature_matrix
    from apps.modeling.ml.objectives import class_indices
    from apps.modeling.ml.training import MODEL_FAMILIES, out_of_fold
    from apps.modeling.models import ModelVersion, RunStatus
    from apps.modeling.services import training_data
    from apps.review import services
    from apps.review.models import LabelIssue
    from apps.review.ranking import label_verdicts
    from apps.workbench import demo_data
    from apps.workbench.demo import demo_project_load, demo_users_ensure

    call_command("migrate", verbosity=0, interactive=False)
    users = demo_users_ensure()
    if dataset_name == "heart_failure":
        dataset = demo_data.heart_failure(n_patients=patients)
    else:
        dataset = demo_data.breast_cancer()
    loaded = demo_project_load(dataset=dataset, users=users)
    project = loaded.project
    run, train_s = _train_version(project)
    result: dict[str, Any] = {
        "dataset": dataset.name,
        "cases": loaded.cases,
        "labels": loaded.labels,
        "train_s": train_s,
        "run_status": run.status,
    }
    if run.status != RunStatus.SUCCEEDED:
        result["error"] = run.error
        return result
    version = ModelVersion.objects.get(training_run=run)
    start = time.perf_counter()
    computation = services.label_issues_find(version_id=version.pk)
    result["find_s"] = time.perf_counter() - start
    if computation is None:
        result["error"] = "label_issues_find returned None (no board computed)"
        return result
    result.update(
        family=version.model_family,
        folds=computation.folds,
        board_cases=computation.cases,
        board_issues=computation.issues,
        app_seconds=computation.seconds,
    )

    # The same probabilities, recomputed the way label_issues_find computes them.
    run = version.training_run
    frame = pd.read_parquet(Path(run.snapshot_path))
    data = training_data(
        snapshot_case_ids=frame["case_id"].to_numpy(np.int64),
        snapshot_values=frame["label"].to_numpy(object),
        matrix=case_feature_matrix(project_id=project.pk),
        params=run.params,
    )
    classes = list(project.classes)
    folds = computation.folds
    external = dict(Case.objects.filter(project=project).values_list("pk", "external_id"))
    flipped_ids = set(dataset.flipped_external_ids)
    flipped = np.array([external[int(c)] in flipped_ids for c in data.case_ids])
    k = int(flipped.sum())
    n = len(data.y)
    position = {int(c): i for i, c in enumerate(data.case_ids)}
    result.update(n=n, k=k, flips_total=len(flipped_ids))

    # The board, in its own order.
    board = list(
        LabelIssue.objects.filter(project=project)
        .order_by("label_quality", "id")
        .values_list("case_id", "is_label_issue", "given_probability")
    )
    board_order = np.array([position[c] for c, _, _ in board], dtype=np.int64)
    board_flagged = np.zeros(n, dtype=bool)
    board_flagged[board_order] = [flag for _, flag, _ in board]
    stored_given = np.empty(n)
    stored_given[board_order] = [p for _, _, p in board]
    rankings = [_ranking_result("ours", board_order, board_flagged, flipped, k, result["find_s"])]

    probas: dict[str, np.ndarray] = {}
    oof_s: dict[str, float] = {}
    for family in MODEL_FAMILIES:
        start = time.perf_counter()
        probas[family], _ = out_of_fold(
            data.X, data.y, classes, run.params, run.seed, family, folds
        )
        oof_s[family] = time.perf_counter() - start
    labels = class_indices(data.y, classes)
    own = probas[version.model_family]
    result["max_given_probability_difference"] = float(
        np.max(np.abs(own[np.arange(n), labels] - stored_given))
    )

    start = time.perf_counter()
    ranked = find_label_issues(labels, own, return_indices_ranked_by="self_confidence")
    direct_s = time.perf_counter() - start
    direct_flagged = np.zeros(n, dtype=bool)
    direct_flagged[ranked] = True
    direct = _ranking_result(
        "cleanlab direct", np.asarray(ranked), direct_flagged, flipped, k, direct_s
    )
    direct["same_top_k"] = len(set(board_order[:k].tolist()) & set(ranked[:k].tolist()))
    rankings.append(direct)

    rng = np.random.default_rng(RANDOM_SEED)
    hits = np.array([flipped[rng.permutation(n)[:k]].sum() for _ in range(RANDOM_SHUFFLES)])
    result["random"] = {
        "mean_hits": float(hits.mean()),
        "p05_hits": float(np.percentile(hits, 5)),
        "p95_hits": float(np.percentile(hits, 95)),
        "expected_hits": k * k / n,
    }

    probas["average of the three"] = np.mean([probas[f] for f in MODEL_FAMILIES], axis=0)
    # Whether the ensemble's gain is more than the luck of one split: the top-k hits of each
    # family and of the average again under other seeds (folds and models), the run's first.
    seeds = [run.seed + extra for extra in range(SEEDS)]
    seeded: dict[str, list[int]] = {name: [] for name in probas}
    for seed in seeds:
        if seed == run.seed:
            again = probas
        else:
            again = {
                family: out_of_fold(data.X, data.y, classes, run.params, seed, family, folds)[0]
                for family in MODEL_FAMILIES
            }
            again["average of the three"] = np.mean([again[f] for f in MODEL_FAMILIES], axis=0)
        for name, proba in again.items():
            quality = label_verdicts(data.y, proba, classes).quality
            seeded[name].append(int(flipped[np.argsort(quality, kind="stable")[:k]].sum()))
    result["seeds"] = seeds
    for name, proba in probas.items():
        start = time.perf_counter()
        verdicts = label_verdicts(data.y, proba, classes)
        order = np.argsort(verdicts.quality, kind="stable")  # ties: case order, as the board
        ranked_s = time.perf_counter() - start
        row = _ranking_result(name, order, verdicts.is_issue, flipped, k, ranked_s)
        row["oof_s"] = oof_s.get(name)
        row["seeded_hits"] = seeded[name]
        if name == version.model_family:
            row["same_as_board"] = bool(np.array_equal(order, board_order))
        rankings.append(row)
    result["rankings"] = rankings
    result["flagging"] = _flagging_options(data, classes, run, folds, flipped, seeds)
    return result


def _isotonic_out_of_fold(
    X: np.ndarray, y: np.ndarray, classes: list[str], params: dict, seed: int, folds: int
) -> np.ndarray:
    """Out-of-fold probabilities of the same pipeline, calibrated (isotonic, 3-fold) within
    each fold: the folds are out_of_fold's."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold

    from apps.modeling.ml.objectives import class_indices
    from apps.modeling.ml.training import build_pipeline, predict_proba_aligned

    proba = np.zeros((len(y), len(classes)))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_i, held_i in splitter.split(X, class_indices(y, classes)):
        model = CalibratedClassifierCV(
            build_pipeline(params, seed, params.get("model_family")), method="isotonic", cv=3
        ).fit(X[fit_i], y[fit_i])
        proba[held_i] = predict_proba_aligned(model, X[held_i], classes)
    return proba


# What is tried against class imbalance: the probabilities (as the board has them, with
# balanced class weights, calibrated) and cleanlab's options for ranking and flagging.
FLAGGING = [
    ("prune_by_noise_rate (cleanlab's default)", "plain", {}, {}),
    ("class_weight=balanced, prune_by_noise_rate", "balanced", {}, {}),
    ("isotonic calibration, prune_by_noise_rate", "isotonic", {}, {}),
    ("quality adjust_pred_probs=True, prune_by_noise_rate", "plain", {}, {"adjust": True}),
    ("filter_by=confident_learning", "plain", {"filter_by": "confident_learning"}, {}),
    ("filter_by=low_self_confidence", "plain", {"filter_by": "low_self_confidence"}, {}),
]


def _flagging_options(
    data: Any, classes: list[str], run: Any, folds: int, flipped: np.ndarray, seeds: list[int]
) -> dict[str, Any]:
    """Each option's top k and flagged set against the flips, per seed; and which one the
    board's own label_verdicts gives."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from apps.modeling.ml.objectives import class_indices
    from apps.modeling.ml.training import out_of_fold
    from apps.review.ranking import label_verdicts

    labels = class_indices(data.y, classes)
    minority = int(np.argmin(np.bincount(labels, minlength=len(classes))))
    k = int(flipped.sum())
    params = dict(run.params)
    family = params.get("model_family", "logistic_regression")

    def scores(quality: np.ndarray, flagged: np.ndarray) -> dict[str, int]:
        wrongly = flagged & ~flipped
        return {
            "top_hits": int(flipped[np.argsort(quality, kind="stable")[:k]].sum()),
            "flagged": int(flagged.sum()),
            "flagged_hits": int((flagged & flipped).sum()),
            "false": int(wrongly.sum()),
            "false_minority": int((wrongly & (labels == minority)).sum()),
        }

    options: dict[str, list[dict[str, int]]] = {name: [] for name, *_ in FLAGGING}
    board: list[dict[str, int]] = []
    seconds: dict[str, float] = {}
    for seed in seeds:
        probas = {}
        for name, extra in (
            ("plain", {}),
            ("balanced", {"class_weight": "balanced"}),
            ("isotonic", None),
        ):
            start = time.perf_counter()
            if extra is None:
                probas[name] = _isotonic_out_of_fold(data.X, data.y, classes, params, seed, folds)
            else:
                probas[name] = out_of_fold(
                    data.X, data.y, classes, {**params, **extra}, seed, family, folds
                )[0]
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        for name, source, flag_options, quality_options in FLAGGING:
            proba = probas[source]
            quality = get_label_quality_scores(
                labels, proba, adjust_pred_probs=bool(quality_options.get("adjust"))
            )
            flagged = find_label_issues(
                labels,
                proba,
                filter_by=flag_options.get("filter_by", "prune_by_noise_rate"),
                n_jobs=1,
            )
            options[name].append(scores(quality, flagged))
        verdicts = label_verdicts(data.y, probas["plain"], classes)
        board.append(scores(verdicts.quality, verdicts.is_issue))
    same = [name for name, runs in options.items() if runs == board]
    return {
        "k": k,
        "minority": classes[minority],
        "minority_labels": int((labels == minority).sum()),
        "options": options,
        "board": same[0] if same else None,
        "seconds": {name: s / len(seeds) for name, s in seconds.items()},
    }


# ---------------------------------------------------------------------------------------------
# 2. Time on a million cases: child steps.


def child_train(project_id: int) -> dict[str, Any]:
    """Version 1 of the prepared project (default configuration: logistic regression)."""
    _django_setup()
    from apps.modeling.models import ModelVersion, RunStatus
    from apps.projects.models import Project

    run, seconds = _train_version(Project.objects.get(pk=project_id))
    result: dict[str, Any] = {"status": run.status, "error": run.error, "seconds": seconds}
    if run.status == RunStatus.SUCCEEDED:
        version = ModelVersion.objects.get(training_run=run)
        result.update(version_id=version.pk, family=version.model_family, seed=run.seed)
    return result


class IssueClock(StageClock):
    """The training benchmark's stage clock, plus one stage that no function call marks: the
    list comprehension that builds a LabelIssue per case. It opens at the first
    LabelIssue.__init__ and closes when the next measured stage starts (the old board's
    delete). Time inside LabelIssue.__init__ itself is summed apart, at a cost of two clock
    reads per object."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: contextlib.AbstractContextManager | None = None
        self.rows_state = "waiting"
        self.init_calls = 0
        self.init_s = 0.0

    def stage(self, label: str) -> contextlib.AbstractContextManager:
        self.rows_close()
        return super().stage(label)

    def rows_open(self) -> None:
        self.rows_state = "open"
        self._rows = super().stage(ROWS)
        self._rows.__enter__()

    def rows_close(self) -> None:
        if self._rows is not None and self.stack and self.stack[-1].path[-1] == ROWS:
            rows, self._rows = self._rows, None
            self.rows_state = "done"
            rows.__exit__(None, None, None)
            path = (WHOLE, ROWS, ROWS_INIT)
            self.totals[path] = StageTotal(
                order=len(self.totals), calls=self.init_calls, seconds=self.init_s
            )

    def wrap_rows(self, model: type) -> None:
        original = model.__init__
        clock = self

        def init(obj: Any, *args: Any, **kwargs: Any) -> None:
            if clock.rows_state == "done" or threading.get_ident() != clock.thread:
                original(obj, *args, **kwargs)
                return
            if clock.rows_state == "waiting":
                if not clock.stack or clock.stack[-1].path != (WHOLE,):
                    original(obj, *args, **kwargs)  # not the board's own rows
                    return
                clock.rows_open()
            start = time.perf_counter()
            original(obj, *args, **kwargs)
            clock.init_s += time.perf_counter() - start
            clock.init_calls += 1

        model.__init__ = init

    def wrap_fetch(self, label_model: type) -> None:
        """QuerySet._fetch_all (every ORM read): the label authors and times, apart."""
        from django.db.models.query import QuerySet

        original = QuerySet._fetch_all
        clock = self

        def fetch_all(qs: Any) -> None:
            if qs._result_cache is not None or threading.get_ident() != clock.thread:
                return original(qs)
            label = READ_LABELS if qs.model is label_model else "ORM reads (other)"
            with clock.stage(label):
                return original(qs)

        QuerySet._fetch_all = fetch_all


def install_stages(clock: IssueClock) -> None:
    import pandas as pd
    from django.db import connections
    from django.db.models.query import QuerySet
    from django.db.models.sql.compiler import SQLInsertCompiler
    from sklearn.pipeline import Pipeline

    from apps.cases import bulk
    from apps.labeling.models import Label
    from apps.modeling.ml import training
    from apps.review import ranking, services
    from apps.review.models import LabelIssue

    for owner, name, label in [
        (pd, "read_parquet", "label snapshot (read_parquet)"),
        (services, "case_feature_matrix", "feature matrix (case_feature_matrix)"),
        (services, "training_data", "cut to window and features (training_data)"),
        (services, "out_of_fold", OUT_OF_FOLD),
        (Pipeline, "fit", "pipeline fit"),
        (training, "predict_proba_aligned", "predict_proba"),
        (services, "label_verdicts", VERDICTS),
        (ranking, "class_indices", "class positions (class_indices)"),
        (ranking, "get_label_quality_scores", "cleanlab get_label_quality_scores"),
        (ranking, "find_label_issues", "cleanlab find_label_issues"),
        (QuerySet, "delete", "ORM delete (the old board)"),
        (services, "_label_issues_write", "store the board (_label_issues_write)"),
        (bulk, "binary_text", "text fields (binary_text)"),
        (bulk, "binary_timestamptz", "timestamp fields (binary_timestamptz)"),
        (bulk, "binary_rows", "build binary COPY rows"),
        (bulk, "copy_binary_rows", "binary COPY"),
        (QuerySet, "bulk_create", "ORM bulk_create"),
        (SQLInsertCompiler, "as_sql", "build the INSERT statements (as_sql)"),
        (QuerySet, "create", "ORM create (the computation row)"),
        # PostgreSQL checks the deferred foreign keys of every row written when a transaction
        # commits: the connection's commit, not a statement.
        (connections["default"], "commit", "commit (deferred foreign-key checks)"),
    ]:
        clock.wrap(owner, name, label)
    clock.wrap_fetch(Label)
    clock.wrap_rows(LabelIssue)


def child_ours(version_id: int) -> dict[str, Any]:
    """label_issues_find on the version, timed by stage."""
    _django_setup()
    from django.db import connection

    from apps.review import services
    from apps.review.models import LabelIssue, LabelIssueComputation

    # The service computes a version's board once; to time it again (median of three), the
    # board of the run before is emptied first, outside the clock. Only this benchmark's
    # database holds these rows.
    with connection.cursor() as cursor:
        cursor.execute(
            f"TRUNCATE {LabelIssue._meta.db_table}, {LabelIssueComputation._meta.db_table}"
        )

    clock = IssueClock()
    install_stages(clock)
    gc.collect()
    with connection.execute_wrapper(clock.sql_timer), clock.stage(WHOLE):
        computation = services.label_issues_find(version_id=version_id)
        clock.rows_close()
    whole = clock.totals[(WHOLE,)]
    result: dict[str, Any] = {
        "seconds": whole.seconds,
        "peak_mb": whole.peak_mb,
        "peak_abs_mb": whole.peak_abs_mb,
        "stages": clock.rows(),
        "not_measured": clock.missing,
        "computed": computation is not None,
    }
    if computation is not None:
        result.update(
            cases=computation.cases,
            issues=computation.issues,
            misclassified=computation.misclassified,
            folds=computation.folds,
            family=computation.model_family,
            app_seconds=computation.seconds,
        )
    return result


def child_raw(size: int, seed: int, folds: int, compare_dsn: str) -> dict[str, Any]:
    """scikit-learn's cross_val_predict and cleanlab on the same arrays in memory."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X, y, _ = case_arrays(size)
    data_mb = (X.nbytes + y.nbytes) / 1048576
    gc.collect()
    # The rise is measured from here; the arrays are counted as data_mb (what ours loads).
    base_kb = reset_peak_rss()
    start = time.perf_counter()
    pipeline = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(C=1.0, max_iter=MAX_ITER, random_state=seed)),
        ]
    )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(pipeline, X, y, cv=splitter, method="predict_proba")
    cv_s = time.perf_counter() - start
    labels = (y == CLASSES[1]).astype(np.int64)  # columns of proba: sorted classes = CLASSES
    mark = time.perf_counter()
    issues = find_label_issues(labels, proba, filter_by="low_self_confidence")
    find_s = time.perf_counter() - mark
    mark = time.perf_counter()
    quality = get_label_quality_scores(labels, proba)
    quality_s = time.perf_counter() - mark
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    result: dict[str, Any] = {
        "seconds": seconds,
        "cv_s": cv_s,
        "find_s": find_s,
        "quality_s": quality_s,
        "peak_mb": (peak_kb - base_kb) / 1024 + data_mb,
        "data_mb": data_mb,
        "peak_abs_mb": peak_kb / 1024,
        "issues": int(issues.sum()),
    }
    if compare_dsn:
        import psycopg

        # The cases were imported in generator order, so case ids sort as the arrays do.
        with psycopg.connect(compare_dsn, connect_timeout=10) as conn:
            stored = conn.execute(
                "SELECT label_quality, is_label_issue FROM review_labelissue ORDER BY case_id"
            ).fetchall()
        if len(stored) == size:
            ours_quality = np.array([q for q, _ in stored])
            ours_issue = np.array([f for _, f in stored], dtype=bool)
            result["max_quality_difference"] = float(np.max(np.abs(ours_quality - quality)))
            result["flags_differing"] = int(np.sum(ours_issue != issues))
    return result


# ---------------------------------------------------------------------------------------------
# 3. The board's page queries on a million label issues.

BOARD_DB = "casebook_bench_board"
BOARD_REPEATS = 30
BOARD_WARMUP = 3
BOARD_PAGE = 50  # the board's page size
# A deep page: the page after this many rows (or after half the rows a filter keeps).
BOARD_DEEP_ROWS = 500_000
BOARD_TIMEOUT = 900
# The columns the board's page reads, with select_related("case", "labeled_by").
_RAW_PAGE = (
    "SELECT li.*, c.*, u.* FROM review_labelissue li "
    "JOIN cases_case c ON c.id = li.case_id "
    "LEFT JOIN accounts_user u ON u.id = li.labeled_by_id "
    "WHERE li.model_version_id = %s{where}{after} ORDER BY li.label_quality, li.id LIMIT %s"
)


def _milliseconds(step: Any, repeats: int) -> list[float]:
    """Wall-clock milliseconds of `step()`, after a few unmeasured calls."""
    for _ in range(BOARD_WARMUP):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return times


def child_find(version_id: int) -> dict[str, Any]:
    """label_issues_find as the worker runs it, then the analyze autovacuum would do."""
    _django_setup()
    from django.db import connection

    from apps.review import services

    start = time.perf_counter()
    computation = services.label_issues_find(version_id=version_id)
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE review_labelissue")
    if computation is None:
        return {"error": "label_issues_find returned None"}
    return {"seconds": seconds, "cases": computation.cases, "issues": computation.issues}


def child_board(project_id: int, repeats: int) -> dict[str, Any]:
    """Each query the board sends for a page, through the app's selectors, next to the same
    keyset query written by hand and sent through psycopg."""
    _django_setup()
    import psycopg
    from django.conf import settings
    from django.db import connection
    from django.test import Client

    from apps.accounts.models import User
    from apps.cases.selectors import case_feature_matrix
    from apps.projects.models import Project
    from apps.review import feature_keys, selectors
    from apps.review.filters import BoardFilters

    project = Project.objects.get(pk=project_id)
    features = selectors.board_features(project=project)
    # Two feature ranges, as "age 60-80 and ejection fraction <= 30": the middle fifth of
    # one feature and the lowest tenth of another, bounds from the cases' own values.
    matrix = case_feature_matrix(project_id=project_id)
    f0, f1 = matrix.feature_names[:2]
    low, high = np.nanquantile(matrix.values[:, 0], [0.4, 0.6])
    ceiling = float(np.nanquantile(matrix.values[:, 1], 0.1))
    del matrix
    ranges = {f"min.{f0}": f"{low:.4f}", f"max.{f0}": f"{high:.4f}", f"max.{f1}": f"{ceiling:.4f}"}

    def key_sql(name: str) -> str:
        start = feature_keys.WIDTH * features[name] + 1
        return f"substring(li.feature_keys from {start} for {feature_keys.WIDTH})"

    range_where = f" AND {key_sql(f0)} BETWEEN %s AND %s AND {key_sql(f1)} BETWEEN %s AND %s"
    range_params = [
        feature_keys.encode_value(float(ranges[f"min.{f0}"])),
        feature_keys.encode_value(float(ranges[f"max.{f0}"])),
        feature_keys.LOWEST,
        feature_keys.encode_value(float(ranges[f"max.{f1}"])),
    ]
    slices = {
        "likely label errors (the default)": ({"kind": "issues"}, " AND li.is_label_issue", []),
        "all labeled cases": ({"kind": "all"}, "", []),
        "selective: given pos, suggested neg": (
            {"kind": "all", "given": "pos", "suggested": "neg"},
            " AND li.given_label = %s AND li.suggested_label = %s",
            ["pos", "neg"],
        ),
        f"two feature ranges ({f0}, {f1})": ({"kind": "all", **ranges}, range_where, range_params),
    }
    dsn = settings.DATABASES["default"]
    raw = psycopg.connect(
        host=dsn["HOST"], port=dsn["PORT"], user=dsn["USER"], dbname=dsn["NAME"], autocommit=True
    )
    result: dict[str, Any] = {"repeats": repeats, "queries": [], "ranges": ranges}

    def measure_pair(kind: str, slice_name: str, ours: Any, theirs: Any, rows: int) -> None:
        result["queries"].append(
            {
                "kind": kind,
                "slice": slice_name,
                "rows": rows,
                "ours_ms": _milliseconds(ours, repeats),
                "raw_ms": _milliseconds(theirs, repeats) if theirs else None,
            }
        )

    # The board's verdicts (production's): each version's are rows of their own, ranked by an
    # index on (model_version, label_quality, id).
    computation = selectors.label_issue_board(project=project).computation
    version_id = computation.model_version_id
    for name, (query, where, params) in slices.items():
        matching = raw.execute(
            f"SELECT count(*) FROM review_labelissue li WHERE li.model_version_id = %s{where}",
            [version_id, *params],
        ).fetchone()[0]
        deep = min(BOARD_DEEP_ROWS, matching // 2)
        after = raw.execute(
            "SELECT label_quality, id FROM review_labelissue li WHERE li.model_version_id = %s"
            f"{where} ORDER BY label_quality, id OFFSET %s LIMIT 1",
            [version_id, *params, max(deep - 1, 0)],
        ).fetchone()
        for kind, keyset in (("first page", None), (f"page after {deep:,} rows", after)):
            filters = BoardFilters.from_query(
                {**query, **({"after": f"{keyset[0]!r},{keyset[1]}"} if keyset else {})},
                features=features,
            )
            assert not filters.errors, filters.errors
            page_sql = _RAW_PAGE.format(
                where=where, after=" AND (li.label_quality, li.id) > (%s, %s)" if keyset else ""
            )
            page_params = [version_id, *params, *(keyset or []), BOARD_PAGE + 1]
            ours_rows, _ = selectors.label_issue_page(
                project=project, filters=filters, computation=computation
            )
            raw_rows = raw.execute(page_sql, page_params).fetchall()
            if [r.pk for r in ours_rows] != [r[0] for r in raw_rows[:BOARD_PAGE]]:
                raise RuntimeError(f"{name}, {kind}: the app's page differs from raw SQL")
            measure_pair(
                kind,
                name,
                lambda f=filters: selectors.label_issue_page(
                    project=project, filters=f, computation=computation
                ),
                lambda sql=page_sql, p=page_params: raw.execute(sql, p).fetchall(),
                len(ours_rows),
            )
        filters = BoardFilters.from_query(query, features=features)
        count_sql = (
            f"SELECT count(*) FROM review_labelissue li WHERE li.model_version_id = %s{where}"
        )
        total, exact = selectors.label_issue_total(
            project=project, filters=filters, computation=computation
        )
        stored = selectors.label_issue_count_stored(filters=filters, computation=computation)
        if (exact and total != matching) or (not exact and total >= matching):
            raise RuntimeError(f"{name}: the board counts {total:,}, SQL {matching:,}")
        measure_pair(
            "count: stored with the verdicts"
            if stored is not None
            else f"count: up to {selectors.COUNT_CAP:,} ({'exact' if exact else 'capped'})",
            name,
            lambda f=filters: selectors.label_issue_total(
                project=project, filters=f, computation=computation
            ),
            lambda sql=count_sql, p=[version_id, *params]: raw.execute(sql, p).fetchall(),
            matching,
        )
    month_sql = (
        "SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC') AS period, count(*), "
        "count(*) FILTER (WHERE misclassified), count(*) FILTER (WHERE is_label_issue) "
        "FROM review_labelissue WHERE model_version_id = %s AND occurred_at IS NOT NULL "
        "GROUP BY 1 ORDER BY 1"
    )
    measure_pair(
        "per month: cases, misclassified, flagged",
        "whole board",
        lambda: selectors.error_rates_by_month(project=project, computation=computation),
        lambda: raw.execute(month_sql, [version_id]).fetchall(),
        0,
    )
    annotator_sql = (
        "SELECT u.username, count(*), count(*) FILTER (WHERE li.is_label_issue) "
        "FROM review_labelissue li LEFT JOIN accounts_user u ON u.id = li.labeled_by_id "
        "WHERE li.model_version_id = %s GROUP BY u.username ORDER BY u.username"
    )
    measure_pair(
        "per clinician: labels, flagged",
        "whole board",
        lambda: selectors.error_rates_by_annotator(project=project, computation=computation),
        lambda: raw.execute(annotator_sql, [version_id]).fetchall(),
        0,
    )
    # The whole page as a reviewer opens it: every query above that the view sends, and the
    # template; and the count it asks for once shown, when the stored counts cannot answer.
    # Persistent connections, as the app runs.
    client = Client()
    client.force_login(User.objects.get(pk=project.created_by_id))
    url = f"/projects/{project_id}/review/"
    pages = [
        ("whole board page (view + template)", "default view", {}, {}),
        ("whole board page (view + template)", "two feature ranges", {"kind": "all", **ranges}, {}),
        (
            "count fragment (htmx, after the page)",
            "two feature ranges",
            {"kind": "all", **ranges, "fragment": "count"},
            {"HTTP_HX_REQUEST": "true"},
        ),
    ]
    for kind, name, query, headers in pages:
        response = client.get(url, query, HTTP_HOST="127.0.0.1", **headers)
        if response.status_code != 200:
            raise RuntimeError(f"the board answered {response.status_code}")
        measure_pair(
            kind,
            name,
            lambda q=query, h=headers: client.get(url, q, HTTP_HOST="127.0.0.1", **h),
            None,
            0,
        )
    raw.close()
    connection.close()
    return result


# ---------------------------------------------------------------------------------------------
# The parent: databases, child steps, report.


def run_quality(workdir: Path) -> list[dict[str, Any]]:
    var_dir = workdir / "var"
    var_dir.mkdir(parents=True)
    env = child_env(DEMO_DB, var_dir, SETTINGS)
    results = []
    _pg_drop_create(DEMO_DB, create=True)
    try:
        for dataset in ("breast_cancer", "heart_failure"):
            say(f"quality: {dataset} demo (load, train version 1, label_issues_find, ensemble)")
            results.append(
                run_module(
                    "bench_label_issues",
                    ["demo", "--dataset", dataset, "--patients", str(DEMO_PATIENTS)],
                    env,
                    DEMO_TIMEOUT,
                )
            )
    finally:
        _pg_drop_create(DEMO_DB, create=False)
        shutil.rmtree(var_dir, ignore_errors=True)
    return results


def run_timing(workdir: Path, size: int) -> dict[str, Any]:
    from bench.bench_queue import wait_quiet

    var_dir = workdir / "var"
    var_dir.mkdir(parents=True)
    env = child_env(LABEL_DB, var_dir, SETTINGS)
    csv = workdir / f"label_issues_{size}.csv"
    out: dict[str, Any] = {"size": size, "busy": {}}
    _pg_drop_create(LABEL_DB, create=True)
    try:
        say(f"timing: writing {csv.name}")
        out["csv_mb"] = write_training_csv(csv, size) / 1048576
        say(f"timing: importing {size:,} labeled cases ({out['csv_mb']:.0f} MB CSV)")
        out["prepared"] = prepared = run_module(
            "bench_training", ["prepare", "--csv", str(csv)], env, PREPARE_TIMEOUT
        )
        csv.unlink()
        say("timing: training version 1")
        out["train"] = train = run_module(
            "bench_label_issues",
            ["train", "--project-id", str(prepared["project_id"])],
            env,
            TRAIN_TIMEOUT,
        )
        if "version_id" not in train:
            raise RuntimeError(f"version 1 was not trained: {train.get('error')}")
        # Each side REPEATS times, alternating (ours, raw, ours, ...); medians reported. Raw
        # compares its verdicts with the board the ours run just before it stored.
        ourses: list[dict[str, Any]] = []
        raws: list[dict[str, Any]] = []
        for attempt in range(1, REPEATS + 1):
            _checkpoint(LABEL_DB)
            out["busy"][f"ours {attempt}"] = wait_quiet()
            say(f"timing: ours {attempt} of {REPEATS}, label_issues_find on {size:,} cases")
            ours = run_module(
                "bench_label_issues",
                ["ours", "--version-id", str(train["version_id"])],
                env,
                OURS_TIMEOUT,
            )
            ourses.append(ours)
            out["busy"][f"raw {attempt}"] = wait_quiet()
            say(f"timing: raw {attempt} of {REPEATS}, cross_val_predict + cleanlab")
            raws.append(
                run_module(
                    "bench_label_issues",
                    [
                        "raw",
                        "--size",
                        str(size),
                        "--seed",
                        str(train["seed"]),
                        "--folds",
                        str(ours.get("folds") or 5),
                        "--compare-dsn",
                        f"{PG_HOST}/{LABEL_DB}",
                    ],
                    env,
                    RAW_TIMEOUT,
                )
            )
        if not all(o.get("computed") for o in ourses):
            out["ours"] = next(o for o in ourses if not o.get("computed"))
        else:
            out["ours"] = median_run(ourses)
        out["raw"] = median_run(raws)
    finally:
        csv.unlink(missing_ok=True)
        _pg_drop_create(LABEL_DB, create=False)
        shutil.rmtree(var_dir, ignore_errors=True)
    return out


def run_board(workdir: Path, size: int, repeats: int = BOARD_REPEATS) -> dict[str, Any]:
    """A database of its own with `size` labeled cases, their verdicts, then the board."""
    from bench.bench_queue import wait_quiet

    var_dir = workdir / "var"
    var_dir.mkdir(parents=True)
    env = child_env(BOARD_DB, var_dir, SETTINGS)
    csv = workdir / f"board_{size}.csv"
    out: dict[str, Any] = {"size": size}
    _pg_drop_create(BOARD_DB, create=True)
    try:
        say(f"board: importing {size:,} labeled cases")
        write_training_csv(csv, size)
        prepared = run_module(
            "bench_training", ["prepare", "--csv", str(csv)], env, PREPARE_TIMEOUT
        )
        csv.unlink()
        say("board: training version 1")
        train = run_module(
            "bench_label_issues",
            ["train", "--project-id", str(prepared["project_id"])],
            env,
            TRAIN_TIMEOUT,
        )
        if "version_id" not in train:
            raise RuntimeError(f"version 1 was not trained: {train.get('error')}")
        say("board: label_issues_find")
        out["find"] = run_module(
            "bench_label_issues",
            ["find", "--version-id", str(train["version_id"])],
            env,
            OURS_TIMEOUT,
        )
        _checkpoint(BOARD_DB)
        out["busy"] = wait_quiet()
        say(f"board: page queries, {repeats} times each")
        out["board"] = run_module(
            "bench_label_issues",
            ["board", "--project-id", str(prepared["project_id"]), "--repeats", str(repeats)],
            env,
            BOARD_TIMEOUT,
        )
    finally:
        csv.unlink(missing_ok=True)
        _pg_drop_create(BOARD_DB, create=False)
        shutil.rmtree(var_dir, ignore_errors=True)
    return out


BOARD_COLUMNS = [
    ("query", 42, "<"),
    ("slice", 41, "<"),
    ("rows", 9, ">"),
    ("ours p50", 8, ">"),
    ("ours p95", 8, ">"),
    ("raw p50", 7, ">"),
    ("raw p95", 7, ">"),
    ("ours/raw", 8, ">"),
]


def report_board(t: dict[str, Any]) -> str:
    board = t["board"]
    rows = []
    for q in board["queries"]:
        ours = np.percentile(q["ours_ms"], [50, 95])
        raw = np.percentile(q["raw_ms"], [50, 95]) if q["raw_ms"] else None
        rows.append(
            [
                q["kind"],
                q["slice"],
                f"{q['rows']:,}" if q["rows"] else "",
                f"{ours[0]:.1f}",
                f"{ours[1]:.1f}",
                "-" if raw is None else f"{raw[0]:.1f}",
                "-" if raw is None else f"{raw[1]:.1f}",
                "-" if raw is None else f"{ours[0] / raw[0]:.2f}",
            ]
        )
    ranges = ", ".join(f"{k}={v}" for k, v in board["ranges"].items())
    return "\n".join(
        [
            f"The review board's queries on {t['size']:,} label issues (PostgreSQL), in "
            f"milliseconds over {board['repeats']} runs each; ours: the app's selectors "
            "(Django ORM, select_related case and clinician), raw: the same keyset query by "
            "hand through psycopg, with a row comparison (label_quality, id) > (q, id); rows: "
            "the page's rows, or the slice's size for a count",
            "",
            _table(BOARD_COLUMNS, rows),
            "",
            f"Feature ranges: {ranges}. label_issues_find stored the {t['find']['cases']:,} "
            f"verdicts in {t['find']['seconds']:.1f} s ({t['find']['issues']:,} flagged). CPU "
            f"in use by other work just before: {t['busy']:.0%}.",
        ]
    )


def _spread(hits: list[int] | None) -> str:
    if not hits:
        return "-"
    return f"{np.mean(hits):.1f} ({min(hits)}-{max(hits)})"


def _pct(hits: float, of: int) -> str:
    return "-" if not of else f"{hits / of:.2f}"


QUALITY_COLUMNS = [
    ("ranking", 51, "<"),
    ("top-k hits", 10, ">"),
    ("precision", 9, ">"),
    ("recall", 6, ">"),
    ("flagged", 7, ">"),
    ("flagged hits", 12, ">"),
    ("precision", 9, ">"),
    ("recall", 6, ">"),
    (f"top-k hits, {SEEDS} seeds", 20, ">"),
    ("note", 0, "<"),
]
RANKING_NAMES = {
    "ours": "ours: the board's top k (label_issues_find)",
    "cleanlab direct": "cleanlab direct: find_label_issues, top k",
    "average of the three": "ensemble: mean of the three families' probabilities",
}


def report_quality(result: dict[str, Any]) -> str:
    if "rankings" not in result:
        return f"{result.get('dataset')}: NOT MEASURED: {result.get('error')}"
    n, k = result["n"], result["k"]
    rows = []
    families_started = False
    for r in result["rankings"]:
        name = r["name"]
        if name not in ("ours", "cleanlab direct") and not families_started:
            random = result["random"]
            rows.append(
                [
                    f"random top k (mean of {RANDOM_SHUFFLES:,} shuffles)",
                    f"{random['mean_hits']:.1f}",
                    _pct(random["mean_hits"], k),
                    _pct(random["mean_hits"], k),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    f"expected k x {k} / {n:,} = {random['expected_hits']:.1f} hits; 5-95%: "
                    f"{random['p05_hits']:.0f}-{random['p95_hits']:.0f}",
                ]
            )
            families_started = True
        note = []
        if name == "ours":
            note.append(
                f"{result['family']}, {result['folds']} folds; label_issues_find "
                f"{r['seconds']:.1f} s"
            )
        elif name == "cleanlab direct":
            note.append(
                f"ranks only what it flags: {r['returned']} returned, "
                f"{r['same_top_k']} of them in the board's top k"
            )
        if r.get("oof_s") is not None:
            note.append(f"out_of_fold {r['oof_s']:.1f} s")
        if "same_as_board" in r:
            note.append("same order as the board" if r["same_as_board"] else "ORDER DIFFERS")
        rows.append(
            [
                RANKING_NAMES.get(name, f"family alone: {name}"),
                f"{r['hits']}",
                _pct(r["hits"], r["returned"]),
                _pct(r["hits"], k),
                f"{r.get('flagged', '-')}",
                f"{r.get('flagged_hits', '-')}",
                _pct(r.get("flagged_hits", 0), r.get("flagged", 0)),
                _pct(r.get("flagged_hits", 0), k),
                _spread(r.get("seeded_hits")),
                "; ".join(note),
            ]
        )
    title = (
        f"{result['dataset']}: {result['cases']:,} cases, n = {n:,} labeled, {k} of them "
        f"flipped on purpose (k = {k}); version 1 trained in {result['train_s']:.1f} s; "
        f"precision = hits / cases returned, recall = hits / {k}; the {SEEDS} seeds of the "
        f"folds and models: {', '.join(map(str, result['seeds']))} (mean, min-max)"
    )
    text = [title, "", _table(QUALITY_COLUMNS, rows)]
    difference = result.get("max_given_probability_difference")
    text.append(
        "The recomputed out-of-fold probabilities against the board's stored "
        f"given_probability: max |diff| {difference:.1e}."
    )
    if "flagging" in result:
        text += ["", report_flagging(result["flagging"], result["seeds"])]
    return "\n".join(text)


FLAGGING_COLUMNS = [
    ("option (out-of-fold logistic regression)", 52, "<"),
    ("top-k hits", 16, ">"),
    ("flagged", 7, ">"),
    ("flagged hits", 12, ">"),
    ("precision", 9, ">"),
    ("recall", 6, ">"),
    ("false flags", 11, ">"),
    ("of them", 7, ">"),
    ("note", 0, "<"),
]


def report_flagging(flagging: dict[str, Any], seeds: list[int]) -> str:
    k = flagging["k"]
    rows = []
    for name, runs in flagging["options"].items():

        def mean(key: str, runs: list[dict[str, int]] = runs) -> float:
            return float(np.mean([r[key] for r in runs]))

        hits = [r["top_hits"] for r in runs]
        flagged = mean("flagged")
        precision = f"{mean('flagged_hits') / flagged:.2f}" if flagged else "-"
        source = next(src for option, src, *_ in FLAGGING if option == name)
        note = []
        if name == flagging["board"]:
            note.append("the board's label_verdicts (same flags and order, every seed)")
        if source != "plain":
            note.append(f"out_of_fold {flagging['seconds'][source]:.1f} s per seed")
        rows.append(
            [
                name,
                f"{np.mean(hits):.1f} ({min(hits)}-{max(hits)})",
                f"{flagged:.1f}",
                f"{mean('flagged_hits'):.1f}",
                precision,
                f"{mean('flagged_hits') / k:.2f}",
                f"{mean('false'):.1f}",
                f"{mean('false_minority'):.1f}",
                "; ".join(note),
            ]
        )
    return "\n".join(
        [
            f"Against class imbalance (mean over seeds {', '.join(map(str, seeds))}; top-k "
            f"hits: mean (min-max), k = {k}; false flags: flagged labels that were not flipped; "
            f"of them: {flagging['minority']} labels, {flagging['minority_labels']:,} given)",
            "",
            _table(FLAGGING_COLUMNS, rows),
        ]
    )


TIME_COLUMNS = [
    ("benchmark", 47, "<"),
    ("size", 15, ">"),
    ("ours", 10, ">"),
    ("raw", 10, ">"),
    ("raw is", 42, "<"),
    ("ours/raw", 8, ">"),
    ("note", 0, "<"),
]


def _top_stages(ours: dict[str, Any], labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """The stages of those labels directly under the whole call."""
    return [
        s
        for s in ours.get("stages", [])
        if len(s["path"]) == 2 and s["path"][0] == WHOLE and s["path"][1] in labels
    ]


def _stage_s(ours: dict[str, Any], *labels: str) -> float:
    """Seconds of those stages directly under the whole call, summed."""
    return sum(s["seconds"] for s in _top_stages(ours, labels))


def format_stages(ours: dict[str, Any]) -> str:
    """The stage tree, with a '(rest)' line closing each stage whose listed stages leave time
    over (at least 0.05 s and 0.5% of the whole)."""
    stages = ours.get("stages", [])
    whole = next((s["seconds"] for s in stages if s["path"] == [WHOLE]), 0.0) or 1.0

    def cells(label: str, depth: int, stage: dict[str, Any] | None, seconds: float) -> list[str]:
        name = ("  " * depth + label)[: STAGE_COLUMNS[0][1]]
        if stage is None:
            return [name, "", f"{seconds:.2f}", f"{seconds / whole:.0%}", "", "", ""]
        # The time inside LabelIssue.__init__ is summed per call; its memory is not measured.
        measured_peak = stage["path"][-1] != ROWS_INIT
        return [
            name,
            f"{stage['calls']:,}",
            f"{seconds:.2f}",
            f"{seconds / whole:.0%}",
            f"{stage['sql_s']:.2f}" if stage["sql_n"] else "-",
            f"{stage['sql_n']:,}" if stage["sql_n"] else "-",
            f"{stage['peak_mb']:,.0f}" if measured_peak else "-",
        ]

    out: list[list[str]] = []
    pending: list[tuple[int, list[str]]] = []
    for stage in stages:
        path = stage["path"]
        depth = len(path) - 1
        while pending and pending[-1][0] >= depth:
            out.append(pending.pop()[1])
        out.append(cells(path[-1], depth, stage, stage["seconds"]))
        children = [s for s in stages if s["path"][:-1] == path]
        if children:
            rest = stage["seconds"] - sum(c["seconds"] for c in children)
            if rest >= 0.05 and rest / whole >= 0.005:
                label = "(rest: the per-row expressions)" if path[-1] == ROWS else "(rest)"
                pending.append((depth, cells(label, depth + 1, None, rest)))
    while pending:
        out.append(pending.pop()[1])
    return (
        "Where the time goes (ours, in its child process; a stage's time includes the stages "
        "under it; SQL s and stmts: statements sent through Django's cursor; peak MB: how far "
        "the process's peak memory rose during the stage):\n" + _table(STAGE_COLUMNS, out)
    )


def report_timing(t: dict[str, Any]) -> str:
    ours, raw, size = t["ours"], t["raw"], t["size"]
    shape = f"{size:,} x {FEATURES}"
    if not ours.get("computed"):
        return f"label_issues_find on {size:,} cases: NOTHING COMPUTED (returned None)"
    oof = _stage_s(ours, OUT_OF_FOLD)
    verdicts = _stage_s(ours, VERDICTS)
    store = _stage_s(ours, *STORING)
    store_names = ", ".join(s["path"][1].split(" (")[0] for s in _top_stages(ours, STORING))
    load = _stage_s(ours, *LOADING)
    raw_cleanlab = raw["find_s"] + raw["quality_s"]
    agree = (
        f"flags differing {raw['flags_differing']:,}, quality max |diff| "
        f"{raw['max_quality_difference']:.1e}"
        if "flags_differing" in raw
        else "not compared"
    )
    rows = [
        [
            "label_issues_find: time",
            shape,
            f"{ours['seconds']:.1f} s",
            f"{raw['seconds']:.1f} s",
            "cross_val_predict + cleanlab",
            f"{ours['seconds'] / raw['seconds']:.2f}",
            f"median of {_runs(ours)} against {_runs(raw)}; "
            f"{ours['cases']:,} rows stored, {ours['issues']:,} flagged (raw: "
            f"{raw['issues']:,}; {agree})",
        ],
        [
            "label_issues_find: peak memory",
            shape,
            f"{ours['peak_mb']:,.0f} MB",
            f"{raw['peak_mb']:,.0f} MB",
            f"same, with its {raw['data_mb']:.0f} MB of arrays",
            f"{ours['peak_mb'] / raw['peak_mb']:.2f}" if raw["peak_mb"] else "-",
            f"process peak (VmHWM) {ours['peak_abs_mb']:,.0f} / {raw['peak_abs_mb']:,.0f} MB",
        ],
        [
            "  of which loading (snapshot, features, labels)",
            shape,
            f"{load:.1f} s",
            "-",
            "(arrays already in memory)",
            "-",
            "read_parquet, case_feature_matrix, training_data, the Label reads",
        ],
        [
            "  of which out-of-fold probabilities",
            shape,
            f"{oof:.1f} s",
            f"{raw['cv_s']:.1f} s",
            f"cross_val_predict(method=predict_proba), {ours['folds']} folds",
            f"{oof / raw['cv_s']:.2f}",
            f"{ours['family']}",
        ],
        [
            "  of which confident learning",
            shape,
            f"{verdicts:.1f} s",
            f"{raw_cleanlab:.1f} s",
            "find_label_issues + get_label_quality_scores",
            f"{verdicts / raw_cleanlab:.2f}" if raw_cleanlab else "-",
            f"raw: find {raw['find_s']:.1f} s, quality scores {raw['quality_s']:.1f} s",
        ],
        [
            "  of which storing the board",
            shape,
            f"{store:.1f} s",
            "-",
            "(nothing stored)",
            "-",
            f"{store / ours['seconds']:.0%} of ours: {store_names}",
        ],
    ]
    prepared, train = t["prepared"], t["train"]
    text = [
        f"label_issues_find on {size:,} labeled cases (PostgreSQL) against scikit-learn and "
        "cleanlab on the same arrays in memory",
        "",
        _table(TIME_COLUMNS, rows),
        "",
        f"Set-up, not measured above: the {prepared['imported']:,} cases and "
        f"{prepared['labels']:,} labels ({t['csv_mb']:.0f} MB CSV) imported in "
        f"{prepared['import_s']:.1f} s; version 1 ({train['family']}) trained in "
        f"{train['seconds']:.1f} s. The service measured itself at {ours['app_seconds']:.1f} s "
        "(LabelIssueComputation.seconds, from its start to the computation row).",
        "",
        format_stages(ours),
    ]
    if ours.get("not_measured"):
        text.append(f"Not found in the app (not measured): {', '.join(ours['not_measured'])}.")
    busy = ", ".join(f"{k} {v:.0%}" for k, v in t["busy"].items())
    text.append(f"CPU in use by other work just before each step: {busy}.")
    return "\n".join(text)


PARTS = ("quality", "timing", "board")


def run(quick: bool, workdir: Path, parts: tuple[str, ...] = PARTS) -> str:
    """The whole label-issues benchmark (or some of its parts); returns the text to print."""
    from bench.bench_queue import code_version

    workdir.mkdir(parents=True, exist_ok=True)
    size = 100_000 if quick else 1_000_000
    code_before = code_version()
    text = ["Label issues: the board's ranking against the demos' deliberately flipped labels", ""]
    if "quality" in parts:
        try:
            for result in run_quality(workdir / "quality"):
                text += [report_quality(result), ""]
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            text += [f"Quality: NOT MEASURED, a step failed:\n{error}", ""]
    if "timing" in parts:
        try:
            text += [report_timing(run_timing(workdir / "timing", size)), ""]
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            text += [f"Time of label_issues_find: NOT MEASURED, a step failed:\n{error}", ""]
    if "board" in parts:
        try:
            text += [report_board(run_board(workdir / "board", size)), ""]
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            text += [f"The board's queries: NOT MEASURED, a step failed:\n{error}", ""]
    code_after = code_version()
    text.append(f"App code (commit/digest of apps/ and config/): {code_before}.")
    if code_after.split("/")[-1] != code_before.split("/")[-1]:
        text.append(f"WARNING: the app code changed during the run (now {code_after}).")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_label_issues")
    sub = parser.add_subparsers(dest="step")
    whole = sub.add_parser("all", help="the whole benchmark (the default)")
    for p in (parser, whole):
        p.add_argument("--quick", action="store_true", help="time 100,000 cases, not 1,000,000")
        p.add_argument("--part", action="append", choices=PARTS, help="only this part (repeatable)")
    demo = sub.add_parser("demo")
    demo.add_argument("--dataset", choices=["breast_cancer", "heart_failure"], required=True)
    demo.add_argument("--patients", type=int, default=DEMO_PATIENTS)
    train = sub.add_parser("train")
    train.add_argument("--project-id", type=int, required=True)
    ours = sub.add_parser("ours")
    ours.add_argument("--version-id", type=int, required=True)
    raw = sub.add_parser("raw")
    raw.add_argument("--size", type=int, required=True)
    raw.add_argument("--seed", type=int, required=True)
    raw.add_argument("--folds", type=int, required=True)
    raw.add_argument("--compare-dsn", default="")
    find = sub.add_parser("find")
    find.add_argument("--version-id", type=int, required=True)
    board = sub.add_parser("board")
    board.add_argument("--project-id", type=int, required=True)
    board.add_argument("--repeats", type=int, default=BOARD_REPEATS)
    args = parser.parse_args(argv)

    if args.step == "demo":
        emit(child_demo(args.dataset, args.patients))
    elif args.step == "train":
        emit(child_train(args.project_id))
    elif args.step == "ours":
        emit(child_ours(args.version_id))
    elif args.step == "raw":
        emit(child_raw(args.size, args.seed, args.folds, args.compare_dsn))
    elif args.step == "find":
        emit(child_find(args.version_id))
    elif args.step == "board":
        emit(child_board(args.project_id, args.repeats))
    else:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="casebook-bench-label-issues-") as tmp:
            print(run(args.quick, Path(tmp), tuple(args.part or PARTS)))
        print(f"whole run {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
