"""Writes of the review app: finding likely label errors after a run, and sending cases back
to clinicians from the board."""

from __future__ import annotations

import logging
import re
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from apps.accounts.models import User
from apps.cases import bulk
from apps.cases.models import Case
from apps.cases.selectors import case_feature_matrix
from apps.core import tasks as task_queue
from apps.labeling.models import LabelTask, TaskKind, TaskStatus
from apps.labeling.selectors import label_rows_authorship
from apps.labeling.services import task_open
from apps.modeling.ml.training import out_of_fold
from apps.modeling.models import Deployment, ModelVersion
from apps.modeling.selectors import deployment_current
from apps.modeling.services import training_data
from apps.projects.models import Membership, Project
from apps.review import feature_keys
from apps.review.filters import BoardFilters
from apps.review.models import Comment, LabelIssue, LabelIssueComputation, Mention, SavedView
from apps.review.ranking import label_verdicts
from apps.review.selectors import board_features

logger = logging.getLogger(__name__)

FOLDS = 5
MAX_TASKS_AT_ONCE = 500
# The verdicts of this many of a project's newest versions are kept, besides the production
# version's: a reviewer compares a new version with production, and a million rows a version
# is what each costs.
VERSIONS_KEPT = 2


def _versions_kept(project: Project) -> set[int]:
    """The ids of the versions whose verdicts the project keeps: production's and the newest."""
    kept = set(
        ModelVersion.objects.filter(project=project)
        .order_by("-number")
        .values_list("pk", flat=True)[:VERSIONS_KEPT]
    )
    production = deployment_current(project=project)
    if production is not None:
        kept.add(production.model_version_id)
    return kept


def label_issues_find(*, version_id: int) -> LabelIssueComputation | None:
    """Cross-validate the version's model family on the version's own label snapshot, rank
    every labeled case with confident learning, and store the verdicts as that version's.
    The verdicts of versions no longer kept (see VERSIONS_KEPT) are removed.

    Idempotent; skips a version whose verdicts exist, or that is neither in production nor
    among the newest."""
    version = ModelVersion.objects.select_related("training_run", "project").get(pk=version_id)
    project = version.project
    if LabelIssueComputation.objects.filter(model_version=version).exists():
        return None
    if version.pk not in _versions_kept(project):
        logger.info("version %s: neither in production nor among the newest", version.pk)
        return None
    started = time.monotonic()
    run = version.training_run
    frame = pd.read_parquet(Path(run.snapshot_path))
    matrix = case_feature_matrix(project_id=project.pk)
    data = training_data(
        snapshot_case_ids=frame["case_id"].to_numpy(np.int64),
        snapshot_values=frame["label"].to_numpy(object),
        matrix=matrix,
        params=run.params,
    )
    label_ids = frame.set_index("case_id").loc[data.case_ids, "label_id"].to_numpy(np.int64)
    classes = list(project.classes)
    _, counts = np.unique(data.y, return_counts=True)
    folds = int(min(FOLDS, counts.min())) if len(counts) > 1 else 0
    if folds < 2:
        # Recorded, so that the scheduler does not ask again and the board can say why.
        logger.info("project %s: too few labels of a class to find label issues", project.pk)
        with transaction.atomic():
            Project.objects.select_for_update().get(pk=project.pk)
            if LabelIssueComputation.objects.filter(model_version=version).exists():
                return None
            return LabelIssueComputation.objects.create(
                project=project,
                model_version=version,
                cases=len(data.y),
                issues=0,
                misclassified=0,
                folds=0,
                model_family=version.model_family,
                seconds=time.monotonic() - started,
            )
    proba, _ = out_of_fold(
        data.X, data.y, classes, run.params, run.seed, version.model_family, folds
    )
    verdicts = label_verdicts(data.y, proba, classes)
    # Who gave each label and when: one read of the project's label rows, matched in numpy. A
    # label that came from a file is the file's (its import), not its importer's.
    known = label_rows_authorship(project_id=project.pk, watermark=run.label_watermark or 0)
    where = np.searchsorted(known.ids, label_ids)
    batches = known.import_batches[where]
    authors = np.where(batches > 0, 0, known.authors[where])
    labeled_at = known.times[where]
    given = np.asarray(classes, dtype=object)[verdicts.given]
    suggested = np.asarray(classes, dtype=object)[verdicts.suggested]
    rows = np.arange(len(label_ids))
    columns = {
        "case_id": data.case_ids,
        "label_id": label_ids,
        "given_label": given,
        "suggested_label": suggested,
        "suggested_probability": proba[rows, verdicts.suggested],
        "given_probability": proba[rows, verdicts.given],
        "label_quality": verdicts.quality,
        "is_label_issue": verdicts.is_issue,
        "misclassified": verdicts.suggested != verdicts.given,
        "labeled_by_id": authors,  # 0: imported
        "import_batch_id": batches,  # 0: given by a person
        "labeled_at": labeled_at,
        "occurred_at": data.occurred_at,
        # Each case's row in the feature matrix: every feature, not just the configuration's,
        # is stored with the verdict, for the board's feature ranges.
        "feature_row": np.searchsorted(matrix.case_ids, data.case_ids),
    }
    with transaction.atomic():
        # One writer per project at a time, and each version's verdicts once.
        Project.objects.select_for_update().get(pk=project.pk)
        if LabelIssueComputation.objects.filter(model_version=version).exists():
            return None
        kept = _versions_kept(project) | {version.pk}
        dropped = list(
            LabelIssueComputation.objects.filter(project=project)
            .exclude(model_version_id__in=kept)
            .values_list("model_version_id", flat=True)
        )
        if dropped:
            # By version, which the rank index starts with.
            LabelIssue.objects.filter(model_version_id__in=dropped).delete()
            LabelIssueComputation.objects.filter(model_version_id__in=dropped).delete()
        _label_issues_write(project.pk, version.pk, columns, matrix.values)
        computation = LabelIssueComputation.objects.create(
            project=project,
            model_version=version,
            cases=len(label_ids),
            issues=int(verdicts.is_issue.sum()),
            misclassified=int(np.sum(verdicts.suggested != verdicts.given)),
            folds=folds,
            model_family=version.model_family,
            seconds=time.monotonic() - started,
            summary=_board_summary(columns, classes, verdicts),
        )
    LabelIssueComputation.objects.filter(pk=computation.pk).update(
        seconds=time.monotonic() - started  # with the commit
    )
    logger.info(
        "project %s: %s likely label errors among %s labeled cases (v%s)",
        project.pk,
        computation.issues,
        computation.cases,
        version.number,
    )
    return computation


