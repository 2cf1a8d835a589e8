"""Labeling queue through the real HTTP API: the next case and the label submit, as a
clinician's client makes them, on PostgreSQL and on the embedded SQLite.

For each database and project size (10,000 and 1,000,000 unlabeled cases of 30 features,
imported with `apps.labeling.services.cases_import`; 1M on SQLite only with --sqlite-1m, to
keep the default run short), a real server runs as a subprocess: gunicorn serving
`config.wsgi` with `bench.settings_queue` (the embedded default settings with DEBUG off), 4
sync workers on 127.0.0.1. PostgreSQL data lives in databases named casebook_bench_queue_<size>
(created and dropped here), SQLite in a temporary CASEBOOK_VAR_DIR. Clients authenticate with
DRF tokens (TokenAuthentication is the first authentication class of REST_FRAMEWORK) and open a
new TCP connection for every request.

1. One client at a time: `GET /api/projects/{id}/queue/next`, then
   `POST /api/cases/{case}/labels` {"value": ..., "seen_label_id": 0}, N cycles after a short
   warm-up. Latencies of the two requests are kept apart. The servers of both sizes run
   together and the cycles alternate between them, so that other work on the machine falls on
   both sizes alike (the "no growth" comparison).
2. Twenty clients (one process each, so the client side shares no GIL), one clinician each,
   doing the same cycle a fixed number of times from a common start. Afterwards the database
   is checked: every label the server accepted is stored once, no case is leased to more
   clinicians than it wants, no lease is left active and the label counts add up.
3. Raw reference: the same "next" selection done with the database library alone (psycopg 3
   or sqlite3): SELECT ... FOR UPDATE SKIP LOCKED, UPDATE, INSERT in one transaction on a new
   connection; and the SQL of the submit (lock, INSERT label, counts, case, lease, project) the
   same way. On PostgreSQL also on one connection kept open, as the server's
   persistent connections (CONN_MAX_AGE=60) are.
4. In-process: the same requests handed to the WSGI application directly (no HTTP, no
   gunicorn), with the time of each request split by region (middleware, authentication,
   access check, service, ORM, SQL, serializers, rendering) and the SQL statements counted.

Run as a module it is either the whole benchmark or one child step:
    python -m bench.bench_queue [--quick] [--db postgresql,sqlite] [--sizes 10000,1000000]
                                [--sqlite-1m]
    python -m bench.bench_queue prepare --csv FILE --size N
    python -m bench.bench_queue raw --engine E --project-id N --user-id N --cycles N [--keep]
    python -m bench.bench_queue verify --project-id N --expected N --clinicians ID,ID,...
    python -m bench.bench_queue profile --project-id N --token T --cycles N [--cprofile 30]
(the child steps take the database from DATABASE_URL / CASEBOOK_VAR_DIR, as Django does).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import BENCH_USERNAME, SERVER_DSN, emit, run_module  # noqa: E402

# One PostgreSQL database per project size, all named casebook_bench_queue_*: the run drops
# and creates these, and no other.
QUEUE_DB = "casebook_bench_queue"
PG_HOST = "postgresql://postgres@127.0.0.1:5432"
SETTINGS = "bench.settings_queue"
CLASSES = ["neg", "pos"]
CLINICIANS = 20
GUNICORN_WORKERS = 4
# Targets: one client at a time, a new connection per request, p95 in milliseconds.
TARGET_NEXT_P95_MS = 20.0
TARGET_SUBMIT_P95_MS = 11.0
# "No growth" from 10k to 1M cases: the 1M p95 within this factor of the 10k p95. Repeated
# runs of the same step on this 2-core machine differ by up to about 20%.
GROWTH_LIMIT = 1.25
# Importing a million cases into SQLite (bulk inserts of 500 rows) is the slowest set-up of
# all; by default 1M runs on PostgreSQL only, and --sqlite-1m adds it. No peer's figures are
# printed: none was measured by this code, on this machine.


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def code_version() -> str:
    """The commit and a digest of the app's Python files (apps/, config/) as they are now:
    the code is edited while benchmarks run, and the server loads it when it starts."""
    digest = hashlib.sha1()
    for folder in ("apps", "config"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    ).stdout.strip()
    return f"{head or '?'}/{digest.hexdigest()[:8]}"


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def machine_busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time in use over the next `seconds`."""
    busy0, total0 = _cpu_times()
    time.sleep(seconds)
    busy1, total1 = _cpu_times()
    return (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(limit_s: float = 30.0, below: float = 0.15) -> float:
    """Wait (at most `limit_s`) until other work leaves the CPUs mostly idle; the last share
    measured. Other processes on a 2-core machine move these latencies a lot."""
    deadline = time.monotonic() + limit_s
    busy = machine_busy()
    while busy > below and time.monotonic() < deadline:
        busy = machine_busy()
    return busy


# ---------------------------------------------------------------------------------------------
# Where the data lives: a PostgreSQL database of our own, or SQLite in a temporary var dir.


@dataclass
class Target:
    engine: str  # "postgresql" or "sqlite"
    var_dir: Path
    size: int

    @property
    def db_name(self) -> str:
        return f"{QUEUE_DB}_{self.size}"

    @property
    def dsn(self) -> str:
        return f"{PG_HOST}/{self.db_name}"

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.engine == "postgresql" else "SQLite"

    @property
    def sqlite_path(self) -> Path:
        return self.var_dir / "casebook.sqlite3"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE=SETTINGS,
            CASEBOOK_VAR_DIR=str(self.var_dir),
            PYTHONPATH=str(ROOT),
        )
        # With no CELERY_BROKER_URL the embedded file-system broker in var/ is used; nothing
        # on the labeling path enqueues, and nothing consumes.
        env.pop("CELERY_BROKER_URL", None)
        env.pop("DATABASE_CONN_MAX_AGE", None)
        if self.engine == "postgresql":
            env["DATABASE_URL"] = self.dsn
        else:
            env.pop("DATABASE_URL", None)
        return env

    def create(self) -> None:
        if self.var_dir.exists():
            shutil.rmtree(self.var_dir)
        self.var_dir.mkdir(parents=True)
        if self.engine == "postgresql":
            _pg_drop_create(self.db_name, create=True)

    def drop(self) -> None:
        if self.engine == "postgresql":
            _pg_drop_create(self.db_name, create=False)
        shutil.rmtree(self.var_dir, ignore_errors=True)


