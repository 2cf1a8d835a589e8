"""What every benchmark shares: the bench database, Django set-up, timing and peak memory.

Each measured step runs in its own child process (`run_step`), so its peak resident memory is
its own: the child resets the kernel's high-water mark (VmHWM) after its imports and reads it
again after the step, and reports the difference as "peak MB".
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "casebook_bench"
SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DSN = f"postgresql://postgres@127.0.0.1:5432/{BENCH_DB}"
RESULT_MARK = "BENCH-RESULT "
BENCH_USERNAME = "bench"


@dataclass
class Row:
    """One line of the results table. Times in seconds; None where not measured."""

    benchmark: str
    size: str
    ours_s: float | None
    raw_s: float | None = None
    raw_name: str = ""
    rows: int = 0
    peak_mb: float | None = None
    raw_peak_mb: float | None = None
    target_s: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours_s is None or not self.raw_s:
            return None
        return self.ours_s / self.raw_s

    @property
    def rows_per_s(self) -> float | None:
        if not self.ours_s or not self.rows:
            return None
        return self.rows / self.ours_s

    @property
    def met(self) -> bool | None:
        if self.target_s is None or self.ours_s is None:
            return None
        return self.ours_s <= self.target_s


def bench_env(var_dir: Path) -> dict[str, str]:
    """The environment a benchmark child process runs Django with."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=BENCH_DSN,
        CASEBOOK_VAR_DIR=str(var_dir),
        PYTHONPATH=str(ROOT),
    )
    return env


def django_setup(var_dir: Path) -> None:
    """Configure Django for the bench database in this process (before any model import)."""
    os.environ.update(bench_env(var_dir))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def recreate_database() -> None:
    """Drop and create the bench database, so every run starts empty."""
    import psycopg

    with psycopg.connect(SERVER_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [BENCH_DB],
        )
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")


def migrate_and_seed(var_dir: Path) -> None:
    """Create the schema and the user that imports the files."""
    django_setup(var_dir)
    from django.core.management import call_command

    from apps.accounts.models import User

    call_command("migrate", verbosity=0, interactive=False)
    User.objects.create_user(username=BENCH_USERNAME, password="bench-password-not-secret")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset this process's high-water mark to its current RSS; returns that RSS in kB."""
    # Where this is refused, the delta also counts what was allocated before the step.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def measure(step: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run `step` once: (seconds, peak RSS increase in MB, its result)."""
    base_kb = reset_peak_rss()
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    return seconds, (peak_kb - base_kb) / 1024, result


def emit(result: dict[str, Any]) -> None:
    """A child's answer to `run_step`, on one marked stdout line."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def checkpoint() -> None:
    """Have PostgreSQL write out what earlier steps left in its buffers, so that no step pays
    for the one before it."""
    import psycopg

    with psycopg.connect(BENCH_DSN, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def run_module(module: str, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run `python -m bench.<module> args...` in a child process; the result it emitted."""
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise RuntimeError(
        f"bench.{module} {' '.join(args[:1])} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    )


def run_step(module: str, args: list[str], var_dir: Path, timeout: float = 240) -> dict[str, Any]:
    """Run `python -m bench.<module> args...` after a checkpoint; the result it emitted."""
    checkpoint()
    return run_module(module, args, bench_env(var_dir), timeout)


# Every ours/raw figure is the median of this many runs of each side, the sides alternating
# (raw, ours, raw, ours, ...), so that other work on the machine falls on both alike.
REPEATS = 3


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the lower middle one of an even count), with every run's
    seconds in `all_seconds` so that the report can show the spread."""
    middle = sorted(results, key=lambda r: r["seconds"])[(len(results) - 1) // 2]
    return {**middle, "all_seconds": sorted(r["seconds"] for r in results)}


def spread(result: dict[str, Any]) -> str:
    """'median of a/b/c s' for a note, from median_run's result."""
    seconds = result.get("all_seconds") or [result["seconds"]]
    return f"median of {'/'.join(f'{s:.2f}' for s in seconds)} s"
