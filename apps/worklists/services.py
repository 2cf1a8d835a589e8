"""Writes of worklists: making one from the production model's scores, saving a reviewer's
order and judgments, and feeding judgments back as labels of a derived project."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.cases.models import Case
from apps.labeling.services import label_counts_begin, label_record, queue_refresh_request
from apps.modeling.selectors import deployment_current
from apps.modeling.services import version_predictions_load
from apps.projects.models import Feature, Membership, Project
from apps.worklists.models import (
    CaseJudgment,
    Judgment,
    RerankSession,
    Worklist,
    WorklistItem,
    WorklistSource,
)

logger = logging.getLogger(__name__)

SIZE_MIN, SIZE_MAX = 5, 200
# Judgments that are labels of a derived project; "needs more information" is not one.
TARGET_CLASSES = {
    Judgment.ACTIONABLE: "actionable",
    Judgment.NOT_ACTIONABLE: "not_actionable",
}


class StaleOrder(ValidationError):
    """The order was saved from a page older than the session (another tab saved since)."""


def _candidate_case_ids(project: Project, source: str, months: int | None) -> np.ndarray:
    cases = Case.objects.filter(project=project)
    if source in (WorklistSource.RECENT_UNLABELED, WorklistSource.UNLABELED):
        cases = cases.filter(current_label="")
    if source == WorklistSource.RECENT_UNLABELED:
        newest = cases.aggregate(m=Max("occurred_at"))["m"]
        if newest is None:
            raise ValidationError(
                {"source": "No unlabeled case has a date: choose all unlabeled cases instead."}
            )
        # Counted back from the newest case, as training windows are, so that a demo or an
        # archive of older data still has "recent" cases.
        cases = cases.filter(occurred_at__gte=newest - timedelta(days=30.44 * months))
    return np.fromiter(cases.values_list("id", flat=True).iterator(), dtype=np.int64)


def worklist_create(
    *,
    project: Project,
    name: str,
    risk_class: str,
    size: int,
    created_by: User,
    source: str = WorklistSource.RECENT_UNLABELED,
    months: int | None = 3,
) -> Worklist:
    """The production model's `size` highest-risk cases for `risk_class` among the source's
    cases, frozen in the model's order."""
    errors: dict[str, str] = {}
    name = name.strip()
    if not name:
        errors["name"] = "A worklist needs a name."
    if risk_class not in project.classes:
        errors["risk_class"] = (
            f"Unknown class {risk_class!r}; this project's classes are "
            f"{', '.join(project.classes)}."
        )
    if source not in WorklistSource.values:
        errors["source"] = f"Unknown source {source!r}; use {', '.join(WorklistSource.values)}."
    if not SIZE_MIN <= int(size) <= SIZE_MAX:
        errors["size"] = f"A worklist holds {SIZE_MIN} to {SIZE_MAX} cases; {size} asked."
    if source == WorklistSource.RECENT_UNLABELED and not (months and 1 <= int(months) <= 120):
        errors["months"] = "Give the number of recent months, 1 to 120."
    if errors:
        raise ValidationError(errors)
    deployment = deployment_current(project=project)
    if deployment is None:
        raise ValidationError("No model is in production yet: train and deploy one first.")
    version = deployment.model_version
    case_ids, proba = version_predictions_load(version)
    candidates = _candidate_case_ids(project, source, months)
    keep = np.isin(case_ids, candidates)
    if not keep.any():
        described = {
            WorklistSource.RECENT_UNLABELED: f"unlabeled cases in the last {months} months",
            WorklistSource.UNLABELED: "unlabeled cases",
            WorklistSource.ALL: "cases with predictions",
        }[source]
        raise ValidationError({"source": f"No case to rank: there are no {described}."})
    risk = proba[keep, list(project.classes).index(risk_class)]
    ids = case_ids[keep]
    # Highest risk first; equal risks in case order, so that the list is the same every time.
    top = np.lexsort((ids, -risk))[: int(size)]
    with transaction.atomic():
        worklist = Worklist.objects.create(
            project=project,
            name=name[:120],
            model_version=version,
            risk_class=risk_class,
            source=source,
            months=months if source == WorklistSource.RECENT_UNLABELED else None,
            size=len(top),
            created_by=created_by,
        )
        WorklistItem.objects.bulk_create(
            WorklistItem(worklist=worklist, case_id=int(ids[i]), model_rank=r, risk=float(risk[i]))
            for r, i in enumerate(top, start=1)
        )
    return worklist


