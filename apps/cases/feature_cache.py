"""A copy of each project's feature matrix on this machine's disk, kept between the runs that
read it.

Labels change between retrains; cases do not. Reading a million feature vectors from the
database took a quarter of a retrain, every time, to fetch the same numbers again. The copy is
three NumPy files per project (case ids, dates, values; the values mapped into memory, not
read), checked against the database at every use with one statement:

- A case's features, date and project never change after import (a database trigger refuses
  it: cases migration 0003), and case ids are not reused. So the copy still holds every case
  it held if the project has as many cases up to the copy's highest id as the copy has, and
  the case with that id is the one the copy was made with (its creation time): a database
  restored to an earlier state, whose sequence hands out the same ids again, fails that test.
  Cases imported since are read from the database and appended; a deleted case (a lower
  count) makes the copy be read again in full.
- The key holds the database (engine, host, port, name) and the project's creation time, so a
  project id that names a project of another database, or a new project, never meets an old
  copy.

The copy is written only outside a transaction, so rows that could still be rolled back never
reach it. One process at a time writes a project's copy (a lock file; the others skip it),
into a folder of its own, synced to disk, then switched in by renaming a small pointer file,
so a reader sees one whole copy or none. Anything missing, short, unreadable or inconsistent
counts as no copy, and the database is read instead. Each web or worker machine keeps its own
copy (the folder is `CASEBOOK_FEATURE_CACHE_DIR`; an empty value turns this off).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection

from apps.cases.models import Case
from apps.projects.models import Project

logger = logging.getLogger(__name__)

FORMAT = 2
# A replaced copy may still be about to be opened by a reader that found the pointer just
# before the switch (one that has it open or mapped keeps it whatever happens); replaced copies
# and leftovers older than this are removed when the project's copy is next written.
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
    """Which database and which project: None when the project does not exist."""
    created = Project.objects.filter(pk=project_id).values_list("created_at", flat=True).first()
    if created is None:
        return None
    db = connection.settings_dict
    where = f"{connection.vendor}://{db.get('HOST') or ''}:{db.get('PORT') or ''}/{db['NAME']}"
    return f"{where}#{int(project_id)}@{created.isoformat()}"


def _state(project_id: int, upto: int) -> tuple[int, int | None, str | None]:
    """In one statement: the project's cases with id <= upto, its highest case id, and when
    the case with id `upto` was created (None if there is none)."""
    table = Case._meta.db_table
    sql = (
        f"SELECT COALESCE(SUM(CASE WHEN id <= %s THEN 1 ELSE 0 END), 0), MAX(id),"
        f" (SELECT created_at FROM {table} WHERE id = %s AND project_id = %s)"
        f" FROM {table} WHERE project_id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [int(upto), int(upto), int(project_id), int(project_id)])
        counted, highest, created = cursor.fetchone()
    return (
        int(counted),
        None if highest is None else int(highest),
        None if created is None else str(created),
    )


def _case_created(project_id: int, case_id: int) -> str | None:
    """When a case was created, read the way `_state` reads it (a scalar subquery: SQLite
    then gives the same text in both)."""
    table = Case._meta.db_table
    sql = f"SELECT (SELECT created_at FROM {table} WHERE id = %s AND project_id = %s)"
    with connection.cursor() as cursor:
        cursor.execute(sql, [int(case_id), int(project_id)])
        (created,) = cursor.fetchone()
    return None if created is None else str(created)


def _pointer_read(root: Path, project_id: int) -> dict[str, Any] | None:
    """The pointer, if it is whole and of this format."""
    try:
        pointer = json.loads(_pointer(root, project_id).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(pointer, dict) or pointer.get("format") != FORMAT:
        return None
    kinds = {
        "project": str,
        "feature_names": list,
        "n": int,
        "max_id": int,
        "max_created": (str, type(None)),
        "generation": str,
    }
    if not all(isinstance(pointer.get(k), kind) for k, kind in kinds.items()):
        return None
    return pointer


def _read_copy(root: Path, project_id: int, pointer: dict) -> Rows | None:
    folder = _folder(root, project_id) / pointer["generation"]
    try:
        ids = np.load(folder / "ids.npy")
        occurred = np.load(folder / "occurred.npy")
        # Mapped, not read: the pages come from the machine's file cache as they are used.
        values = np.asarray(np.load(folder / "values.npy", mmap_mode="r"))
    except Exception as error:  # any damage means: read the database
        logger.warning(
            "feature copy of project %s unreadable (%s: %s); reading the database",
            project_id,
            type(error).__name__,
            error,
        )
        return None
    n, width = pointer["n"], len(pointer["feature_names"])
    if (
        ids.shape != (n,)
        or occurred.shape != (n,)
        or values.shape != (n, width)
        or ids.dtype != np.int64
        or occurred.dtype != np.dtype("datetime64[us]")
        or values.dtype != np.float64
        or (n and int(ids[-1]) != pointer["max_id"])
    ):
        logger.warning("feature copy of project %s does not match its pointer", project_id)
        return None
    return ids, occurred, values


def _save_synced(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())


def _write_copy(
    root: Path, project_id: int, key: str, names: list[str], rows: Rows, max_created: str | None
) -> None:
    """Write a new copy and switch the pointer to it; skipped when another process is writing
    this project's copy. Never raises: a failed copy costs speed, never a run."""
    folder = _folder(root, project_id)
    target = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "write.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another process is writing it
            ids, occurred, values = rows
            generation = f"gen-{uuid.uuid4().hex}"
            target = folder / generation
            target.mkdir()
            _save_synced(target / "ids.npy", np.ascontiguousarray(ids, dtype=np.int64))
            _save_synced(
                target / "occurred.npy", np.ascontiguousarray(occurred, dtype="datetime64[us]")
            )
            _save_synced(target / "values.npy", np.ascontiguousarray(values, dtype=np.float64))
            pointer = {
                "format": FORMAT,
                "project": key,
                "feature_names": names,
                "n": len(ids),
                "max_id": int(ids[-1]) if len(ids) else 0,
                "max_created": max_created,
                "generation": generation,
            }
            partial = folder / f"pointer.{uuid.uuid4().hex}.partial"
            with partial.open("w") as handle:
                handle.write(json.dumps(pointer))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, _pointer(root, project_id))
            target = None  # in use now
            _remove_old(folder, keep=generation)
    except Exception as error:  # a full or read-only disk costs speed, never a run
        logger.warning("feature copy of project %s not written: %s", project_id, error)
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)