def _board_summary(columns: dict[str, np.ndarray], classes: list[str], verdicts) -> dict:
    """The counts the board shows, from the verdicts in memory (see LabelIssueComputation)."""
    k = len(classes)
    flagged = verdicts.is_issue.astype(np.int64)
    code = (verdicts.given * k + verdicts.suggested) * 2 + flagged
    slices = np.bincount(code, minlength=2 * k * k)
    months: list[list] = []
    occurred = columns["occurred_at"].astype("datetime64[M]")
    dated = ~np.isnat(occurred)
    if dated.any():
        periods, where = np.unique(occurred[dated], return_inverse=True)
        cases = np.bincount(where, minlength=len(periods))
        wrong = np.bincount(where, weights=columns["misclassified"][dated], minlength=len(periods))
        issues = np.bincount(where, weights=flagged[dated], minlength=len(periods))
        months = [
            [str(period), int(n), int(m), int(i)]
            for period, n, m, i in zip(periods, cases, wrong, issues, strict=True)
        ]

    def per(keys: np.ndarray, rows: np.ndarray) -> list[list[int]]:
        """[key, labels, flagged] for each key among the rows chosen."""
        values, where = np.unique(keys[rows], return_inverse=True)
        labels = np.bincount(where, minlength=len(values))
        issues = np.bincount(where, weights=flagged[rows], minlength=len(values))
        return [[int(v), int(n), int(i)] for v, n, i in zip(values, labels, issues, strict=True)]

    # A label from a file counts for its import, never for the person who imported it.
    imported = columns["import_batch_id"] > 0
    annotators = per(columns["labeled_by_id"], ~imported)
    from_files = per(columns["import_batch_id"], imported)
    return {
        "slices": [
            [classes[c // 2 // k], classes[c // 2 % k], bool(c % 2), int(n)]
            for c, n in enumerate(slices)
            if n
        ],
        "months": months,
        "annotators": annotators,
        "imported": from_files,
    }


# Verdicts per binary COPY: the rows of a whole million, with their feature keys, would be
# held in memory twice over (the fields, then the joined rows).
COPY_ROWS = 100_000


def _label_issues_write(
    project_id: int, version_id: int, columns: dict[str, np.ndarray], features: np.ndarray
) -> None:
    """A million verdicts in binary COPYs on PostgreSQL; bulk inserts elsewhere. `features`
    is the project's feature matrix, which columns["feature_row"] indexes."""
    n = len(columns["case_id"])
    if bulk.is_postgresql():
        for start in range(0, n, COPY_ROWS):
            part = {name: values[start : start + COPY_ROWS] for name, values in columns.items()}
            m = len(part["case_id"])
            fields = {
                "project_id": bulk.binary_int8(project_id, m),
                "model_version_id": bulk.binary_int8(version_id, m),
                "case_id": bulk.binary_int8(part["case_id"], m),
                "label_id": bulk.binary_int8(part["label_id"], m),
                "given_label": bulk.binary_text(list(part["given_label"])),
                "suggested_label": bulk.binary_text(list(part["suggested_label"])),
                "suggested_probability": bulk.binary_float8(part["suggested_probability"], m),
                "given_probability": bulk.binary_float8(part["given_probability"], m),
                "label_quality": bulk.binary_float8(part["label_quality"], m),
                "is_label_issue": bulk.binary_bool(part["is_label_issue"], m),
                "misclassified": bulk.binary_bool(part["misclassified"], m),
                "labeled_by_id": bulk.binary_int8_or_null(
                    part["labeled_by_id"], part["labeled_by_id"] == 0
                ),
                "import_batch_id": bulk.binary_int8_or_null(
                    part["import_batch_id"], part["import_batch_id"] == 0
                ),
                "labeled_at": bulk.binary_timestamptz(part["labeled_at"], m),
                "occurred_at": bulk.binary_timestamptz(part["occurred_at"], m),
                "feature_keys": bulk.binary_bytea_rows(
                    feature_keys.encode_rows(features[part["feature_row"]])
                ),
            }
            bulk.copy_binary(LabelIssue._meta.db_table, list(fields), list(fields.values()))
        return
    keys = feature_keys.encode_rows(features[columns["feature_row"]])
    occurred = pd.to_datetime(columns["occurred_at"]).tz_localize("UTC")
    labeled = pd.to_datetime(columns["labeled_at"]).tz_localize("UTC")
    LabelIssue.objects.bulk_create(
        (
            LabelIssue(
                project_id=project_id,
                model_version_id=version_id,
                case_id=int(columns["case_id"][i]),
                label_id=int(columns["label_id"][i]),
                given_label=columns["given_label"][i],
                suggested_label=columns["suggested_label"][i],
                suggested_probability=float(columns["suggested_probability"][i]),
                given_probability=float(columns["given_probability"][i]),
                label_quality=float(columns["label_quality"][i]),
                is_label_issue=bool(columns["is_label_issue"][i]),
                misclassified=bool(columns["misclassified"][i]),
                labeled_by_id=int(columns["labeled_by_id"][i]) or None,
                import_batch_id=int(columns["import_batch_id"][i]) or None,
                labeled_at=labeled[i].to_pydatetime(),
                occurred_at=None if pd.isna(occurred[i]) else occurred[i].to_pydatetime(),
                feature_keys=keys[i].tobytes(),
            )
            for i in range(n)
        ),
        batch_size=2000,
    )


# A version's label issues not found this long after it was stored were lost (a worker died,
# the broker was down): send them again, for a day.
LABEL_ISSUES_RESEND_AFTER = timedelta(minutes=15)


def label_issues_mend(*, now=None) -> list[int]:
    """Send again the label-issue task of each project's newest version that has none, and
    send it for a production version that has none (one deployed again after its verdicts
    were removed, or deployed before they were found): the board shows production's."""
    now = now or timezone.now()
    sent = []
    done = LabelIssueComputation.objects.filter(model_version=OuterRef("pk"))
    newest = ModelVersion.objects.filter(project=OuterRef("project")).order_by("-number")
    candidates = ModelVersion.objects.filter(
        pk=Subquery(newest.values("pk")[:1]),
        created_at__lt=now - LABEL_ISSUES_RESEND_AFTER,
        created_at__gt=now - timedelta(days=1),
    ).exclude(Exists(done))
    production = Deployment.objects.filter(project=OuterRef("project")).order_by("-id")
    deployed = (
        Deployment.objects.filter(
            pk=Subquery(production.values("pk")[:1]),
            created_at__lt=now - LABEL_ISSUES_RESEND_AFTER,
            created_at__gt=now - timedelta(days=1),
        )
        .exclude(
            Exists(LabelIssueComputation.objects.filter(model_version=OuterRef("model_version")))
        )
        .values_list("model_version_id", flat=True)
    )
    due = list(dict.fromkeys([*candidates.values_list("pk", flat=True), *deployed]))
    for version_id in due:
        if task_queue.task_send("review.find_label_issues", version_id):
            sent.append(version_id)
    return sent


def relabel_tasks_open(
    *,
    project: Project,
    case_ids: list[int],
    created_by: User,
    reason: str,
    assignee: User | None = None,
) -> tuple[int, int]:
    """Send cases back for relabeling from the board. Returns (opened, already open): a case
    that already has an open relabel task is not asked twice."""
    if not case_ids:
        raise ValidationError("Select at least one case.")
    if len(case_ids) > MAX_TASKS_AT_ONCE:
        raise ValidationError(f"At most {MAX_TASKS_AT_ONCE} cases at once, not {len(case_ids)}.")
    if not reason.strip():
        raise ValidationError({"reason": "Say why: the clinician sees it with the case."})
    cases = list(Case.objects.filter(project=project, pk__in=case_ids))
    if len(cases) != len(set(case_ids)):
        raise ValidationError("Some selected cases are not in this project.")
    # A case already sent back, or whose relabel is being adjudicated, is not asked again.
    pending = set(
        LabelTask.objects.filter(
            case__in=cases, kind__in=[TaskKind.RELABEL, TaskKind.ADJUDICATE], status=TaskStatus.OPEN
        ).values_list("case_id", flat=True)
    )
    opened = 0
    with transaction.atomic():
        for case in cases:
            if case.pk in pending:
                continue
            task_open(
                case=case,
                kind=TaskKind.RELABEL,
                created_by=created_by,
                reason=f"From the review board: {reason.strip()}",
                assignee=assignee,
            )
            opened += 1
    return opened, len(pending)


MENTION = re.compile(r"(?<![\w.])@([\w.+-]*[\w+])")
MAX_COMMENT = 5000


def comment_add(*, case: Case, author: User, body: str) -> Comment:
    """Add a comment to a case's discussion. Every @name must be a member of the project: a
    mention that would reach nobody is refused rather than silently dropped."""
    body = body.strip()
    if not body:
        raise ValidationError({"body": "Write something first."})
    if len(body) > MAX_COMMENT:
        raise ValidationError({"body": f"At most {MAX_COMMENT} characters, not {len(body)}."})
    names = list(dict.fromkeys(MENTION.findall(body)))
    members = {
        m.user.username: m.user
        for m in Membership.objects.filter(
            project_id=case.project_id, user__username__in=names
        ).select_related("user")
    }
    unknown = [n for n in names if n not in members]
    if unknown:
        raise ValidationError(
            {"body": f"Not members of this project: {', '.join('@' + n for n in unknown)}."}
        )
    with transaction.atomic():
        comment = Comment.objects.create(
            project_id=case.project_id, case=case, author=author, body=body
        )
        Mention.objects.bulk_create(
            Mention(comment=comment, user=user) for user in members.values() if user.pk != author.pk
        )
    return comment


def mentions_mark_seen(*, user: User, mention_ids: list[int]) -> int:
    return Mention.objects.filter(user=user, pk__in=mention_ids, seen_at__isnull=True).update(
        seen_at=timezone.now()
    )


def saved_view_save(*, project: Project, name: str, query: str, created_by: User) -> SavedView:
    """Name the board's current filters so the team can open the same slice."""
    from urllib.parse import parse_qsl

    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the view a name."})
    if len(name) > 80:
        raise ValidationError({"name": "At most 80 characters."})
    pairs = [(k, v) for k, v in parse_qsl(query.lstrip("?")) if k != "after"]
    filters = BoardFilters.from_query(dict(pairs), features=board_features(project=project))
    if filters.errors:
        raise ValidationError({"query": filters.errors})
    kept = filters.query_string()
    limit = SavedView._meta.get_field("query").max_length
    if len(kept) > limit:
        too_long = f"These filters are too long to save ({len(kept)} characters, at most {limit})."
        raise ValidationError({"query": too_long})
    try:
        with transaction.atomic():
            return SavedView.objects.create(
                project=project, name=name, query=kept, created_by=created_by
            )
    except IntegrityError:
        raise ValidationError({"name": f"A view named {name!r} exists already."}) from None