def rerank_session_start(*, worklist: Worklist, reviewer: User) -> RerankSession:
    """The reviewer's session of a worklist: resumed if they have one, else begun in the
    model's order."""
    session = RerankSession.objects.filter(worklist=worklist, reviewer=reviewer).first()
    if session is not None:
        return session
    order = list(worklist.items.order_by("model_rank").values_list("case_id", flat=True))
    try:
        with transaction.atomic():
            return RerankSession.objects.create(worklist=worklist, reviewer=reviewer, order=order)
    except IntegrityError:  # the same reviewer's other tab began it at the same moment
        return RerankSession.objects.get(worklist=worklist, reviewer=reviewer)


def rerank_order_save(
    *, session: RerankSession, order: Sequence[int], revision: int | None = None
) -> RerankSession:
    """Replace the reviewer's order with `order` (every case of the worklist, once).

    `revision` is the session's revision the page showed: when the session was saved since
    (another tab, another device), nothing is saved and StaleOrder says so."""
    try:
        order = [int(c) for c in order]
    except (TypeError, ValueError):
        raise ValidationError({"order": "The order must be a list of case ids."}) from None
    with transaction.atomic():
        locked = RerankSession.objects.select_for_update().get(pk=session.pk)
        if revision is not None and int(revision) != locked.revision:
            raise StaleOrder(
                "This worklist was reordered in another window since this page was loaded; "
                "the order shown there is kept. Reload to continue from it."
            )
        expected = set(locked.worklist.items.values_list("case_id", flat=True))
        if len(order) != len(set(order)) or set(order) != expected:
            unknown = sorted(set(order) - expected)[:5]
            missing = sorted(expected - set(order))[:5]
            detail = []
            if unknown:
                detail.append(f"not on this worklist: {', '.join(map(str, unknown))}")
            if missing:
                detail.append(f"missing: {', '.join(map(str, missing))}")
            if len(order) != len(set(order)):
                detail.append("a case appears twice")
            raise ValidationError(
                {
                    "order": f"The order must hold every case of the worklist once "
                    f"({'; '.join(detail)})."
                }
            )
        if order != locked.order:
            locked.order = order
            locked.revision += 1
            locked.moves += 1
            locked.save(update_fields=["order", "revision", "moves", "updated_at"])
    return locked


def rerank_move(
    *, session: RerankSession, case_id: int, to_position: int, revision: int | None = None
) -> RerankSession:
    """Move one case to a 1-based position (1 = top) of the reviewer's order."""
    order = [c for c in session.order if c != int(case_id)]
    if len(order) == len(session.order):
        raise ValidationError({"case_id": f"Case {case_id} is not on this worklist."})
    position = min(max(int(to_position), 1), len(session.order))
    order.insert(position - 1, int(case_id))
    return rerank_order_save(session=session, order=order, revision=revision)


def rerank_session_finish(*, session: RerankSession) -> RerankSession:
    RerankSession.objects.filter(pk=session.pk, finished_at__isnull=True).update(
        finished_at=timezone.now()
    )
    session.refresh_from_db()
    return session


def judgment_record(
    *, session: RerankSession, case_id: int, value: str, reason: str = ""
) -> CaseJudgment:
    """Judge a case of the worklist (appended; the newest judgment is the one in force).

    The same judgment with the same reason again records nothing. A judgment that is a label
    of a derived project (actionable or not) is also recorded there, as a label by the
    reviewer, in the same transaction."""
    if value not in Judgment.values:
        raise ValidationError(
            {"value": f"Unknown judgment {value!r}; use {', '.join(Judgment.values)}."}
        )
    reason = reason.strip()[:500]
    worklist = session.worklist
    if not worklist.items.filter(case_id=case_id).exists():
        raise ValidationError({"case_id": f"Case {case_id} is not on this worklist."})
    with transaction.atomic():
        RerankSession.objects.select_for_update().get(pk=session.pk)
        newest = CaseJudgment.objects.filter(session=session, case_id=case_id).last()
        if newest is not None and newest.value == value and newest.reason == reason:
            return newest
        judgment = CaseJudgment.objects.create(
            session=session, case_id=case_id, value=value, reason=reason
        )
        for derived in Project.objects.filter(derived_from_id=worklist.project_id):
            _judgment_as_label(judgment, worklist, derived, session.reviewer)
    return judgment


