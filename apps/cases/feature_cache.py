"""A copy of each project's feature matrix on this machine's disk, kept between the runs that
read it.

Labels change between retrains; cases do not. Reading a million feature vectors from the
database took a quarter of a retrain, every time, to fetch the same numbers again. The copy is
three NumPy files per project (case ids, dates, values; the values mapped into memory, not
read), checked against the database at every use with one query:

- A case's features, date and project never change after import (a database trigger refuses
  it: cases migration 0003), and case ids are never reused (PostgreSQL sequences; SQLite
  AUTOINCREMENT). So the copy still holds every case it held if the project has as many cases
  up to the copy's highest id as the copy has; cases imported since are read from the database
  and appended, and a deleted case (a lower count) makes the copy be read again in full.
- The project's creation time is part of the key, so a project id that names a new project
  (a test database rebuilt, a restored backup) never meets an old copy.

The copy is written only outside a transaction, so rows that could still be rolled back never
reach it. Writers put each copy in a folder of its own and switch a small pointer file with an
atomic rename, so a reader sees one whole copy or none; anything missing, short or unreadable
counts as no copy, and the database is read instead. Each web or worker machine keeps its own
copy (the folder is `CASEBOOK_FEATURE_CACHE_DIR`; an empty value turns this off).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from apps.cases.models import Case
from apps.projects.models import Project

logger = logging.getLogger(__name__)

FORMAT = 1
# A copy replaced this long ago may still be open in a reader that found its pointer just
# before the switch; it is removed at the next write after that.
_OLD_COPY_SECONDS = 300

# The thread writing each project's copy, if one was started (see matrix_rows).
_writers: dict[int, threading.Thread] = {}
_writers_lock = threading.Lock()

Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # case ids, occurred_at, values
RowReader = Callable[[int | None], Rows]  # rows with id above the argument (None: all)


def _root() -> Path | None:
    folder = getattr(settings, "CASEBOOK_FEATURE_CACHE_DIR", "")
    return Path(folder) if folder else None


def _pointer(root: Path, project_id: int) -> Path:
    return root / f"project-{int(project_id)}.json"


def _folder(root: Path, project_id: int) -> Path:
    return root / f"project-{int(project_id)}"


def _project_key(project_id: int) -> str | None:
    created = Project.objects.filter(pk=project_id).values_list("created_at", flat=True).first()
    return None if created is None else created.isoformat()


def _counts(project_id: int, upto: int) -> tuple[int, int | None]:
    """(cases with id <= upto, highest case id) of the project, in one statement."""
    sql = (
        f"SELECT COALESCE(SUM(CASE WHEN id <= %s THEN 1 ELSE 0 END), 0), MAX(id)"
        f" FROM {Case._meta.db_table} WHERE project_id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [int(upto), int(project_id)])
        counted, highest = cursor.fetchone()
    return int(counted), (None if highest is None else int(highest))


def _read_copy(root: Path, project_id: int, pointer: dict) -> Rows | None:
    folder = _folder(root, project_id) / pointer["generation"]
    try:
        ids = np.load(folder / "ids.npy")
        occurred = np.load(folder / "occurred.npy")
        # Mapped, not read: the pages come from the machine's file cache as they are used.
        values = np.asarray(np.load(folder / "values.npy", mmap_mode="r"))
    except (OSError, ValueError) as error:
        logger.warning(
            "feature copy of project %s unreadable (%s); reading the database", project_id, error
        )
        return None
    n, width = pointer["n"], len(pointer["feature_names"])
    if (
        ids.shape != (n,)
        or occurred.shape != (n,)
        or values.shape != (n, width)
        or ids.dtype != np.int64
        or values.dtype != np.float64
        or (n and int(ids[-1]) != pointer["max_id"])
    ):
        logger.warning("feature copy of project %s does not match its pointer", project_id)
        return None
    return ids, occurred, values


def _write_copy(root: Path, project_id: int, key: str, names: list[str], rows: Rows) -> None:
    ids, occurred, values = rows
    folder = _folder(root, project_id)
    generation = f"gen-{uuid.uuid4().hex}"
    target = folder / generation
    try:
        target.mkdir(parents=True)
        np.save(target / "ids.npy", np.ascontiguousarray(ids, dtype=np.int64))
        np.save(target / "occurred.npy", np.ascontiguousarray(occurred))
        np.save(target / "values.npy", np.ascontiguousarray(values, dtype=np.float64))
        pointer = {
            "format": FORMAT,
            "project": key,
            "feature_names": names,
            "n": len(ids),
            "max_id": int(ids[-1]) if len(ids) else 0,
            "generation": generation,
        }
        partial = _pointer(root, project_id).with_suffix(f".{uuid.uuid4().hex}.partial")
        partial.write_text(json.dumps(pointer))
        os.replace(partial, _pointer(root, project_id))
    except Exception as error:  # a full or read-only disk costs speed, never a run
        logger.warning("feature copy of project %s not written: %s", project_id, error)
        shutil.rmtree(target, ignore_errors=True)
        return
    cutoff = time.time() - _OLD_COPY_SECONDS
    for old in folder.glob("gen-*"):
        if old.name != generation and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)


def matrix_rows(*, project_id: int, names: list[str], read: RowReader) -> Rows:
    """The project's cases (ids ascending, dates, values) from the copy when it still holds,
    topped up with cases imported since; from `read` (the database) otherwise, and the copy
    renewed."""
    root = _root()
    if root is None:
        return read(None)
    copies_wait(project_id)  # a copy still being written is as good as written
    key = _project_key(project_id)
    pointer_path = _pointer(root, project_id)
    pointer = None
    with contextlib.suppress(OSError, ValueError):  # no copy yet, or a damaged pointer
        pointer = json.loads(pointer_path.read_text())
    kept = None
    if (
        key is not None
        and isinstance(pointer, dict)
        and pointer.get("format") == FORMAT
        and pointer.get("project") == key
        and pointer.get("feature_names") == names
    ):
        counted, highest = _counts(project_id, pointer["max_id"])
        if counted == pointer["n"]:
            kept = _read_copy(root, project_id, pointer)
            if kept is not None and (highest is None or highest <= pointer["max_id"]):
                return kept
    if kept is not None:
        new_ids, new_occurred, new_values = read(pointer["max_id"])
        rows = (
            np.concatenate([kept[0], new_ids]),
            np.concatenate([kept[1], new_occurred]),
            np.concatenate([kept[2], new_values.reshape(-1, len(names))]),
        )
    else:
        rows = read(None)
    if key is not None and not connection.in_atomic_block:
        # Written beside the caller's work (a quarter of a million cases a second): the run that
        # read the database does not wait for its copy.
        writer = threading.Thread(
            target=_write_copy,
            args=(root, project_id, key, names, rows),
            name=f"feature-copy-{project_id}",
        )
        with _writers_lock:
            _writers[project_id] = writer
        writer.start()
    return rows


def copies_wait(project_id: int | None = None) -> None:
    """Wait until the copies being written (of one project, or all) are on disk."""
    with _writers_lock:
        writers = [w for pid, w in _writers.items() if project_id is None or pid == project_id]
    for writer in writers:
        writer.join()


def project_copy_remove(*, project_id: int) -> None:
    """Forget a project's copy (the project was deleted)."""
    root = _root()
    if root is None:
        return
    copies_wait(project_id)
    _pointer(root, project_id).unlink(missing_ok=True)
    shutil.rmtree(_folder(root, project_id), ignore_errors=True)
