"""Writes to the label history: the only code that appends labels or moves a current label."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.accounts.models import User
from apps.cases import bulk
from apps.cases.models import Case, ImportBatch
from apps.cases.services import ImportResult, case_import
from apps.labeling.models import CaseScore, Label, LabelKind, Skip
from apps.projects.models import Project

logger = logging.getLogger(__name__)


def _labels_changed(project_id: int, count: int) -> None:
    # The retrain scheduler (modeling) compares this version with its last run's; labeling
    # never calls modeling code.
    Project.objects.filter(pk=project_id).update(
        labels_version=F("labels_version") + count, last_labeled_at=timezone.now()
    )


class StaleLabel(ValidationError):
    """The case was labeled by someone else after the form was shown."""


def label_record(
    *,
    case: Case,
    value: str,
    author: User,
    kind: str = LabelKind.LABELED,
    note: str = "",
    seen_label_id: int | None = None,
) -> Label:
    """Append a label to a case's history and make it the case's current label.

    `seen_label_id` is the newest label row the person saw (0 for none): when the case has been
    labeled since, nothing is recorded and StaleLabel says by whom. The same label sent twice in
    a row by the same person (a double click, a retried request) is recorded once.
    """
    value = value.strip()
    classes = list(case.project.classes)
    if value not in classes:
        raise ValidationError(
            {"value": f"Unknown label {value!r}; this project's classes are {', '.join(classes)}."}
        )
    if kind not in (LabelKind.LABELED, LabelKind.RELABELED, LabelKind.ADJUDICATED):
        raise ValidationError({"kind": f"Labels of kind {kind!r} are not recorded by hand."})
    with transaction.atomic():
        # Lock the case so that concurrent labels cannot leave current_label pointing at a row
        # that is not the newest.
        locked = Case.objects.select_for_update().get(pk=case.pk)
        newest = Label.objects.filter(case=locked).select_related("author").order_by("-id").first()
        if seen_label_id is not None and (newest.pk if newest else 0) != seen_label_id:
            who = newest.author.username if newest else "someone"
            shown = newest.value if newest and newest.value else "no label"
            raise StaleLabel(
                f"Case {locked.external_id} was changed by {who} while you looked at it: it is "
                f"now {shown}. Your label was not saved; label it again to replace theirs."
            )
        if (
            newest is not None
            and newest.author_id == author.pk
            and newest.value == value
            and newest.kind in (LabelKind.LABELED, LabelKind.RELABELED, LabelKind.ADJUDICATED)
        ):
            return newest
        if kind == LabelKind.LABELED and locked.current_label:
            kind = LabelKind.RELABELED
        label = Label.objects.create(
            project_id=locked.project_id,
            case=locked,
            value=value,
            kind=kind,
            author=author,
            note=note[:500],
        )
        locked.current_label = value
        locked.save(update_fields=["current_label"])
        _labels_changed(locked.project_id, 1)
    case.current_label = value
    return label


def label_undo_last(*, project: Project, author: User) -> Label:
    """Undo `author`'s newest label in `project` by appending an `undone` row.

    The case goes back to the value it had before; nothing is deleted.
    """
    with transaction.atomic():
        undone = Label.objects.filter(project=project, author=author, kind=LabelKind.UNDONE)
        last = (
            Label.objects.filter(
                project=project,
                author=author,
                kind__in=[LabelKind.LABELED, LabelKind.RELABELED],
            )
            .exclude(pk__in=undone.values("undoes_id"))
            .order_by("-id")
            .first()
        )
        if last is None:
            raise ValidationError("You have no label to undo in this project.")
        case = Case.objects.select_for_update().get(pk=last.case_id)
        newest = Label.objects.filter(case=case).order_by("-id").first()
        if newest is None or newest.pk != last.pk:
            raise ValidationError(
                f"Case {case.external_id} was labeled again after your label; "
                "relabel it instead of undoing."
            )
        previous = Label.objects.filter(case=case, id__lt=last.pk).order_by("-id").first()
        restored = previous.value if previous else ""
        undo = Label.objects.create(
            project=project,
            case=case,
            value=restored,
            kind=LabelKind.UNDONE,
            author=author,
            undoes=last,
        )
        case.current_label = restored
        case.save(update_fields=["current_label"])
        _labels_changed(project.pk, 1)
    return undo


def case_skip(*, case: Case, user: User) -> Skip:
    """The clinician passes on this case; it is not offered to them again."""
    return Skip.objects.create(case=case, user=user)


def _imported_labels_sink(author: User):
    def store(batch: ImportBatch, case_ids: np.ndarray, values: list[str]) -> int:
        keep = [i for i, value in enumerate(values) if value]
        if not keep:
            return 0
        if bulk.is_postgresql():
            now = timezone.now().isoformat()
            fixed = f"\t{LabelKind.IMPORTED.value}\t{author.pk}\t\t\\N\t{batch.pk}\t{now}\n"
            lines = [
                f"{batch.project_id}\t{case_ids[i]}\t{bulk.copy_text(values[i])}{fixed}"
                for i in keep
            ]
            bulk.copy_lines(
                Label._meta.db_table,
                [
                    "project_id",
                    "case_id",
                    "value",
                    "kind",
                    "author_id",
                    "note",
                    "undoes_id",
                    "import_batch_id",
                    "created_at",
                ],
                lines,
            )
        else:
            Label.objects.bulk_create(
                (
                    Label(
                        project_id=batch.project_id,
                        case_id=int(case_ids[i]),
                        value=values[i],
                        kind=LabelKind.IMPORTED,
                        author=author,
                        import_batch=batch,
                    )
                    for i in keep
                ),
                batch_size=1000,
            )
        return len(keep)

    return store


def cases_import(*, project: Project, path: Path, filename: str, imported_by: User) -> ImportResult:
    """Import a case file; its `label` column becomes imported labels, in one transaction."""
    with transaction.atomic():
        result = case_import(
            project=project,
            path=path,
            filename=filename,
            imported_by=imported_by,
            label_sink=_imported_labels_sink(imported_by),
        )
        if result.labels:
            _labels_changed(project.pk, result.labels)
    return result


def case_scores_replace(
    *,
    project_id: int,
    model_version_number: int,
    case_ids: np.ndarray,
    predicted_labels: list[str],
    confidences: np.ndarray,
) -> int:
    """Replace the project's case scores with a new model version's predictions."""
    with transaction.atomic():
        CaseScore.objects.filter(project_id=project_id).delete()
        CaseScore.objects.bulk_create(
            (
                CaseScore(
                    case_id=int(case_id),
                    project_id=project_id,
                    model_version_number=model_version_number,
                    predicted_label=label,
                    confidence=float(confidence),
                )
                for case_id, label, confidence in zip(
                    case_ids, predicted_labels, confidences, strict=True
                )
            ),
            batch_size=2000,
        )
    return len(case_ids)
