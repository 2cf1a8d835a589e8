"""Reads of the review board: likely label errors and misclassified cases, filtered, ranked
and paged by keyset (so that page 1,000 of a million cases costs what page 1 does)."""

from __future__ import annotations

from datetime import date

from django.db.models import BinaryField, Count, Q, QuerySet
from django.db.models.functions import Substr, TruncMonth

from apps.accounts.models import User
from apps.labeling.models import Label, LabelKind
from apps.projects.models import Feature, Project
from apps.review import feature_keys
from apps.review.filters import BoardFilters
from apps.review.models import Comment, LabelIssue, LabelIssueComputation, Mention, SavedView


def board_features(*, project: Project) -> dict[str, int]:
    """The project's feature names and their positions, for BoardFilters.from_query."""
    return dict(
        Feature.objects.filter(project=project).order_by("position").values_list("name", "position")
    )


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
    for i, r in enumerate(f.features):
        # The bytes of one feature compared with the bounds' bytes (see feature_keys): an open
        # bound is ±inf, so a missing value (above +inf) never matches.
        value = Substr(
            "feature_keys",
            feature_keys.WIDTH * r.position + 1,
            feature_keys.WIDTH,
            output_field=BinaryField(),
        )
        low = feature_keys.LOWEST if r.min is None else feature_keys.encode_value(r.min)
        high = feature_keys.HIGHEST if r.max is None else feature_keys.encode_value(r.max)
        rows = rows.alias(**{f"feature_{i}": value}).filter(**{f"feature_{i}__range": (low, high)})
    return rows


# With feature ranges, a page is looked for in windows of the rank index: this many rows at
# first, then four times as many each time (see label_issue_page).
RANGE_WINDOW = 2_000
# A count the stored totals cannot answer stops here: past it the board says "more than".
COUNT_CAP = 10_000


def _after(rows: QuerySet[LabelIssue], key: tuple[float, int]) -> QuerySet[LabelIssue]:
    quality, last_id = key
    # The plain `>=` is what the index scan starts from: PostgreSQL does not make the OR a
    # starting point, and without it the page after 500,000 rows walked them all (172 ms).
    return rows.filter(
        Q(label_quality__gt=quality) | Q(label_quality=quality, id__gt=last_id),
        label_quality__gte=quality,
    )


def _up_to(rows: QuerySet[LabelIssue], key: tuple[float, int]) -> QuerySet[LabelIssue]:
    quality, last_id = key
    return rows.filter(
        Q(label_quality__lt=quality) | Q(label_quality=quality, id__lte=last_id),
        label_quality__lte=quality,
    )


def label_issue_page(
    *, project: Project, filters: BoardFilters, limit: int = 50
) -> tuple[list[LabelIssue], tuple[float, int] | None]:
    """One page, most likely wrong first; and the keyset of the next page (None at the end).

    Each row carries `range_values`: its values of the filtered features (None if missing)."""
    rows = (
        _filtered(project, filters)
        .select_related("case", "labeled_by")
        .order_by("label_quality", "id")
    )
    if not filters.features:
        page = list((_after(rows, filters.after) if filters.after else rows)[: limit + 1])
    else:
        # PostgreSQL has no statistics on a feature's bytes and guesses that a range keeps
        # almost nothing, so it reads every row the other filters keep and sorts them (0.3 s
        # at a million) instead of walking the rank index until the page is full. Bounding
        # each query to a window of the index (found by an index-only walk) leaves it nothing
        # else to do; the windows grow so that a rare range still takes few queries.
        page = []
        start, window = filters.after, RANGE_WINDOW
        ranked = LabelIssue.objects.filter(project=project).order_by("label_quality", "id")
        while len(page) <= limit:
            ends = list(
                (_after(ranked, start) if start else ranked).values_list("label_quality", "id")[
                    window - 1 : window
                ]
            )
            scope = _after(rows, start) if start else rows
            if ends:
                scope = _up_to(scope, ends[0])
            page += scope[: limit + 1 - len(page)]
            if not ends:
                break
            start, window = ends[0], window * 4
    following = (page[limit - 1].label_quality, page[limit - 1].pk) if len(page) > limit else None
    for row in page:
        row.range_values = [
            feature_keys.decode(row.feature_keys, r.position) for r in filters.features
        ]
    return page[:limit], following


def label_issue_count_stored(
    *, filters: BoardFilters, computation: LabelIssueComputation | None
) -> int | None:
    """The number of cases the filters keep, from the counts stored with the verdicts; None
    when the filters go beyond kind, given and suggested class (or none were stored)."""
    if computation is None:
        return 0
    if "slices" not in computation.summary or (
        filters.features
        or filters.annotator
        or filters.month
        or filters.max_quality is not None
        or filters.min_confidence is not None
        or filters.max_confidence is not None
    ):
        return None
    return sum(
        cases
        for given, suggested, flagged, cases in computation.summary["slices"]
        if (filters.kind != "issues" or flagged)
        and (filters.kind != "misclassified" or given != suggested)
        and filters.given in ("", given)
        and filters.suggested in ("", suggested)
    )


def label_issue_total(
    *, project: Project, filters: BoardFilters, computation: LabelIssueComputation | None
) -> tuple[int, bool]:
    """How many cases the filters keep, and whether that is exact. The stored counts answer
    for kind and classes; any other filter is counted in the database, but only up to
    COUNT_CAP: an exact count of a million rows costs a quarter of a second at every page."""
    stored = label_issue_count_stored(filters=filters, computation=computation)
    if stored is not None:
        return stored, True
    counted = _filtered(project, filters)[: COUNT_CAP + 1].count()
    return min(counted, COUNT_CAP), counted <= COUNT_CAP


def label_issue_computation_latest(*, project: Project) -> LabelIssueComputation | None:
    return (
        LabelIssueComputation.objects.filter(project=project)
        .select_related("model_version")
        .first()
    )


def error_rates_by_month(
    *, project: Project, computation: LabelIssueComputation | None = None
) -> list[dict]:
    """Where the model fails: per month of the cases, how many are misclassified out of sample
    and how many labels look wrong. From the counts stored with the verdicts when there are."""
    if computation is not None and "months" in computation.summary:
        rows = [
            {
                "period": date.fromisoformat(period + "-01"),
                "cases": cases,
                "misclassified": wrong,
                "issues": flagged,
            }
            for period, cases, wrong, flagged in computation.summary["months"]
        ]
    else:
        rows = list(
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


def error_rates_by_annotator(
    *, project: Project, computation: LabelIssueComputation | None = None
) -> list[dict]:
    """Per clinician: labels given, and the share the board flags as likely wrong (from the
    counts stored with the verdicts when there are); and their agreement with adjudications."""
    if computation is not None and "annotators" in computation.summary:
        counted = computation.summary["annotators"]
        names = dict(
            User.objects.filter(pk__in=[a for a, _, _ in counted]).values_list("pk", "username")
        )
        rows = sorted(
            (
                {"labeled_by__username": names.get(a), "labels": n, "issues": i}
                for a, n, i in counted
            ),
            key=lambda r: (r["labeled_by__username"] is None, r["labeled_by__username"] or ""),
        )
    else:
        rows = list(
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
