"""Reads of the review board: likely label errors and misclassified cases, filtered, ranked
and paged by keyset (so that page 1,000 of a million cases costs what page 1 does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMonth

from apps.labeling.models import Label, LabelKind
from apps.projects.models import Project
from apps.review.models import Comment, LabelIssue, LabelIssueComputation, Mention, SavedView

KINDS = {
    "issues": "Likely label errors",
    "misclassified": "Misclassified (model disagrees)",
    "all": "All labeled cases",
}


@dataclass
class BoardFilters:
    kind: str = "issues"
    given: str = ""
    suggested: str = ""
    max_quality: float | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    annotator: str = ""
    month: str = ""  # YYYY-MM
    after: tuple[float, int] | None = None  # keyset: (label_quality, id) of the last row shown
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, query) -> BoardFilters:
        """From a query string (the board's form, the API); bad values are named, not fatal."""
        found = cls()
        found.kind = query.get("kind") or "issues"
        if found.kind not in KINDS:
            found.errors.append(f"Unknown kind {found.kind!r}; use {', '.join(KINDS)}.")
            found.kind = "issues"
        found.given = query.get("given", "")
        found.suggested = query.get("suggested", "")
        found.annotator = query.get("annotator", "")
        found.month = query.get("month", "")
        if found.month:
            try:
                datetime.strptime(found.month, "%Y-%m")
            except ValueError:
                found.errors.append(f"Month {found.month!r} is not YYYY-MM.")
                found.month = ""
        for name in ("max_quality", "min_confidence", "max_confidence"):
            raw = query.get(name, "")
            if raw == "":
                continue
            try:
                value = float(raw)
            except ValueError:
                found.errors.append(f"{name.replace('_', ' ')} {raw!r} is not a number.")
                continue
            if not 0 <= value <= 1:
                found.errors.append(f"{name.replace('_', ' ')} must be between 0 and 1.")
                continue
            setattr(found, name, value)
        after = query.get("after", "")
        if after:
            try:
                quality, _, last_id = after.partition(",")
                found.after = (float(quality), int(last_id))
            except ValueError:
                found.errors.append("The page position is not valid; showing the first page.")
        return found

    def query_string(self, **changes) -> str:
        from urllib.parse import urlencode

        values = {
            "kind": self.kind,
            "given": self.given,
            "suggested": self.suggested,
            "max_quality": "" if self.max_quality is None else self.max_quality,
            "min_confidence": "" if self.min_confidence is None else self.min_confidence,
            "max_confidence": "" if self.max_confidence is None else self.max_confidence,
            "annotator": self.annotator,
            "month": self.month,
            **changes,
        }
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _filtered(project: Project, f: BoardFilters) -> QuerySet[LabelIssue]:
    rows = LabelIssue.objects.filter(project=project)
    if f.kind == "issues":
        rows = rows.filter(is_label_issue=True)
    elif f.kind == "misclassified":
        rows = rows.filter(misclassified=True)
    if f.given:
        rows = rows.filter(given_label=f.given)
    if f.suggested:
        rows = rows.filter(suggested_label=f.suggested)
    if f.max_quality is not None:
        rows = rows.filter(label_quality__lte=f.max_quality)
    if f.min_confidence is not None:
        rows = rows.filter(suggested_probability__gte=f.min_confidence)
    if f.max_confidence is not None:
        rows = rows.filter(suggested_probability__lte=f.max_confidence)
    if f.annotator:
        rows = rows.filter(labeled_by__username=f.annotator)
    if f.month:
        year, month = (int(p) for p in f.month.split("-"))
        rows = rows.filter(occurred_at__year=year, occurred_at__month=month)
    return rows


def label_issue_page(
    *, project: Project, filters: BoardFilters, limit: int = 50
) -> tuple[list[LabelIssue], tuple[float, int] | None]:
    """One page, most likely wrong first; and the keyset of the next page (None at the end)."""
    rows = _filtered(project, filters).select_related("case", "labeled_by")
    if filters.after is not None:
        quality, last_id = filters.after
        rows = rows.filter(Q(label_quality__gt=quality) | Q(label_quality=quality, id__gt=last_id))
    page = list(rows.order_by("label_quality", "id")[: limit + 1])
    following = (page[limit - 1].label_quality, page[limit - 1].pk) if len(page) > limit else None
    return page[:limit], following


def label_issue_count(*, project: Project, filters: BoardFilters) -> int:
    return _filtered(project, filters).count()


def label_issue_computation_latest(*, project: Project) -> LabelIssueComputation | None:
    return (
        LabelIssueComputation.objects.filter(project=project)
        .select_related("model_version")
        .first()
    )


def error_rates_by_month(*, project: Project) -> list[dict]:
    """Where the model fails: per month of the cases, how many are misclassified out of sample
    and how many labels look wrong."""
    rows = (
        LabelIssue.objects.filter(project=project, occurred_at__isnull=False)
        .annotate(period=TruncMonth("occurred_at"))
        .values("period")
        .annotate(
            cases=Count("id"),
            misclassified=Count("id", filter=Q(misclassified=True)),
            issues=Count("id", filter=Q(is_label_issue=True)),
        )
        .order_by("period")
    )
    return [
        {**r, "error_rate": r["misclassified"] / r["cases"] if r["cases"] else 0.0} for r in rows
    ]


def error_rates_by_annotator(*, project: Project) -> list[dict]:
    """Per clinician: labels given, and the share the board flags as likely wrong."""
    rows = (
        LabelIssue.objects.filter(project=project)
        .values("labeled_by__username")
        .annotate(
            labels=Count("id"),
            issues=Count("id", filter=Q(is_label_issue=True)),
        )
        .order_by("labeled_by__username")
    )
    agreement = annotator_agreement(project=project)
    return [
        {
            "username": r["labeled_by__username"] or "(imported)",
            "labels": r["labels"],
            "issues": r["issues"],
            "share": r["issues"] / r["labels"] if r["labels"] else 0.0,
            "adjudicated": agreement.get(r["labeled_by__username"], {}).get("adjudicated", 0),
            "agreed": agreement.get(r["labeled_by__username"], {}).get("agreed", 0),
        }
        for r in rows
    ] + [
        {
            "username": username,
            "labels": 0,
            "issues": 0,
            "share": 0.0,
            "adjudicated": row["adjudicated"],
            "agreed": row["agreed"],
        }
        for username, row in agreement.items()
        if username not in {r["labeled_by__username"] for r in rows}
    ]


def saved_views(*, project: Project) -> QuerySet[SavedView]:
    return SavedView.objects.filter(project=project).select_related("created_by")


def discussion_hidden(*, case, user, project: Project) -> bool:
    """Whether a case's discussion is hidden from this user now: while they label it
    independently (overlap), or relabel it blind."""
    from apps.labeling.models import Lease, LeaseState, TaskKind
    from apps.labeling.selectors import case_blind_for

    if case_blind_for(case=case, user=user):
        return True
    return (
        project.relabel_blind
        and Lease.objects.filter(
            case=case, user=user, state=LeaseState.ACTIVE, task__kind=TaskKind.RELABEL
        ).exists()
    )


def comment_thread(*, case_id: int) -> QuerySet[Comment]:
    return Comment.objects.filter(case_id=case_id).select_related("author").order_by("id")


def mentions_for(*, user, unseen_only: bool = False, limit: int = 100) -> list[Mention]:
    """The user's mentions, newest first, in projects they still belong to."""
    mentions = Mention.objects.filter(
        user=user, comment__project__memberships__user=user
    ).select_related("comment__author", "comment__case", "comment__project")
    if unseen_only:
        mentions = mentions.filter(seen_at__isnull=True)
    return list(mentions.order_by("-id")[:limit])


def mentions_unseen_count(*, user) -> int:
    return Mention.objects.filter(
        user=user, seen_at__isnull=True, comment__project__memberships__user=user
    ).count()


def annotator_agreement(*, project: Project) -> dict[str, dict]:
    """Per clinician, on the cases a reviewer adjudicated: how often the clinician's own last
    label before the adjudication was the adjudicated value."""
    adjudicated = Label.objects.filter(project=project, kind=LabelKind.ADJUDICATED).values_list(
        "id", "case_id", "value", "author_id"
    )
    decisions = {}
    for label_id, case_id, value, author_id in adjudicated.order_by("id"):
        decisions[case_id] = (label_id, value, author_id)
    if not decisions:
        return {}
    earlier = (
        Label.objects.filter(case_id__in=list(decisions))
        .exclude(kind__in=[LabelKind.ADJUDICATED, LabelKind.UNDONE])
        .values_list("id", "case_id", "value", "author__username", "author_id")
        .order_by("id")
    )
    last_by_author: dict[tuple[int, str], str] = {}
    for label_id, case_id, value, username, author_id in earlier:
        decision_id, _, adjudicator = decisions[case_id]
        if label_id < decision_id and author_id != adjudicator:
            last_by_author[(case_id, username)] = value
    result: dict[str, dict] = {}
    for (case_id, username), value in last_by_author.items():
        row = result.setdefault(username, {"adjudicated": 0, "agreed": 0})
        row["adjudicated"] += 1
        row["agreed"] += value == decisions[case_id][1]
    for row in result.values():
        row["share"] = row["agreed"] / row["adjudicated"]
    return result


def error_rates_by_feature_band(
    *, project: Project, feature: str, bands: int = 5
) -> list[dict] | None:
    """Where the model fails, by bands of one feature (quantiles of the labeled cases' values,
    missing values a band of their own). None for a feature the project does not have."""
    import numpy as np

    from apps.cases.selectors import case_feature_matrix

    matrix = case_feature_matrix(project_id=project.pk)
    if feature not in matrix.feature_names:
        return None
    verdicts = np.array(
        LabelIssue.objects.filter(project=project)
        .order_by("case_id")
        .values_list("case_id", "misclassified", "is_label_issue"),
        dtype=np.int64,
    ).reshape(-1, 3)
    if not len(verdicts):
        return []
    where = np.searchsorted(matrix.case_ids, verdicts[:, 0])
    values = matrix.values[where, matrix.feature_names.index(feature)]
    present = ~np.isnan(values)
    edges = (
        np.unique(np.quantile(values[present], np.linspace(0, 1, bands + 1)))
        if present.any()
        else np.array([])
    )
    if len(edges) == 1:  # a constant feature: one band holding every present value
        edges = np.array([edges[0], edges[0]])
    rows = []
    for i in range(max(0, len(edges) - 1)):
        last = i == len(edges) - 2
        inside = (
            present
            & (values >= edges[i])
            & ((values <= edges[i + 1]) if last else (values < edges[i + 1]))
        )
        rows.append((f"{edges[i]:.4g} – {edges[i + 1]:.4g}", inside))
    if (~present).any():
        rows.append(("missing", ~present))
    return [
        {
            "band": name,
            "cases": int(inside.sum()),
            "misclassified": int(verdicts[inside, 1].sum()),
            "issues": int(verdicts[inside, 2].sum()),
            "error_rate": float(verdicts[inside, 1].mean()) if inside.any() else 0.0,
        }
        for name, inside in rows
    ]
