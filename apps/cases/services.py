"""Writes to cases: the all-or-nothing import of a case file."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.cases import bulk
from apps.cases.importing import (
    CaseChunk,
    CaseFileReader,
    ImportIssue,
    ImportRejected,
    detect_format,
    feature_columns_from_header,
    read_columns,
)
from apps.cases.models import Case, ImportBatch
from apps.projects.models import Project
from apps.projects.selectors import project_features
from apps.projects.services import FeatureSpec, project_features_define

logger = logging.getLogger(__name__)

# Called for each stored chunk that carries labels: (batch, case ids, label values).
LabelSink = Callable[[ImportBatch, np.ndarray, list[str]], int]
# Given the external ids of a chunk, how many labels the queue wants for each case.
QueueWanted = Callable[[list[str]], np.ndarray]


@dataclass
class ImportResult:
    batch: ImportBatch
    imported: int
    labels: int
    ignored_columns: list[str] = field(default_factory=list)


def case_import(
    *,
    project: Project,
    path: Path,
    filename: str,
    imported_by: User,
    label_sink: LabelSink | None = None,
    queue_wanted: QueueWanted | None = None,
) -> ImportResult:
    """Import a CSV or Parquet file of cases into `project`, all or nothing.

    Rows are read, checked and stored chunk by chunk inside one transaction, so memory stays
    bounded; the first problem stops the storing, the rest of the file is still checked so the
    report names every offending row, and the transaction is rolled back.
    """
    size = path.stat().st_size
    if size > settings.CASEBOOK_MAX_IMPORT_BYTES:
        limit_mb = settings.CASEBOOK_MAX_IMPORT_BYTES // (1024 * 1024)
        raise ImportRejected(
            [ImportIssue(f"The file is {size / 1048576:.0f} MB; the limit is {limit_mb} MB.")]
        )
    file_format = detect_format(path, filename)
    columns = read_columns(path, file_format)
    with transaction.atomic():
        # Two imports into one project must not both pass the duplicate-id check; an advisory
        # lock serialises them without locking the project row, which every label updates.
        bulk.import_lock(project.pk)
        project = Project.objects.get(pk=project.pk)
        features = [f.name for f in project_features(project=project)]
        if not features:
            features = feature_columns_from_header(columns)
            if not features:
                raise ImportRejected([ImportIssue("The file has no feature columns.")])
            try:
                project_features_define(
                    project=project, features=[FeatureSpec(name=n) for n in features]
                )
            except ValidationError as error:
                raise ImportRejected([ImportIssue(m) for m in error.messages]) from None
        known = set(Case.objects.filter(project=project).values_list("external_id", flat=True))
        reader = CaseFileReader(
            path=path,
            file_format=file_format,
            features=features,
            classes=list(project.classes),
            known_external_ids=known,
            columns=columns,
        )
        reader.check_columns()
        batch = ImportBatch.objects.create(
            project=project,
            filename=filename[:255],
            file_format=file_format,
            imported_by=imported_by,
        )
        imported = labels = 0
        for chunk in reader.chunks_read_ahead():
            case_ids = _store_chunk(project, batch, chunk, queue_wanted)
            imported += len(chunk)
            if chunk.labels is not None and label_sink is not None:
                labels += label_sink(batch, case_ids, chunk.labels)
        if reader.log:
            # Raising inside the atomic block rolls back every chunk already stored.
            raise reader.log.reject()
        batch.case_count = imported
        batch.label_count = labels
        batch.save(update_fields=["case_count", "label_count"])
    ignored = [
        c for c in columns if c not in features and c not in ("external_id", "occurred_at", "label")
    ]
    logger.info(
        "import %s: %d cases, %d labels into project %s", batch.pk, imported, labels, project.pk
    )
    return ImportResult(batch=batch, imported=imported, labels=labels, ignored_columns=ignored)


def _queue_columns(
    chunk: CaseChunk, labels: list[str], queue_wanted: QueueWanted | None
) -> tuple[np.ndarray, np.ndarray]:
    """How many labels the queue wants for each case, and how many it still takes: none for
    a case that arrives labeled."""
    n = len(chunk)
    wanted = np.ones(n, dtype=np.int16)
    if queue_wanted is not None:
        wanted = np.asarray(queue_wanted(chunk.external_ids), dtype=np.int16)
    labeled = np.fromiter((bool(v) for v in labels), dtype=bool, count=n)
    wanted[labeled] = 1
    return wanted, np.where(labeled, 0, wanted).astype(np.int16)


def _store_chunk(
    project: Project, batch: ImportBatch, chunk: CaseChunk, queue_wanted: QueueWanted | None
) -> np.ndarray:
    labels = chunk.labels or [""] * len(chunk)
    wanted, open_slots = _queue_columns(chunk, labels, queue_wanted)
    if bulk.is_postgresql():
        return _copy_chunk(project, batch, chunk, labels, wanted, open_slots)
    now = timezone.now()
    occurred = chunk.occurred_at.astype("datetime64[us]").astype(object)
    rows = [
        Case(
            project=project,
            external_id=external_id,
            occurred_at=None if when is None else when.replace(tzinfo=UTC),
            features=chunk.features[i].tobytes(),
            import_batch=batch,
            current_label=labels[i],
            queue_wanted=int(wanted[i]),
            queue_open=int(open_slots[i]),
            created_at=now,
        )
        for i, (external_id, when) in enumerate(zip(chunk.external_ids, occurred, strict=True))
    ]
    created = Case.objects.bulk_create(rows, batch_size=500)
    return np.array([case.pk for case in created], dtype=np.int64)


def _copy_chunk(
    project: Project,
    batch: ImportBatch,
    chunk: CaseChunk,
    labels: list[str],
    wanted: np.ndarray,
    open_slots: np.ndarray,
) -> np.ndarray:
    n = len(chunk)
    # Ids are taken up front only when labels must refer to the cases; otherwise the table's
    # own default numbers them, which saves a round of the sequence.
    with_ids = any(labels)
    ids = bulk.reserve_ids(Case._meta.db_table, n) if with_ids else np.empty(0, dtype=np.int64)
    columns = [
        "project_id",
        "import_batch_id",
        "created_at",
        "queue_wanted",
        "queue_open",
        "features",
        "occurred_at",
        "external_id",
        "current_label",
    ]
    fields = [
        bulk.binary_int8(project.pk, n),
        bulk.binary_int8(batch.pk, n),
        bulk.binary_timestamptz(timezone.now(), n),
        bulk.binary_int2(wanted, n),
        bulk.binary_int2(open_slots, n),
        bulk.binary_bytea_rows(np.ascontiguousarray(chunk.features, dtype="<f8")),
        bulk.binary_timestamptz(chunk.occurred_at, n),
        bulk.binary_text(chunk.external_ids),
        bulk.binary_text(labels),
    ]
    if with_ids:
        columns.insert(0, "id")
        fields.insert(0, bulk.binary_int8(ids, n))
    # COPY's binary format, fixed-width columns first: no per-row Python, no text to parse.
    bulk.copy_binary(Case._meta.db_table, columns, fields)
    return ids


def upload_spool(*, chunks, destination) -> int:
    """Write an upload's chunks to `destination` (an open binary file), stopping as soon as it
    passes the import limit: a file ten times too big is refused after the limit's worth of
    bytes, not after all of them. Returns the bytes written."""
    limit = settings.CASEBOOK_MAX_IMPORT_BYTES
    written = 0
    for block in chunks:
        written += len(block)
        if written > limit:
            raise ImportRejected(
                [
                    ImportIssue(
                        f"The file is larger than the limit of {_size_text(limit)}; "
                        "split it and import the parts one after another."
                    )
                ]
            )
        destination.write(block)
    destination.flush()
    return written


def _size_text(size: int) -> str:
    return f"{size / 1048576:.0f} MB" if size >= 1048576 else f"{size / 1024:.0f} KB"
