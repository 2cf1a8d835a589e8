"""Reads of worklists: a reviewer's page, and how close each model version's order comes to
the reviewers' (NDCG@k, Kendall's tau, precision@k of "actionable")."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db.models import Count, Q, QuerySet

from apps.accounts.models import User
from apps.cases.models import Case
from apps.cases.selectors import case_features_dict
from apps.labeling.exports import FORMULA_STARTS
from apps.modeling.models import ModelVersion
from apps.modeling.services import version_predictions_load
from apps.projects.models import Feature, Project
from apps.worklists import metrics
from apps.worklists.models import CaseJudgment, Judgment, RerankSession, Worklist

# Versions scored against the reviewers' orders, newest first: each reads its predictions.
VERSIONS_SCORED = 20


def worklist_list(*, project: Project) -> QuerySet[Worklist]:
    return (
        Worklist.objects.filter(project=project)
        .select_related("model_version", "created_by")
        .annotate(
            reviewers=Count("sessions", distinct=True),
            finished=Count(
                "sessions", filter=Q(sessions__finished_at__isnull=False), distinct=True
            ),
        )
    )


def worklist_get(*, project: Project, worklist_id: int) -> Worklist | None:
    return (
        Worklist.objects.filter(project=project, pk=worklist_id)
        .select_related("model_version", "created_by", "project")
        .first()
    )


def session_get(*, worklist: Worklist, reviewer: User) -> RerankSession | None:
    return RerankSession.objects.filter(worklist=worklist, reviewer=reviewer).first()


def judgments_current(*, session: RerankSession) -> dict[int, CaseJudgment]:
    """The judgment in force per case: the newest row of each."""
    current: dict[int, CaseJudgment] = {}
    for judgment in CaseJudgment.objects.filter(session=session).order_by("id"):
        current[judgment.case_id] = judgment
    return current


@dataclass
class WorklistRow:
    case_id: int
    external_id: str
    occurred_at: datetime | None
    current_label: str
    model_rank: int
    risk: float
    position: int
    judgment: str = ""
    judgment_label: str = ""
    reason: str = ""
    features: dict[str, float | None] = field(default_factory=dict)


def worklist_rows(*, session: RerankSession) -> list[WorklistRow]:
    """The worklist's cases in the reviewer's order, with the model's rank and risk, the
    reviewer's judgment and the case's features."""
    worklist = session.worklist
    items = {i.case_id: i for i in worklist.items.all()}
    cases = Case.objects.in_bulk(list(items))
    features = list(Feature.objects.filter(project_id=worklist.project_id).order_by("position"))
    judged = judgments_current(session=session)
    labels = dict(Judgment.choices)
    rows = []
    # A case deleted since the list was made (its project's data removed) drops out.
    order = [c for c in session.order if c in cases and c in items]
    for position, case_id in enumerate(order, start=1):
        case, item = cases[case_id], items[case_id]
        judgment = judged.get(case_id)
        rows.append(
            WorklistRow(
                case_id=case_id,
                external_id=case.external_id,
                occurred_at=case.occurred_at,
                current_label=case.current_label,
                model_rank=item.model_rank,
                risk=item.risk,
                position=position,
                judgment=judgment.value if judgment else "",
                judgment_label=labels[judgment.value] if judgment else "",
                reason=judgment.reason if judgment else "",
                features=case_features_dict(case=case, features=features),
            )
        )
    return rows


def _sessions_measured(project: Project) -> list[RerankSession]:
    """Sessions a reviewer worked on: moved something, judged something, or said done (an
    untouched session is only the model's own order)."""
    return list(
        RerankSession.objects.filter(worklist__project=project)
        .filter(Q(moves__gt=0) | Q(finished_at__isnull=False) | Q(judgments__isnull=False))
        .distinct()
        .select_related("worklist__model_version", "reviewer")
        .order_by("worklist_id", "id")
    )


def _consensus(project: Project) -> dict[int, dict[int, bool]]:
    """Per worklist, per case: actionable by the majority of the reviewers' judgments in force
    (a tie is not actionable); "needs more information" counts for neither side."""
    newest: dict[tuple[int, int], str] = {}
    rows = (
        CaseJudgment.objects.filter(session__worklist__project=project)
        .order_by("id")
        .values_list("session_id", "session__worklist_id", "case_id", "value")
    )
    worklist_of: dict[int, int] = {}
    for session_id, worklist_id, case_id, value in rows:
        newest[(session_id, case_id)] = value
        worklist_of[session_id] = worklist_id
    votes: dict[int, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for (session_id, case_id), value in newest.items():
        if value != Judgment.NEEDS_INFORMATION:
            votes[worklist_of[session_id]][case_id].append(value == Judgment.ACTIONABLE)
    return {w: {c: sum(v) > len(v) / 2 for c, v in cases.items()} for w, cases in votes.items()}


def _judgments_by_session(project: Project) -> dict[int, dict[int, str]]:
    """Each session's judgments in force (the newest per case)."""
    found: dict[int, dict[int, str]] = defaultdict(dict)
    rows = (
        CaseJudgment.objects.filter(session__worklist__project=project)
        .order_by("id")
        .values_list("session_id", "case_id", "value")
    )
    for session_id, case_id, value in rows:
        found[session_id][case_id] = value
    return found


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


@dataclass
class VersionAgreement:
    number: int
    ndcg: float | None
    tau: float | None
    precision: float | None
    sessions: int
    judged: int
    created_worklists: int


@dataclass
class SessionAgreement:
    session: RerankSession
    ndcg: float | None
    tau: float | None
    judged: int
    actionable: int


@dataclass
class Agreement:
    k: int
    by_version: list[VersionAgreement]
    by_session: list[SessionAgreement]
    between_reviewers: list[dict]


def agreement(*, project: Project, k: int = 10) -> Agreement:
    """How close each model version's order comes to the reviewers' orders.

    Every version is scored on every worklist, not only the worklists made from it, by its
    own stored predictions of the worklist's cases: so a new version can be checked against
    the experts' orders of lists an older version made."""
    sessions = _sessions_measured(project)
    consensus = _consensus(project)
    worklists = {s.worklist_id: s.worklist for s in sessions}
    for worklist_id in consensus:
        worklists.setdefault(worklist_id, Worklist.objects.get(pk=worklist_id))
    cases_of = {w.pk: list(w.items.values_list("case_id", flat=True)) for w in worklists.values()}
    versions = list(
        ModelVersion.objects.filter(project=project)
        .exclude(predictions_path="")
        .order_by("-number")[:VERSIONS_SCORED]
    )
    made_from = defaultdict(int)
    for w in Worklist.objects.filter(project=project).values_list(
        "model_version__number", flat=True
    ):
        made_from[w] += 1
    classes = list(project.classes)
    needed = np.array(sorted({c for ids in cases_of.values() for c in ids}), dtype=np.int64)
    by_version = []
    for version in reversed(versions):
        try:
            case_ids, proba = version_predictions_load(version)
        except Exception:  # a missing or altered file: that version is left out, not the page
            continue
        where = np.searchsorted(case_ids, needed)
        found = (where < len(case_ids)) & (case_ids[np.minimum(where, len(case_ids) - 1)] == needed)
        row_of = dict(zip(needed[found].tolist(), where[found].tolist(), strict=True))

        def scores_for(worklist: Worklist, proba=proba, row_of=row_of) -> dict[int, float]:
            column = classes.index(worklist.risk_class)
            return {
                c: float(proba[row_of[c], column]) for c in cases_of[worklist.pk] if c in row_of
            }

        ndcgs, taus, precisions, judged = [], [], [], 0
        for session in sessions:
            scores = scores_for(session.worklist)
            ndcgs.append(metrics.ndcg_at_k(session.order, scores, k))
            taus.append(metrics.kendall_tau_scores(session.order, scores))
        for worklist_id, verdicts in consensus.items():
            precision, n = metrics.precision_at_k(scores_for(worklists[worklist_id]), verdicts, k)
            precisions.append(precision)
            judged += n
        by_version.append(
            VersionAgreement(
                number=version.number,
                ndcg=_mean(ndcgs),
                tau=_mean(taus),
                precision=_mean(precisions),
                sessions=len(sessions),
                judged=judged,
                created_worklists=made_from.get(version.number, 0),
            )
        )
    own = _judgments_by_session(project)
    by_session = []
    for session in sessions:
        risk = {i.case_id: i.risk for i in session.worklist.items.all()}
        mine = own.get(session.pk, {})
        by_session.append(
            SessionAgreement(
                session=session,
                ndcg=metrics.ndcg_at_k(session.order, risk, k),
                tau=metrics.kendall_tau_scores(session.order, risk),
                judged=sum(v != Judgment.NEEDS_INFORMATION for v in mine.values()),
                actionable=sum(v == Judgment.ACTIONABLE for v in mine.values()),
            )
        )
    between = []
    by_worklist: dict[int, list[RerankSession]] = defaultdict(list)
    for session in sessions:
        by_worklist[session.worklist_id].append(session)
    for worklist_id, group in by_worklist.items():
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                between.append(
                    {
                        "worklist": worklists[worklist_id],
                        "first": first.reviewer.username,
                        "second": second.reviewer.username,
                        "tau": metrics.kendall_tau_orders(first.order, second.order),
                    }
                )
    return Agreement(k=k, by_version=by_version, by_session=by_session, between_reviewers=between)


PAIR_COLUMNS = [
    "worklist_id",
    "model_version",
    "risk_class",
    "reviewer",
    "preferred_case_id",
    "preferred_external_id",
    "other_case_id",
    "other_external_id",
    "preferred_position",
    "other_position",
]


def preference_pairs(*, project: Project) -> Iterator[dict]:
    """Pairwise preferences for learning to rank: for each reviewer's order, every pair of its
    cases, the one placed higher first (n cases give n(n-1)/2 pairs)."""
    sessions = _sessions_measured(project)
    ids = {c for s in sessions for c in s.order}
    external = dict(Case.objects.filter(pk__in=ids).values_list("id", "external_id"))
    for session in sessions:
        order = session.order
        for i, preferred in enumerate(order):
            for j in range(i + 1, len(order)):
                other = order[j]
                yield {
                    "worklist_id": session.worklist_id,
                    "model_version": session.worklist.model_version.number,
                    "risk_class": session.worklist.risk_class,
                    "reviewer": session.reviewer.username,
                    "preferred_case_id": preferred,
                    "preferred_external_id": external.get(preferred, ""),
                    "other_case_id": other,
                    "other_external_id": external.get(other, ""),
                    "preferred_position": i + 1,
                    "other_position": j + 1,
                }


def _cell(value):
    # External ids and usernames come from outside: never a formula in a spreadsheet.
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def preference_pairs_csv(*, project: Project) -> Iterator[str]:
    """The pairs as CSV text, a line at a time (a streaming download)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PAIR_COLUMNS)
    writer.writeheader()
    for pair in preference_pairs(project=project):
        writer.writerow({k: _cell(v) for k, v in pair.items()})
        if buffer.tell() > 65536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@dataclass
class WorklistProgress:
    """Who worked on a worklist, and how far one user got on it."""

    worked: int = 0  # reviewers who moved, judged or said done (as `agreement` counts them)
    finished: int = 0
    judged: int | None = None  # the user's judged cases; None: they have not opened it
    moves: int = 0
    finished_at: datetime | None = None


def worklist_progress(*, project: Project, user: User) -> dict[int, WorklistProgress]:
    """Per worklist of the project: reviewers who worked on it, who said done, and `user`'s
    own progress. One query, whatever the number of worklists."""
    sessions = (
        RerankSession.objects.filter(worklist__project=project)
        .annotate(judged=Count("judgments__case", distinct=True))
        .values_list("worklist_id", "reviewer_id", "moves", "finished_at", "judged")
    )
    progress: dict[int, WorklistProgress] = defaultdict(WorklistProgress)
    for worklist_id, reviewer_id, moves, finished_at, judged in sessions:
        entry = progress[worklist_id]
        if moves or judged or finished_at:
            entry.worked += 1
        if finished_at:
            entry.finished += 1
        if reviewer_id == user.pk:
            entry.judged, entry.moves, entry.finished_at = judged, moves, finished_at
    return dict(progress)


def derived_project_list(*, project: Project, user: User) -> QuerySet[Project]:
    """Projects started from this project's judgments that `user` is a member of."""
    return Project.objects.filter(derived_from=project, memberships__user=user).order_by("id")


def worklist_case_features(*, worklist: Worklist, case_id: int) -> dict[str, float | None] | None:
    """A case's feature values by name, or None when the case is not on the worklist."""
    item = worklist.items.filter(case_id=case_id).select_related("case").first()
    if item is None:
        return None
    return case_features_dict(case=item.case)
