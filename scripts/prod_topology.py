"""Casebook's production topology on this machine, and a smoke test of it through HTTP.

    .venv/bin/python scripts/prod_topology.py smoke     # or: make prod-smoke

Starts what `docker/compose.yaml` describes, with the machine's own PostgreSQL and Redis
instead of containers: production settings, migrations and static files, gunicorn with two
web processes, a Celery worker for the ML queue, one for the default queue, and Celery beat.
It loads the demo data, then drives the loop through HTTP as a clinician, a reviewer and a data
scientist would, and stops everything it started. It uses a database and a Redis database of
its own (`casebook_prod_smoke`, Redis 9), dropped and flushed first.

`Topology` is also what the load benchmark (`bench/bench_load.py`) runs against.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


def _server() -> str:
    """The PostgreSQL server the topology's databases go on: the one the test suite uses
    (TEST_DATABASE_URL, else a postgres DATABASE_URL), else this machine's."""
    for name in ("TEST_DATABASE_URL", "DATABASE_URL"):
        url = os.environ.get(name, "")
        if url.startswith(("postgres://", "postgresql://")):
            parts = urllib.parse.urlsplit(url)
            return f"postgresql://{parts.netloc}"
    return "postgresql://postgres@127.0.0.1:5432"


SERVER = _server()


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Topology:
    """The production processes, started and stopped together (`with Topology() as t:`)."""

    database: str = "casebook_prod_smoke"
    redis_db: int = 9
    redis_port: int = 6379
    port: int = 8071
    web_processes: int = 2
    patients: int = 2000
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="casebook-prod-")))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            DJANGO_SECRET_KEY=self._secret,
            DJANGO_DEBUG="0",
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            # Plain HTTP on loopback: no TLS in front of it here.
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_SECURE_COOKIES="false",
            DATABASE_URL=f"{SERVER}/{self.database}",
            CELERY_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/{self.redis_db}",
            CASEBOOK_MODEL_DIR=str(self.workdir / "models"),
            CASEBOOK_VAR_DIR=str(self.workdir / "var"),
            CASEBOOK_RETRAIN_POLL_SECONDS="5",
            PYTHONPATH=str(ROOT),
        )
        return env

    def __post_init__(self) -> None:
        self._secret = secrets.token_hex(32)

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Topology:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def manage(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start(self) -> None:
        import psycopg
        import redis

        say(f"database {self.database} and Redis db {self.redis_db}, fresh")
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                [self.database],
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            conn.execute(f'CREATE DATABASE "{self.database}"')
        redis.Redis(host="127.0.0.1", port=self.redis_port, db=self.redis_db).flushdb()
        (self.workdir / "models").mkdir(parents=True, exist_ok=True)
        say("migrate, collectstatic, demo data")
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("collectstatic", "--no-input", "-v", "0")
        self.manage("load_demo", "--patients", str(self.patients))
        logs = self.workdir / "log"
        logs.mkdir(exist_ok=True)
        # INFO: a failure's log then shows each task received and each reconnection.
        celery = [PYTHON, "-m", "celery", "-A", "config"]
        info = ["--loglevel", "INFO"]
        commands = {
            "web": [
                PYTHON,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--workers",
                str(self.web_processes),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--access-logfile",
                "-",
            ],
            "worker-ml": [
                *celery,
                "worker",
                *info,
                "-Q",
                "ml",
                "--concurrency",
                "1",
                "-n",
                "ml@%h",
            ],
            "worker-default": [
                *celery,
                "worker",
                *info,
                "-Q",
                "default",
                "--concurrency",
                "2",
                "-n",
                "default@%h",
            ],
            "beat": [
                *celery,
                "beat",
                *info,
                "--schedule",
                str(self.workdir / "celerybeat-schedule"),
            ],
        }
        for name, command in commands.items():
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115  (closed with the process)
            self.processes[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        say(f"started {', '.join(self.processes)}; waiting for {self.base_url}")
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/accounts/login/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the web processes did not answer:\n{self.log('web')}"
                    ) from None
                self._check_alive()
                time.sleep(0.3)

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.log(name)}")

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.workdir / "log" / f"{name}.log"
        return path.read_text()[-tail:] if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of each part (the process and its children), in MB."""
        sizes: dict[str, float] = {}
        for name, process in self.processes.items():
            pids = [process.pid, *_children(process.pid)]
            sizes[name] = sum(_rss_kb(p) for p in pids) / 1024
        return sizes

    def token(self, username: str) -> str:
        out = self.manage("drf_create_token", username)
        return out.split()[2]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                child = int(entry.name)
                found += [child, *_children(child)]
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Client:
    """A tiny JSON client over urllib (no extra dependency)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status, headers = response.status, dict(response.headers)
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, dict(error.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, parsed, headers


def _wait(what: str, probe, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def smoke(topology: Topology) -> list[tuple[str, str]]:
    """Drive the loop through HTTP; returns (check, figure) rows. Raises on the first failure."""
    rows: list[tuple[str, str]] = []

    def check(name: str, ok: bool, figure: str) -> None:
        if not ok:
            raise AssertionError(f"{name}: {figure}")
        rows.append((name, figure))

    base = topology.base_url
    with urllib.request.urlopen(f"{base}/accounts/login/", timeout=10) as page:
        policy = page.headers.get("Content-Security-Policy", "")
        check("login page", page.status == 200, f"{page.status}, CSP: {policy[:40]}…")
    with urllib.request.urlopen(f"{base}/static/vendor/htmx-2.0.11.min.js", timeout=10) as js:
        check("static files (WhiteNoise)", js.status == 200, f"{len(js.read())} bytes of htmx")

    clinician = Client(base, topology.token("clinician"))
    scientist = Client(base, topology.token("scientist"))
    status, projects, _ = clinician.call("GET", "/api/projects/")
    check("API: the clinician's projects", status == 200 and len(projects) >= 2, f"{status}")
    project = next(p for p in projects if "eart" in p["name"])
    pid = project["id"]

    status, case, _ = clinician.call("GET", f"/api/projects/{pid}/queue/next")
    check("queue: next case", status == 200 and case.get("id"), f"{status}, case {case.get('id')}")
    value = project["classes"][-1]
    status, _, _ = clinician.call("POST", f"/api/cases/{case['id']}/labels", {"value": value})
    check("label stored", status == 201, f"{status}")

    def production():
        status, versions, _ = scientist.call("GET", f"/api/projects/{pid}/model-versions/")
        live = [v for v in versions or [] if v.get("in_production")] if status == 200 else []
        return live[0] if live else None

    started = time.monotonic()
    live = _wait("the first model version in production", production)
    check(
        "scheduler trained and deployed v1",
        bool(live),
        f"version {live['number']} after {time.monotonic() - started:.0f} s",
    )
    status, answer, _ = scientist.call(
        "POST", f"/api/projects/{pid}/predict", {"case_ids": [case["id"]]}
    )
    check(
        "predict names its version",
        status == 200 and answer["model_version"] == live["number"],
        f"{status}, version {answer.get('model_version') if isinstance(answer, dict) else '?'}",
    )
    status, run, _ = scientist.call("POST", f"/api/projects/{pid}/training-runs", {})
    check("retrain requested", status in (201, 202), f"{status}, run {run.get('id')}")

    def finished():
        status, body, _ = scientist.call("GET", f"/api/training-runs/{run['id']}/")
        return body if status == 200 and body["status"] in ("succeeded", "failed") else None

    done = _wait("the requested run", finished)
    check("the ML worker ran it", done["status"] == "succeeded", done["status"])
    status, _, _ = (
        scientist.call(
            "POST", f"/api/projects/{pid}/model-versions/{done['model_version']}/deploy", {}
        )
        if done.get("model_version")
        else (0, None, {})
    )
    check("deploy the new version", status == 201, f"{status}")
    answer = _wait(
        "predictions from the new version",
        lambda: (
            lambda r: (
                r[1] if r[0] == 200 and r[1]["model_version"] == done["model_version"] else None
            )
        )(scientist.call("POST", f"/api/projects/{pid}/predict", {"case_ids": [case["id"]]})),
        timeout=30,
    )
    check(
        "predict switched",
        answer["model_version"] == done["model_version"],
        f"version {answer['model_version']}",
    )
    memory = topology.rss_mb()
    dead = [name for name, process in topology.processes.items() if process.poll() is not None]
    check(
        "processes alive",
        not dead and len(memory) == len(topology.processes),
        ", ".join(f"{k} {v:.0f} MB" for k, v in memory.items())
        + (f"; exited: {dead}" if dead else ""),
    )
    return rows


def main(argv: list[str]) -> int:
    if argv[:1] != ["smoke"]:
        print(__doc__)
        return 2
    with Topology() as topology:
        try:
            rows = smoke(topology)
        except Exception as error:
            print(f"\nSMOKE TEST FAILED: {error}\n")
            for name in topology.processes:
                print(f"--- {name} log (tail) ---\n{topology.log(name, 1500)}")
            return 1
    width = max(len(name) for name, _ in rows)
    print("\nProduction topology smoke test: gunicorn x2, Celery ml + default workers, beat")
    for name, figure in rows:
        print(f"  ok  {name:<{width}}  {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