def _pg_drop_create(name: str, create: bool) -> None:
    """Drop (and recreate) one of this benchmark's own databases, never another."""
    import psycopg

    if not name.startswith(QUEUE_DB):
        raise ValueError(f"not a queue benchmark database: {name}")
    with psycopg.connect(SERVER_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        if create:
            conn.execute(f"CREATE DATABASE {name}")


def _pg_checkpoint(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def run_child(args: list[str], target: Target, timeout: float) -> dict[str, Any]:
    """Run `python -m bench.bench_queue args...` against the target; the result it emitted."""
    return run_module("bench_queue", args, target.env(), timeout)


# ---------------------------------------------------------------------------------------------
# The server.


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving config.wsgi on 127.0.0.1 in its own process group; stopped on exit."""

    def __init__(self, target: Target, log_path: Path, token: str, workers: int) -> None:
        self.target = target
        self.log_path = log_path
        self.token = token
        self.workers = workers
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.port = _free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi:application",
                    "--workers",
                    str(self.workers),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--timeout",
                    "120",
                    "--graceful-timeout",
                    "5",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=self.target.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                status, _, _ = http_request(self.port, "GET", "/api/projects/", self.token)
                if status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# The client: a new TCP connection per request, nothing but the standard library.


def http_request(
    port: int, method: str, path: str, token: str, body: bytes | None = None
) -> tuple[int, bytes, float]:
    """One request on a new connection: (status, body, seconds from connect to last byte)."""
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, data, time.perf_counter() - start


class Cycles:
    """One clinician's client: next -> label cycles, with what it saw. Latencies in seconds."""

    def __init__(self, port: int, token: str, project_id: int, seed: int) -> None:
        self.port, self.token, self.project_id = port, token, project_id
        self.rng = random.Random(seed)
        self.nexts: list[float] = []
        self.submits: list[float] = []
        self.statuses: Counter = Counter()
        self.sent = self.accepted = 0
        self.start = time.perf_counter()
        self.dry = False

    def cycle(self) -> None:
        status, data, seconds = http_request(
            self.port, "GET", f"/api/projects/{self.project_id}/queue/next", self.token
        )
        self.statuses[f"next {status}"] += 1
        if status == 204:
            self.dry = True
        if status != 200:
            return
        self.nexts.append(seconds)
        case_id = json.loads(data)["id"]
        body = json.dumps({"value": self.rng.choice(CLASSES), "seen_label_id": 0}).encode()
        self.sent += 1
        status, _, seconds = http_request(
            self.port, "POST", f"/api/cases/{case_id}/labels", self.token, body
        )
        self.statuses[f"submit {status}"] += 1
        if status == 201:
            self.accepted += 1
            self.submits.append(seconds)

    def result(self) -> dict:
        return {
            "next": self.nexts,
            "submit": self.submits,
            "sent": self.sent,
            "accepted": self.accepted,
            "statuses": dict(self.statuses),
            "start": self.start,
            "end": time.perf_counter(),
        }


def label_cycles(port: int, token: str, project_id: int, cycles: int, seed: int) -> dict:
    """next -> label, `cycles` times (fewer if the queue runs dry)."""
    client = Cycles(port, token, project_id, seed)
    for _ in range(cycles):
        client.cycle()
        if client.dry:
            break
    return client.result()


def interleaved_cycles(clients: list[Cycles], cycles: int) -> list[dict]:
    """One cycle on each client in turn (the order reversed every other round), so that other
    work on the machine falls on every size alike."""
    for i in range(cycles):
        for client in clients if i % 2 == 0 else reversed(clients):
            if not client.dry:
                client.cycle()
    return [client.result() for client in clients]


def _concurrent_client(port, token, project_id, cycles, seed, barrier, results) -> None:
    try:
        barrier.wait(timeout=60)
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = label_cycles(port, token, project_id, cycles, seed)
        after = resource.getrusage(resource.RUSAGE_SELF)
        result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    except BaseException as error:  # reported, not raised: the runner counts the results
        result = {"error": repr(error)}
    results.put(result)


def concurrent_cycles(port: int, tokens: list[str], project_id: int, cycles: int) -> dict:
    """One process per clinician, all starting together; the merged results."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(tokens))
    results = context.Queue()
    processes = [
        context.Process(
            target=_concurrent_client,
            args=(port, token, project_id, cycles, 1000 + i, barrier, results),
            daemon=True,
        )
        for i, token in enumerate(tokens)
    ]
    for process in processes:
        process.start()
    collected = []
    try:
        for _ in processes:
            collected.append(results.get(timeout=900))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    errors = [r["error"] for r in collected if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[:3]}")
    statuses: Counter = Counter()
    for r in collected:
        statuses.update(r["statuses"])
    return {
        "next": [s for r in collected for s in r["next"]],
        "submit": [s for r in collected for s in r["submit"]],
        "sent": sum(r["sent"] for r in collected),
        "accepted": sum(r["accepted"] for r in collected),
        "statuses": dict(statuses),
        "wall_s": max(r["end"] for r in collected) - min(r["start"] for r in collected),
        "client_cpu_s": sum(r["cpu_s"] for r in collected),
    }


# ---------------------------------------------------------------------------------------------
# Child: prepare a project (database, import, clinicians, tokens).


def _django_setup() -> None:
    import django

    django.setup()


def child_prepare(csv: Path, size: int) -> dict:
    _django_setup()
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from apps.accounts.models import User
    from apps.labeling.services import cases_import
    from apps.projects.models import Role
    from apps.projects.services import FeatureSpec, membership_set, project_create
    from bench.bench_import import feature_names

    call_command("migrate", verbosity=0, interactive=False)
    owner = User.objects.create_user(username=BENCH_USERNAME, password="bench-password-not-secret")
    project = project_create(
        name=f"queue {size}",
        classes=CLASSES,
        created_by=owner,
        features=[FeatureSpec(name=n) for n in feature_names()],
    )
    start = time.perf_counter()
    result = cases_import(project=project, path=csv, filename=csv.name, imported_by=owner)
    import_s = time.perf_counter() - start
    if connection.vendor == "postgresql":
        # What autovacuum does shortly after a large import; the measurements should not
        # depend on whether it has come round yet.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE cases_case")
    names = [f"clin{i:02d}" for i in range(CLINICIANS)] + ["solo", "raw", "prof"]
    users = {}
    for name in names:
        user = User.objects.create_user(username=name, password="bench-password-not-secret")
        membership_set(project=project, username=name, role=Role.CLINICIAN)
        users[name] = {"id": user.pk, "token": Token.objects.create(user=user).key}
    return {
        "project_id": project.pk,
        "imported": result.imported,
        "import_s": import_s,
        "users": users,
        "owner_token": Token.objects.create(user=owner).key,
    }


# ---------------------------------------------------------------------------------------------
# Child: the raw reference, with the database library alone.

RAW_NEXT = (
    "SELECT c.id, c.external_id, c.occurred_at, c.current_label, c.features, c.queue_rank"
    " FROM cases_case c WHERE c.project_id = %s AND c.queue_open > 0 AND NOT EXISTS ("
    " SELECT 1 FROM labeling_lease l WHERE l.case_id = c.id AND l.user_id = %s"
    " AND l.state IN ('labeled', 'skipped'))"
    " ORDER BY c.queue_rank, c.id LIMIT 1{lock}"
)
RAW_TAKE = "UPDATE cases_case SET queue_open = queue_open - 1 WHERE id = %s AND queue_open > 0"
RAW_LEASE = (
    "INSERT INTO labeling_lease (project_id, case_id, user_id, task_id, state, rank,"
    " expires_at, created_at, closed_at) VALUES (%s, %s, %s, NULL, 'active', %s, %s, %s, NULL)"
    " RETURNING id"
)
RAW_SUBMIT = [
    "SELECT current_label, queue_wanted, external_id, project_id FROM cases_case"
    " WHERE id = %s{lock}",
    "INSERT INTO labeling_label (project_id, case_id, value, kind, author_id, note, created_at)"
    " VALUES (%s, %s, %s, 'labeled', %s, '', %s) RETURNING id",
    "UPDATE labeling_labelcount SET cases = cases + %s WHERE project_id = %s AND value = %s",
    "UPDATE cases_case SET current_label = %s WHERE id = %s",
    "UPDATE labeling_lease SET state = 'labeled', closed_at = %s WHERE id = %s",
    "UPDATE projects_project SET labels_version = labels_version + 1, last_labeled_at = %s"
    " WHERE id = %s",
]


class RawDb:
    """psycopg 3 or sqlite3 with the same calls: connect, run statements, commit, close."""

    def __init__(self, engine: str, sqlite_path: Path | None) -> None:
        self.engine = engine
        self.sqlite_path = sqlite_path
        self.lock = " FOR UPDATE OF c SKIP LOCKED" if engine == "postgresql" else ""
        self.case_lock = " FOR UPDATE" if engine == "postgresql" else ""

    def connect(self):
        if self.engine == "postgresql":
            import psycopg

            return psycopg.connect(os.environ["DATABASE_URL"])
        import sqlite3

        conn = sqlite3.connect(self.sqlite_path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")  # as Django's init_command; WAL is persistent
        return conn

    def begin(self, conn) -> None:
        if self.engine == "sqlite":
            conn.execute("BEGIN IMMEDIATE")  # Django's transaction_mode for SQLite

    def run(self, conn, sql: str, params: list) -> list[tuple]:
        if self.engine == "sqlite":
            sql = sql.replace("%s", "?")
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []

    def stamp(self, when: datetime):
        if self.engine == "sqlite":
            return when.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return when

    def commit(self, conn) -> None:
        if self.engine == "sqlite":
            conn.execute("COMMIT")
        else:
            conn.commit()


def raw_next(db: RawDb, conn, project_id: int, user_id: int) -> tuple[int, int] | None:
    """The queue hand-out in one transaction: (case id, lease id)."""
    db.begin(conn)
    found = db.run(conn, RAW_NEXT.format(lock=db.lock), [project_id, user_id])
    if not found:
        db.commit(conn)
        return None
    case_id, rank = found[0][0], found[0][5]
    now = datetime.now(UTC)
    db.run(conn, RAW_TAKE, [case_id])
    ((lease_id,),) = db.run(
        conn,
        RAW_LEASE,
        [project_id, case_id, user_id, rank, db.stamp(now + timedelta(minutes=15)), db.stamp(now)],
    )
    db.commit(conn)
    return case_id, lease_id


def raw_submit(db: RawDb, conn, case_id: int, lease_id: int, user_id: int, value: str) -> None:
    """The label submit's statements in one transaction."""
    lock_case, insert, count, case_label, lease, project = RAW_SUBMIT
    now = db.stamp(datetime.now(UTC))
    db.begin(conn)
    ((current, _, _, project_id),) = db.run(conn, lock_case.format(lock=db.case_lock), [case_id])
    db.run(conn, insert, [project_id, case_id, value, user_id, now])
    for moved, delta in sorted([(current, -1), (value, 1)]):
        db.run(conn, count, [delta, project_id, moved])
    db.run(conn, case_label, [value, case_id])
    db.run(conn, lease, [now, lease_id])
    db.run(conn, project, [now, project_id])
    db.commit(conn)


def child_raw(
    engine: str, sqlite_path: Path, project_id: int, user_id: int, cycles: int, keep: bool
) -> dict:
    db = RawDb(engine, sqlite_path)
    rng = random.Random(7)
    nexts: list[float] = []
    submits: list[float] = []
    kept = db.connect() if keep else None
    try:
        for _ in range(cycles):
            start = time.perf_counter()
            conn = kept or db.connect()
            handed = raw_next(db, conn, project_id, user_id)
            if not keep:
                conn.close()
            nexts.append(time.perf_counter() - start)
            if handed is None:
                break
            start = time.perf_counter()
            conn = kept or db.connect()
            raw_submit(db, conn, *handed, user_id, rng.choice(CLASSES))
            if not keep:
                conn.close()
            submits.append(time.perf_counter() - start)
    finally:
        if kept is not None:
            kept.close()
    return {"next": nexts, "submit": submits, "labels": len(submits)}


# ---------------------------------------------------------------------------------------------
# Child: what the database holds afterwards.


def child_verify(project_id: int, expected: int, clinicians: list[int], concurrent: int) -> dict:
    _django_setup()
    from django.db import connection

    def one(sql: str, params: list) -> int:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.fetchone()[0] or 0)

    marks = ", ".join(["%s"] * len(clinicians))
    checks = {
        "labeled": one(
            "SELECT count(*) FROM labeling_label WHERE project_id = %s AND kind = 'labeled'",
            [project_id],
        ),
        "labeled_by_concurrent": one(
            f"SELECT count(*) FROM labeling_label WHERE project_id = %s AND kind = 'labeled'"
            f" AND author_id IN ({marks})",
            [project_id, *clinicians],
        ),
        "other_kinds": one(
            "SELECT count(*) FROM labeling_label WHERE project_id = %s AND kind <> 'labeled'",
            [project_id],
        ),
        "twice_by_same_author": one(
            "SELECT count(*) FROM (SELECT case_id, author_id FROM labeling_label"
            " WHERE project_id = %s GROUP BY case_id, author_id HAVING count(*) > 1) t",
            [project_id],
        ),
        "cases_over_leased": one(
            "SELECT count(*) FROM (SELECT l.case_id FROM labeling_lease l"
            " JOIN cases_case c ON c.id = l.case_id WHERE l.project_id = %s"
            " GROUP BY l.case_id, c.queue_wanted"
            " HAVING count(DISTINCT l.user_id) > c.queue_wanted) t",
            [project_id],
        ),
        "cases_over_labeled": one(
            "SELECT count(*) FROM (SELECT b.case_id FROM labeling_label b"
            " JOIN cases_case c ON c.id = b.case_id WHERE b.project_id = %s"
            " GROUP BY b.case_id, c.queue_wanted HAVING count(*) > c.queue_wanted) t",
            [project_id],
        ),
        "active_leases": one(
            "SELECT count(*) FROM labeling_lease WHERE project_id = %s AND state = 'active'",
            [project_id],
        ),
        "labeled_cases": one(
            "SELECT count(*) FROM cases_case WHERE project_id = %s AND current_label <> ''",
            [project_id],
        ),
        "count_labeled": one(
            "SELECT sum(cases) FROM labeling_labelcount WHERE project_id = %s AND value <> ''",
            [project_id],
        ),
    }
    problems = []
    if checks["labeled"] != expected:
        problems.append(f"{checks['labeled']} labels stored, {expected} accepted")
    if checks["labeled_by_concurrent"] != concurrent:
        problems.append(
            f"{checks['labeled_by_concurrent']} labels of the 20 clinicians stored, "
            f"{concurrent} accepted"
        )
    for name in (
        "other_kinds",
        "twice_by_same_author",
        "cases_over_leased",
        "cases_over_labeled",
        "active_leases",
    ):
        if checks[name]:
            problems.append(f"{name.replace('_', ' ')}: {checks[name]}")
    if not checks["labeled_cases"] == checks["count_labeled"] == expected:
        problems.append(
            f"labeled cases {checks['labeled_cases']}, label counts {checks['count_labeled']}"
        )
    return {"checks": checks, "problems": problems}


# ---------------------------------------------------------------------------------------------
# Child: in-process requests, the time of each split by region.


class Regions:
    """Exclusive wall time and SQL statements per named region, for the request kind at hand."""

    def __init__(self) -> None:
        self.kind = ""
        self.stack: list[list] = []
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.queries: Counter = Counter()

    def enter(self, name: str) -> None:
        self.stack.append([name, time.perf_counter(), 0.0])

    def leave(self) -> None:
        name, start, inner = self.stack.pop()
        elapsed = time.perf_counter() - start
        self.seconds[(self.kind, name)] += elapsed - inner
        if self.stack:
            self.stack[-1][2] += elapsed

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self.enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        return timed

    def patch(self, owner: object, attribute: str, name: str) -> None:
        setattr(owner, attribute, self.wrap(name, getattr(owner, attribute)))

    def sql(self, execute, sql, params, many, context):
        owner = self.stack[-1][0] if self.stack else "-"
        self.queries[(self.kind, owner)] += 1
        self.enter("SQL statements (driver + database)")
        try:
            return execute(sql, params, many, context)
        finally:
            self.leave()


def _instrument(regions: Regions) -> None:
    """Wrap the functions a next or submit request goes through (this process only)."""
    from django.conf import settings
    from django.db import connections
    from django.db.models import Model
    from django.db.models.query import QuerySet, RawQuerySet
    from django.urls.resolvers import URLResolver
    from django.utils.module_loading import import_string
    from rest_framework import renderers, serializers
    from rest_framework.authentication import TokenAuthentication
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from apps.api import views
    from apps.labeling import selectors as labeling_selectors
    from apps.labeling import services as labeling_services

    for path in settings.MIDDLEWARE:
        cls = import_string(path)
        for hook in ("process_request", "process_view", "process_response"):
            if hook in cls.__dict__:
                regions.patch(cls, hook, f"middleware {cls.__name__}")
    regions.patch(URLResolver, "resolve", "URL resolving")
    regions.patch(APIView, "initial", "DRF initial (negotiation, permission, throttles)")
    regions.patch(APIView, "finalize_response", "DRF finalize_response")
    regions.patch(Request, "_parse", "DRF request body parsing")
    regions.patch(TokenAuthentication, "authenticate", "token authentication")
    regions.patch(views, "project_get_for_user", "access check (project_get_for_user)")
    regions.patch(views, "_case_for_user", "case lookup (views._case_for_user)")
    regions.patch(views, "_case_out", "case JSON (views._case_out)")
    regions.patch(views, "case_features_dict", "features dict (case_features_dict)")
    regions.patch(labeling_services, "queue_next", "service queue_next")
    regions.patch(labeling_services, "leases_expire", "service leases_expire")
    regions.patch(labeling_selectors, "queue_candidate", "selector queue_candidate")
    regions.patch(labeling_services, "label_record", "service label_record")
    regions.patch(serializers.BaseSerializer, "is_valid", "DRF serializers")
    regions.patch(serializers.Serializer, "to_representation", "DRF serializers")
    regions.patch(renderers.JSONRenderer, "render", "DRF JSON rendering")
    regions.patch(Model, "save", "ORM Model.save")
    regions.patch(QuerySet, "_fetch_all", "ORM queries (compile, rows to objects)")
    regions.patch(RawQuerySet, "_fetch_all", "ORM queries (compile, rows to objects)")
    wrapper = connections["default"]
    for method, name in (
        ("connect", "database connect"),
        ("is_usable", "database health check (SELECT 1)"),
        ("close", "database close"),
        ("commit", "transaction begin/commit"),
        ("set_autocommit", "transaction begin/commit"),
    ):
        setattr(wrapper, method, regions.wrap(name, getattr(wrapper, method)))
    wrapper.execute_wrappers.append(regions.sql)


def _wsgi_call(app, method: str, path: str, token: str, body: bytes = b"") -> tuple[str, bytes]:
    import io

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "HTTP_ACCEPT": "application/json",
        "CONTENT_TYPE": "application/json" if body else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status: list[str] = []
    result = app(environ, lambda s, headers, exc_info=None: status.append(s))
    try:
        data = b"".join(result)
    finally:
        result.close()  # request_finished: Django closes or keeps the database connection
    return status[0], data


def child_profile(project_id: int, token: str, cycles: int, warmup: int, cprofile: int = 0) -> dict:
    """Requests handed to the WSGI application in this process. With `cprofile`, no regions:
    cProfile (counting this process's CPU time, so other work on the machine does not count)
    and the `cprofile` functions that cost the most, per request kind."""
    _django_setup()
    regions = Regions()
    profilers: dict[str, Any] = {}
    if cprofile:
        import cProfile

        profilers = {k: cProfile.Profile(time.process_time) for k in ("next", "submit")}
    else:
        _instrument(regions)
    from config.wsgi import application

    rng = random.Random(11)
    latencies: dict[str, list[float]] = {"next": [], "submit": []}

    def cycle(measure: bool) -> bool:
        case_id = 0
        for kind in ("next", "submit"):
            regions.kind = kind if measure else "warmup"
            if kind == "next":
                args = ("GET", f"/api/projects/{project_id}/queue/next", token)
            else:
                body = json.dumps({"value": rng.choice(CLASSES), "seen_label_id": 0}).encode()
                args = ("POST", f"/api/cases/{case_id}/labels", token, body)
            start = time.perf_counter()
            regions.enter("Django/DRF plumbing (handler, request, response)")
            profiler = profilers.get(kind) if measure else None
            if profiler:
                profiler.enable()
            try:
                status, data = _wsgi_call(application, *args)
            finally:
                if profiler:
                    profiler.disable()
                regions.leave()
            if measure:
                latencies[kind].append(time.perf_counter() - start)
            if kind == "next":
                if not status.startswith("200"):
                    return False
                case_id = json.loads(data)["id"]
            elif not status.startswith("201"):
                raise RuntimeError(f"label submit answered {status}: {data[:300]!r}")
        return True

    for _ in range(warmup):
        cycle(measure=False)
    done = sum(cycle(measure=True) for _ in range(cycles))
    per_request: dict[str, dict[str, float]] = {"next": {}, "submit": {}}
    queries: dict[str, dict[str, float]] = {"next": {}, "submit": {}}
    for (kind, name), seconds in regions.seconds.items():
        if kind in per_request:
            per_request[kind][name] = seconds * 1000 / done
    for (kind, name), count in regions.queries.items():
        if kind in queries:
            queries[kind][name] = count / done
    top = {}
    for kind, profiler in profilers.items():
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(cprofile)
        stats.sort_stats("cumulative").print_stats(cprofile)
        top[kind] = out.getvalue()
    return {
        "cprofile": top,
        "cycles": done,
        "next": latencies["next"],
        "submit": latencies["submit"],
        "ms_per_request": per_request,
        "queries_per_request": queries,
    }


# ---------------------------------------------------------------------------------------------
# The runner.


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    import numpy as np

    if not seconds:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


@dataclass
class LatencyRow:
    benchmark: str
    db: str
    cases: int
    latencies: list[float]
    per_s: float | None = None
    raw_p50_ms: float | None = None
    target_ms: float | None = None
    note: str = ""
    stats: tuple[float, float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.stats = percentiles(self.latencies)

    @property
    def p95(self) -> float:
        return self.stats[1]

    @property
    def met(self) -> bool | None:
        if self.target_ms is None or not self.latencies:
            return None
        return self.p95 <= self.target_ms


COLUMNS = [
    ("benchmark", 36, "<"),
    ("db", 10, "<"),
    ("cases", 9, ">"),
    ("n", 5, ">"),
    ("p50 ms", 7, ">"),
    ("p95 ms", 7, ">"),
    ("p99 ms", 7, ">"),
    ("per s", 7, ">"),
    ("ours/raw p50", 12, ">"),
    ("target p95", 10, ">"),
    ("met?", 4, "<"),
    ("note", 0, "<"),
]


def _cases(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def format_rows(rows: list[LatencyRow]) -> str:
    def line(cells: list[str]) -> str:
        return " | ".join(
            f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, COLUMNS, strict=True)
        ).rstrip()

    out = [line([name for name, _, _ in COLUMNS])]
    out.append("-" * len(out[0]))
    for row in rows:
        p50, p95, p99 = row.stats
        ratio = "-"
        if row.raw_p50_ms:
            ratio = f"{p50 / row.raw_p50_ms:.1f}"
        out.append(
            line(
                [
                    row.benchmark,
                    row.db,
                    _cases(row.cases),
                    str(len(row.latencies)),
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{p99:.1f}",
                    "-" if row.per_s is None else f"{row.per_s:.0f}",
                    ratio,
                    "-" if row.target_ms is None else f"<= {row.target_ms:g}",
                    {None: "-", True: "yes", False: "NO"}[row.met],
                    row.note,
                ]
            )
        )
    return "\n".join(out)


def format_profile(profiles: dict[str, dict]) -> str:
    """One column pair (next, submit) per database: ms per request and SQL statements."""
    names: dict[str, float] = defaultdict(float)
    for profile in profiles.values():
        for kind in ("next", "submit"):
            for name, ms in profile["ms_per_request"][kind].items():
                names[name] += ms
    order = sorted(names, key=lambda n: -names[n])
    header = f"{'region (exclusive time)':52}"
    for db in profiles:
        header += f" | {db + ' next':>17} | {db + ' submit':>19}"
    out = [header, "-" * len(header)]
    totals = {db: {"next": 0.0, "submit": 0.0} for db in profiles}
    for name in order:
        cells = f"{name:52}"
        for db, profile in profiles.items():
            for kind, width in (("next", 17), ("submit", 19)):
                ms = profile["ms_per_request"][kind].get(name, 0.0)
                count = profile["queries_per_request"][kind].get(name, 0.0)
                totals[db][kind] += ms
                text = f"{ms:.2f}" + (f" ({count:.0f} q)" if count else "")
                cells += f" | {text:>{width}}"
        out.append(cells)
    cells = f"{'total in-process (mean ms; q = SQL statements issued)':52}"
    for db, profile in profiles.items():
        for kind, width in (("next", 17), ("submit", 19)):
            count = sum(profile["queries_per_request"][kind].values())
            cells += f" | {f'{totals[db][kind]:.2f} ({count:.0f} q)':>{width}}"
    out.append(cells)
    return "\n".join(out)


@dataclass
class Plan:
    engines: list[str]
    sizes: list[int]
    cycles: int  # one client
    concurrent_cycles: int  # per clinician
    profile_cycles: int
    sqlite_1m: bool = False
    warmup: int = 20

    def skip(self, engine: str, size: int) -> str:
        if engine == "sqlite" and size >= 1_000_000 and not self.sqlite_1m:
            return (
                "not measured by default (its import is the slowest set-up); "
                "add --sqlite-1m to include it"
            )
        return ""


def plan_for(
    quick: bool,
    engines: list[str] | None = None,
    sizes: list[int] | None = None,
    sqlite_1m: bool = False,
) -> Plan:
    return Plan(
        engines=engines or ["postgresql", "sqlite"],
        sizes=sizes or ([10_000] if quick else [10_000, 1_000_000]),
        cycles=100 if quick else 300,
        concurrent_cycles=50 if quick else 100,
        profile_cycles=50 if quick else 150,
        sqlite_1m=sqlite_1m,
    )


def measure_engine(
    engine: str, sizes: list[int], csvs: dict[int, Path], plan: Plan, workdir: Path
) -> dict[int, dict]:
    """Prepare one database per size, serve each with its own gunicorn, and measure: the
    one-client cycles of all sizes interleaved, then per size the raw reference and the 20
    clients; afterwards verify the stored labels and profile in-process."""
    targets = {size: Target(engine, workdir / f"var-{engine}-{size}", size) for size in sizes}
    label = targets[sizes[0]].label
    results: dict[int, dict] = {}
    prepared: dict[int, dict] = {}
    try:
        for size, target in targets.items():
            tag = f"{label} {_cases(size)}"
            target.create()
            say(f"{tag}: migrate, import {size:,} cases, create {CLINICIANS + 3} clinicians")
            prepared[size] = run_child(
                ["prepare", "--csv", str(csvs[size]), "--size", str(size)], target, 900
            )
            say(f"{tag}: imported in {prepared[size]['import_s']:.1f} s")
            if engine == "postgresql":
                _pg_checkpoint(target.dsn)
            results[size] = {
                "import_s": prepared[size]["import_s"],
                "imported": prepared[size]["imported"],
                "busy": {},
            }
        code = code_version()
        with contextlib.ExitStack() as stack:
            servers = {
                size: stack.enter_context(
                    Server(
                        target,
                        workdir / f"gunicorn-{engine}-{size}.log",
                        prepared[size]["users"]["solo"]["token"],
                        GUNICORN_WORKERS,
                    )
                )
                for size, target in targets.items()
            }
            warm = {
                size: label_cycles(
                    servers[size].port,
                    prepared[size]["users"]["solo"]["token"],
                    prepared[size]["project_id"],
                    plan.warmup,
                    1,
                )
                for size in sizes
            }
            say(
                f"{label} {', '.join(_cases(s) for s in sizes)}: one client, {plan.cycles} "
                "cycles" + (" per size, sizes interleaved" if len(sizes) > 1 else "")
            )
            busy = wait_quiet()
            singles = interleaved_cycles(
                [
                    Cycles(
                        servers[size].port,
                        prepared[size]["users"]["solo"]["token"],
                        prepared[size]["project_id"],
                        2,
                    )
                    for size in sizes
                ],
                plan.cycles,
            )
            for size, single in zip(sizes, singles, strict=True):
                results[size]["single"] = single
                results[size]["warm"] = warm[size]
                results[size]["busy"]["single"] = busy
            for size, target in targets.items():
                tag = f"{label} {_cases(size)}"
                users, project_id = prepared[size]["users"], prepared[size]["project_id"]
                result = results[size]
                say(f"{tag}: raw reference")
                result["busy"]["raw"] = wait_quiet()
                raw_args = [
                    "raw",
                    "--engine",
                    engine,
                    "--project-id",
                    str(project_id),
                    "--user-id",
                    str(users["raw"]["id"]),
                    "--cycles",
                    str(plan.cycles),
                ]
                result["raw"] = run_child(raw_args, target, 600)
                if engine == "postgresql":
                    result["raw_kept"] = run_child([*raw_args, "--keep"], target, 600)
                say(f"{tag}: {CLINICIANS} clients at once, {plan.concurrent_cycles} cycles each")
                tokens = [users[f"clin{i:02d}"]["token"] for i in range(CLINICIANS)]
                result["busy"]["concurrent"] = wait_quiet()
                result["concurrent"] = concurrent_cycles(
                    servers[size].port, tokens, project_id, plan.concurrent_cycles
                )
        changed = code_version() != code
        for size, target in targets.items():
            tag = f"{label} {_cases(size)}"
            users, project_id = prepared[size]["users"], prepared[size]["project_id"]
            result = results[size]
            result["code"] = code
            result["code_changed"] = changed
            problems = [
                f"{name}: {count}"
                for part in (result["warm"], result["single"], result["concurrent"])
                for name, count in part["statuses"].items()
                if not name.endswith((" 200", " 201"))
            ]
            expected = (
                result["warm"]["accepted"]
                + result["single"]["accepted"]
                + result["raw"]["labels"]
                + result.get("raw_kept", {}).get("labels", 0)
                + result["concurrent"]["accepted"]
            )
            clinicians = ",".join(str(users[f"clin{i:02d}"]["id"]) for i in range(CLINICIANS))
            say(f"{tag}: verify the database")
            verified = run_child(
                [
                    "verify",
                    "--project-id",
                    str(project_id),
                    "--expected",
                    str(expected),
                    "--clinicians",
                    clinicians,
                    "--concurrent",
                    str(result["concurrent"]["accepted"]),
                ],
                target,
                300,
            )
            result["verify"] = verified
            result["problems"] = problems + verified["problems"]
            say(f"{tag}: in-process profile, {plan.profile_cycles} cycles")
            result["busy"]["profile"] = wait_quiet()
            result["profile"] = run_child(
                [
                    "profile",
                    "--project-id",
                    str(project_id),
                    "--token",
                    users["prof"]["token"],
                    "--cycles",
                    str(plan.profile_cycles),
                ],
                target,
                600,
            )
    finally:
        for target in targets.values():
            with contextlib.suppress(Exception):
                target.drop()
    return results


def rows_for(engine: str, db: str, size: int, result: dict) -> list[LatencyRow]:
    single, raw, conc, prof = (
        result["single"],
        result["raw"],
        result["concurrent"],
        result["profile"],
    )
    raw_next_p50 = percentiles(raw["next"])[0]
    raw_submit_p50 = percentiles(raw["submit"])[0]
    ours_next = percentiles(single["next"])
    ours_submit = percentiles(single["submit"])
    in_next = percentiles(prof["next"])
    in_submit = percentiles(prof["submit"])
    q_next = sum(prof["queries_per_request"]["next"].values())
    q_submit = sum(prof["queries_per_request"]["submit"].values())
    rows = [
        LatencyRow(
            "queue/next, 1 client, new conn",
            db,
            size,
            single["next"],
            per_s=len(single["next"]) / sum(single["next"]),
            raw_p50_ms=raw_next_p50,
            target_ms=TARGET_NEXT_P95_MS,
            note=f"ours/raw p95 {ours_next[1] / percentiles(raw['next'])[1]:.1f}",
        ),
        LatencyRow(
            "label submit, 1 client, new conn",
            db,
            size,
            single["submit"],
            per_s=len(single["submit"]) / sum(single["submit"]),
            raw_p50_ms=raw_submit_p50,
            target_ms=TARGET_SUBMIT_P95_MS,
            note=f"ours/raw p95 {ours_submit[1] / percentiles(raw['submit'])[1]:.1f}",
        ),
        LatencyRow(
            "  raw next (SQL, new conn)",
            db,
            size,
            raw["next"],
            per_s=len(raw["next"]) / sum(raw["next"]),
            note="SELECT .. SKIP LOCKED + UPDATE + INSERT, 1 transaction"
            if engine == "postgresql"
            else "BEGIN IMMEDIATE; SELECT + UPDATE + INSERT",
        ),
        LatencyRow(
            "  raw submit (SQL, new conn)",
            db,
            size,
            raw["submit"],
            per_s=len(raw["submit"]) / sum(raw["submit"]),
            note="the submit's 7 statements, 1 transaction",
        ),
    ]
    if "raw_kept" in result:
        kept = result["raw_kept"]
        rows += [
            LatencyRow(
                "  raw next (SQL, kept conn)",
                db,
                size,
                kept["next"],
                per_s=len(kept["next"]) / sum(kept["next"]),
                note=f"ours/raw p50 {ours_next[0] / percentiles(kept['next'])[0]:.1f}",
            ),
            LatencyRow(
                "  raw submit (SQL, kept conn)",
                db,
                size,
                kept["submit"],
                per_s=len(kept["submit"]) / sum(kept["submit"]),
                note=f"ours/raw p50 {ours_submit[0] / percentiles(kept['submit'])[0]:.1f}",
            ),
        ]
    rows += [
        LatencyRow(
            "  next in-process (WSGI, no HTTP)",
            db,
            size,
            prof["next"],
            note=f"{q_next:.0f} SQL statements; HTTP+gunicorn adds "
            f"{ours_next[0] - in_next[0]:.1f} ms at p50",
        ),
        LatencyRow(
            "  submit in-process (WSGI, no HTTP)",
            db,
            size,
            prof["submit"],
            note=f"{q_submit:.0f} SQL statements; HTTP+gunicorn adds "
            f"{ours_submit[0] - in_submit[0]:.1f} ms at p50",
        ),
    ]
    checks = result["verify"]["checks"]
    verdict = (
        "verified: "
        + f"{checks['labeled']:,} labels stored once, 0 cases over-leased, 0 active leases"
        if not result["problems"]
        else "PROBLEMS: " + "; ".join(result["problems"])
    )
    client_share = conc["client_cpu_s"] / conc["wall_s"]
    rows += [
        LatencyRow(
            f"queue/next, {CLINICIANS} clients at once",
            db,
            size,
            conc["next"],
            per_s=len(conc["next"]) / conc["wall_s"],
            note=f"{conc['wall_s']:.1f} s wall; clients used {client_share:.2f} of a core",
        ),
        LatencyRow(
            f"label submit, {CLINICIANS} clients at once",
            db,
            size,
            conc["submit"],
            per_s=conc["accepted"] / conc["wall_s"],
            note=f"per s = labels/s; {verdict}",
        ),
    ]
    return rows


def run(
    quick: bool,
    workdir: Path,
    engines: list[str] | None = None,
    sizes: list[int] | None = None,
    sqlite_1m: bool = False,
) -> str:
    """The whole queue benchmark; returns the text to print (tables and summary)."""
    from bench.bench_import import write_cases_csv

    plan = plan_for(quick, engines, sizes, sqlite_1m)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], dict] = {}
    csvs: dict[int, Path] = {}
    try:
        for size in plan.sizes:
            csvs[size] = workdir / f"queue_cases_{size}.csv"
            say(f"writing {csvs[size].name}")
            write_cases_csv(csvs[size], size)
        for engine in plan.engines:
            sizes = []
            for size in plan.sizes:
                if reason := plan.skip(engine, size):
                    results[(engine, size)] = {"skipped": reason}
                else:
                    sizes.append(size)
            if sizes:
                measured = measure_engine(engine, sizes, csvs, plan, workdir)
                results.update({(engine, size): r for size, r in measured.items()})
    finally:
        for csv in csvs.values():
            csv.unlink(missing_ok=True)
    labels = {e: Target(e, workdir, 0).label for e in plan.engines}
    return report(plan, labels, results)


