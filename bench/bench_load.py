"""Load on the production topology: simulated clinicians labeling while retrains run.

    .venv/bin/python -m bench.bench_load [--clinicians 20] [--seconds 120]

Starts the production topology of `scripts/prod_topology.py` (gunicorn with two processes,
Celery ML and default workers, beat, on this machine's PostgreSQL and Redis; database
`casebook_bench_load`, Redis 7), with the 20,000-patient heart-failure demo. Each simulated
clinician is a member with their own API token and loops: ask the queue for the next case,
label it (a class drawn at random), again, for a fixed time; the scheduler meanwhile retrains
as labels arrive (poll every 5 s, 20 new labels per run). Everything is on loopback and stops
by itself.

Printed: labels per second, p50/p95/p99 of next-case and submit as the clients saw them, errors
by status, how many retrains finished during the load, the web and worker processes' memory
(peak of samples every 2 s), and the count check: every label a client saw stored (201) is in
the database exactly once, and nothing else is.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from prod_topology import Client, Topology, say  # noqa: E402

MAKE_CLINICIANS = """
import json
from rest_framework.authtoken.models import Token
from apps.accounts.models import User
from apps.projects.models import Project, Role
from apps.projects.services import membership_set
project = Project.objects.filter(name__icontains="heart").order_by("id").first()
Project.objects.filter(pk=project.pk).update(auto_retrain={retrain})
tokens = {{}}
for i in range({n}):
    name = f"load-clinician-{{i:02d}}"
    user, _ = User.objects.get_or_create(username=name)
    user.set_password("load-clinician-password")
    user.save()
    membership_set(project=project, username=name, role=Role.CLINICIAN)
    tokens[name] = Token.objects.get_or_create(user=user)[0].key
print(json.dumps({{"project": project.pk, "classes": project.classes, "tokens": tokens}}))
"""

COUNT_LABELS = """
import json
from django.db.models import Count
from apps.labeling.models import Label
from apps.modeling.models import TrainingRun
rows = (Label.objects.filter(author__username__startswith="load-clinician-")
        .values("author__username").annotate(n=Count("id")))
dupes = (Label.objects.filter(author__username__startswith="load-clinician-")
         .values("case_id", "author_id").annotate(n=Count("id")).filter(n__gt=1).count())
runs = dict(TrainingRun.objects.values_list("status").annotate(n=Count("id")))
print(json.dumps({{"labels": {{r["author__username"]: r["n"] for r in rows}},
                  "repeated": dupes, "runs": runs}}))
"""


@dataclass
class ClientStats:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    stored: int = 0
    errors: Counter = field(default_factory=Counter)


def clinician_loop(
    client: Client, project: int, classes: list[str], stop: threading.Event, stats: ClientStats
) -> None:
    rng = random.Random(client.token)
    while not stop.is_set():
        started = time.perf_counter()
        status, case, _ = client.call("GET", f"/api/projects/{project}/queue/next")
        stats.next_ms.append((time.perf_counter() - started) * 1000)
        if status == 204:
            time.sleep(0.5)
            continue
        if status != 200:
            stats.errors[f"next {status}"] += 1
            time.sleep(0.2)
            continue
        started = time.perf_counter()
        status, _, _ = client.call(
            "POST", f"/api/cases/{case['id']}/labels", {"value": rng.choice(classes)}
        )
        stats.submit_ms.append((time.perf_counter() - started) * 1000)
        if status == 201:
            stats.stored += 1
        else:
            stats.errors[f"submit {status}"] += 1


def _manage_json(topology: Topology, code: str) -> dict:
    import json

    return json.loads(topology.manage("shell", "-c", code).strip().splitlines()[-1])


def run(clinicians: int, seconds: float, patients: int, retrain: bool = True) -> str:
    topology = Topology(database="casebook_bench_load", redis_db=7, port=8073, patients=patients)
    with topology:
        made = _manage_json(topology, MAKE_CLINICIANS.format(n=clinicians, retrain=retrain))
        project, classes = made["project"], made["classes"]
        clients = [Client(topology.base_url, token) for token in made["tokens"].values()]
        stats = [ClientStats() for _ in clients]
        stop = threading.Event()
        threads = [
            threading.Thread(target=clinician_loop, args=(c, project, classes, stop, s))
            for c, s in zip(clients, stats, strict=True)
        ]
        before = _manage_json(topology, COUNT_LABELS.format())["runs"]
        say(f"{clinicians} clinicians labeling for {seconds:.0f} s")
        peak: dict[str, float] = {}
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        while time.perf_counter() - started < seconds:
            for name, mb in topology.rss_mb().items():
                peak[name] = max(peak.get(name, 0.0), mb)
            time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        # Let a retrain started by the last labels finish, so that its memory is counted.
        counted = _manage_json(topology, COUNT_LABELS.format())
    next_ms = np.array([x for s in stats for x in s.next_ms])
    submit_ms = np.array([x for s in stats for x in s.submit_ms])
    stored = sum(s.stored for s in stats)
    in_db = sum(counted["labels"].values())
    errors = sum((s.errors for s in stats), Counter())
    finished = counted["runs"].get("succeeded", 0) - before.get("succeeded", 0)

    def pct(values: np.ndarray) -> str:
        if not len(values):
            return "-"
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return f"{p50:6.1f} {p95:7.1f} {p99:7.1f}"

    lines = [
        f"Load: {clinicians} clinicians (API clients, one thread each) labeling for "
        f"{elapsed:.0f} s on the production topology (gunicorn x{topology.web_processes}, "
        "Celery ml + default workers, beat; PostgreSQL, Redis; loopback)"
        + ("" if retrain else "; retraining off"),
        "",
        f"labels stored            {stored:,} ({stored / elapsed:.1f} labels/s)",
        f"next case  p50/p95/p99   {pct(next_ms)} ms   ({len(next_ms):,} requests)",
        f"submit     p50/p95/p99   {pct(submit_ms)} ms   ({len(submit_ms):,} requests)",
        f"errors                   {dict(errors) or 'none'}",
        f"retrains during the load {finished} succeeded ({counted['runs']})",
        "peak memory (RSS, MB)    " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()),
        f"count check              clients saw {stored:,} stored; the database holds {in_db:,} "
        f"labels by them; cases labeled twice by the same clinician: {counted['repeated']} -> "
        + ("OK" if in_db == stored and counted["repeated"] == 0 else "MISMATCH"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clinicians", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument(
        "--no-retrain", action="store_true", help="the project does not retrain during the load"
    )
    args = parser.parse_args(argv)
    print(run(args.clinicians, args.seconds, args.patients, retrain=not args.no_retrain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