def _judgment_as_label(
    judgment: CaseJudgment, worklist: Worklist, derived: Project, reviewer: User
) -> None:
    target = TARGET_CLASSES.get(judgment.value)
    if target is None or target not in derived.classes:
        return
    source_case = Case.objects.only("external_id").get(pk=judgment.case_id)
    case = Case.objects.filter(project=derived, external_id=source_case.external_id).first()
    if case is None:  # imported into the source after the derived project was made
        return
    case.project = derived
    note = f"Worklist “{worklist.name}” ({worklist.project.name}): {judgment.get_value_display()}"
    if judgment.reason:
        note += f" — {judgment.reason}"
    label_record(case=case, value=target, author=reviewer, note=note)


def derived_project_create(
    *, source: Project, created_by: User, target: str = "actionable", name: str = ""
) -> Project:
    """A new project with the source's cases and features, labeled by the reviewers'
    worklist judgments (actionable / not actionable), each judgment a label with its reason
    in the note. Later judgments on the source's worklists go on arriving there as labels.

    Its members are the source's; it has its own objective, configuration and models, so a
    data scientist trains on the target as on any project."""
    target = target.strip() or "actionable"
    if Project.objects.filter(derived_from=source, derived_target=target).exists():
        raise ValidationError({"target": f"{source.name} already has a project for {target!r}."})
    if not CaseJudgment.objects.filter(session__worklist__project=source).exists():
        raise ValidationError(
            {"target": "No worklist of this project has a judgment yet: judge some cases first."}
        )
    with transaction.atomic():
        derived = Project.objects.create(
            name=(name.strip() or f"{source.name} · {target}")[:200],
            description=f"Judgments of {source.name}'s worklists: is the case {target}?",
            classes=list(TARGET_CLASSES.values()),
            created_by=created_by,
            derived_from=source,
            derived_target=target,
        )
        Feature.objects.bulk_create(
            Feature(
                project=derived,
                name=f.name,
                position=f.position,
                unit=f.unit,
                group=f.group,
                description=f.description,
            )
            for f in Feature.objects.filter(project=source)
        )
        Membership.objects.bulk_create(
            Membership(project=derived, user_id=m.user_id, role=m.role)
            for m in Membership.objects.filter(project=source)
        )
        if not Membership.objects.filter(project=derived, user=created_by).exists():
            Membership.objects.create(project=derived, user=created_by, role="admin")
        copied = _cases_copy(source, derived)
        label_counts_begin(project=derived, unlabeled=copied)
        judgments = (
            CaseJudgment.objects.filter(session__worklist__project=source)
            .select_related("session__worklist__project", "session__reviewer")
            .order_by("id")
        )
        for judgment in judgments:
            _judgment_as_label(
                judgment, judgment.session.worklist, derived, judgment.session.reviewer
            )
        audit_record(
            action=AuditAction.DERIVED_PROJECT,
            actor=created_by,
            summary=f"Made project {derived.pk} ({target}) from the worklist judgments",
            project_id=source.pk,
            object_type="project",
            object_id=derived.pk,
        )
    queue_refresh_request(project_id=derived.pk)
    return derived


def preference_pairs_export(*, project: Project, exported_by: User):
    """The pairwise preferences as CSV text chunks, with the export in the audit log."""
    from apps.worklists.selectors import preference_pairs_csv

    audit_record(
        action=AuditAction.EXPORT,
        actor=exported_by,
        summary="Exported the pairwise preferences of the worklists",
        project_id=project.pk,
        object_type="preference pairs",
    )
    return preference_pairs_csv(project=project)


def _cases_copy(source: Project, derived: Project) -> int:
    """Copy every case (external id, date, features) in one statement, in case order."""
    from django.db import connection

    table = Case._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (project_id, external_id, occurred_at, features,"
            f" current_label, queue_rank, queue_wanted, queue_open, created_at)"
            f" SELECT %s, external_id, occurred_at, features, '', %s, 1, 1, %s"
            f" FROM {table} WHERE project_id = %s ORDER BY id",
            [derived.pk, Case._meta.get_field("queue_rank").default, now, source.pk],
        )
        return cursor.rowcount