def _remove_old(folder: Path, keep: str) -> None:
    """Remove replaced copies and leftovers of failed writes older than the grace period."""
    cutoff = time.time() - _OLD_COPY_SECONDS
    for old in [*folder.glob("gen-*"), *folder.glob("pointer.*.partial")]:
        if old.name == keep:
            continue
        with contextlib.suppress(OSError):  # another process may be removing it too
            if old.stat().st_mtime < cutoff:
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)


def matrix_rows(*, project_id: int, names: list[str], read: RowReader) -> Rows:
    """The project's cases (ids ascending, dates, values) from the copy when it still holds,
    topped up with cases imported since; from `read` (the database) otherwise, and the copy
    renewed."""
    root = _root()
    if root is None:
        return read(None)
    copies_wait(project_id)  # a copy still being written is as good as written
    key = _project_key(project_id)
    pointer = _pointer_read(root, project_id)
    kept = None
    if (
        key is not None
        and pointer is not None
        and pointer["project"] == key
        and pointer["feature_names"] == names
    ):
        counted, highest, created = _state(project_id, pointer["max_id"])
        if counted == pointer["n"] and created == pointer["max_created"]:
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
    if key is not None and not connection.in_atomic_block and connection.get_autocommit():
        max_created = _case_created(project_id, int(rows[0][-1])) if len(rows[0]) else None
        # Written beside the caller's work: the run that read the database does not wait for
        # its copy.
        writer = threading.Thread(
            target=_write_copy,
            args=(root, project_id, key, names, rows, max_created),
            name=f"feature-copy-{project_id}",
        )
        with _writers_lock:  # started under the lock: a waiter never meets an unstarted one
            _writers[project_id] = writer
            writer.start()
    return rows


def copies_wait(project_id: int | None = None) -> None:
    """Wait until the copies being written (of one project, or all) are on disk."""
    with _writers_lock:
        writers = [w for pid, w in _writers.items() if project_id is None or pid == project_id]
    for writer in writers:
        writer.join()
    with _writers_lock:
        for pid, writer in list(_writers.items()):
            if not writer.is_alive():
                del _writers[pid]


def project_copy_remove(*, project_id: int) -> None:
    """Forget a project's copy on this machine (the project was deleted)."""
    root = _root()
    if root is None:
        return
    copies_wait(project_id)
    _pointer(root, project_id).unlink(missing_ok=True)
    shutil.rmtree(_folder(root, project_id), ignore_errors=True)