def report(plan: Plan, labels: dict[str, str], results: dict) -> str:
    rows: list[LatencyRow] = []
    notes: list[str] = []
    for engine in plan.engines:
        for size in plan.sizes:
            result = results.get((engine, size))
            if result is None:
                continue
            if "skipped" in result:
                notes.append(
                    f"{labels[engine]} {_cases(size)}: skipped, {result['skipped']}; "
                    f"{_cases(size)} runs on PostgreSQL only."
                )
                continue
            rows += rows_for(engine, labels[engine], size, result)
            busy = ", ".join(f"{k} {v:.0%}" for k, v in result["busy"].items())
            notes.append(
                f"{labels[engine]} {_cases(size)}: import of {result['imported']:,} "
                f"cases took {result['import_s']:.1f} s; CPU in use by other work just before "
                f"each step: {busy}."
            )
    # Growth from the smallest to the largest size, one client.
    growth: list[tuple[str, bool]] = []
    small, large = min(plan.sizes), max(plan.sizes)
    if small != large:
        for engine in plan.engines:
            a, b = results.get((engine, small)), results.get((engine, large))
            if not a or not b or "skipped" in a or "skipped" in b:
                continue
            for kind, label in (("next", "queue/next"), ("submit", "label submit")):
                ratio = percentiles(b["single"][kind])[1] / percentiles(a["single"][kind])[1]
                ok = ratio <= GROWTH_LIMIT
                growth.append(
                    (
                        f"  {labels[engine]:10} {label:12} p95 {_cases(large)}/"
                        f"{_cases(small)} = {ratio:.2f}  (target <= {GROWTH_LIMIT:g}: "
                        f"{'yes' if ok else 'NO'})",
                        ok,
                    )
                )
    met = [row.met for row in rows if row.met is not None] + [ok for _, ok in growth]
    text = [
        "Labeling queue through the HTTP API (gunicorn, "
        f"{GUNICORN_WORKERS} sync workers, DEBUG off, token auth, a new TCP connection per "
        "request); latencies measured by the client",
        "",
        format_rows(rows),
    ]
    if growth:
        text += ["", "No growth from 10k to 1M cases (one client):", *(g for g, _ in growth)]
    text += ["", *notes] if notes else []
    profiles = {
        labels[engine]: results[(engine, small)]["profile"]
        for engine in plan.engines
        if (engine, small) in results and "skipped" not in results[(engine, small)]
    }
    if profiles:
        text += [
            "",
            f"Where the time goes, {_cases(small)} cases, in-process (the WSGI application "
            "called directly), mean ms per request:",
            format_profile(profiles),
        ]
    versions = {r["code"] for r in results.values() if "code" in r}
    changed = [f"{labels[e]} {_cases(s)}" for (e, s), r in results.items() if r.get("code_changed")]
    text += ["", f"App code (commit/digest of apps/ and config/): {', '.join(sorted(versions))}."]
    if len(versions) > 1 or changed:
        text.append(
            "WARNING: the app code changed during the run"
            + (f" (while measuring {', '.join(changed)})" if changed else "")
            + "; figures of different sizes or databases may not be comparable."
        )
    problems = [
        f"{labels[e]} {_cases(s)}: {p}"
        for (e, s), r in results.items()
        if "problems" in r
        for p in r["problems"]
    ]
    if problems:
        text += ["", "PROBLEMS:", *problems]
    text += ["", f"queue: {sum(met)} of {len(met)} targets met."]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bench_queue")
    sub = parser.add_subparsers(dest="step")
    whole = sub.add_parser("all", help="the whole benchmark (the default)")
    for p in (parser, whole):
        p.add_argument("--quick", action="store_true", help="10k only, fewer cycles")
        p.add_argument("--db", default="postgresql,sqlite", help="postgresql,sqlite")
        p.add_argument("--sizes", default="", help="e.g. 10000,1000000")
        p.add_argument("--sqlite-1m", action="store_true", help="also 1M cases on SQLite")
    prepare = sub.add_parser("prepare")
    prepare.add_argument("--csv", type=Path, required=True)
    prepare.add_argument("--size", type=int, required=True)
    raw = sub.add_parser("raw")
    raw.add_argument("--engine", required=True)
    raw.add_argument("--project-id", type=int, required=True)
    raw.add_argument("--user-id", type=int, required=True)
    raw.add_argument("--cycles", type=int, required=True)
    raw.add_argument("--keep", action="store_true")
    verify = sub.add_parser("verify")
    verify.add_argument("--project-id", type=int, required=True)
    verify.add_argument("--expected", type=int, required=True)
    verify.add_argument("--clinicians", required=True)
    verify.add_argument("--concurrent", type=int, required=True)
    profile = sub.add_parser("profile")
    profile.add_argument("--project-id", type=int, required=True)
    profile.add_argument("--token", required=True)
    profile.add_argument("--cycles", type=int, required=True)
    profile.add_argument("--warmup", type=int, default=10)
    profile.add_argument("--cprofile", type=int, default=0, help="print the top N functions")
    args = parser.parse_args(argv)

    if args.step == "prepare":
        emit(child_prepare(args.csv, args.size))
    elif args.step == "raw":
        var_dir = Path(os.environ["CASEBOOK_VAR_DIR"])
        emit(
            child_raw(
                args.engine,
                var_dir / "casebook.sqlite3",
                args.project_id,
                args.user_id,
                args.cycles,
                args.keep,
            )
        )
    elif args.step == "verify":
        clinicians = [int(i) for i in args.clinicians.split(",")]
        emit(child_verify(args.project_id, args.expected, clinicians, args.concurrent))
    elif args.step == "profile":
        result = child_profile(args.project_id, args.token, args.cycles, args.warmup, args.cprofile)
        for kind, text in result.pop("cprofile").items():
            print(f"==== {kind}: cProfile (CPU time) over {result['cycles']} requests\n{text}")
        emit(result)
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s] or None
        engines = [e.strip() for e in args.db.split(",") if e.strip()]
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="casebook-bench-queue-") as tmp:
            print(run(args.quick, Path(tmp), engines, sizes, args.sqlite_1m))
        print(f"whole run {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
