"""Reads of the review board: likely label errors and misclassified cases, filtered, ranked
and paged by keyset (so that page 1,000 of a million cases costs what page 1 does)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db.models import BinaryField, Count, Q, QuerySet
from django.db.models.functions import Substr, TruncMonth

from apps.accounts.models import User
from apps.cases.models import ImportBatch
from apps.labeling.models import Label, LabelKind
from apps.modeling.models import Deployment
from apps.modeling.selectors import deployment_current
from apps.projects.models import Feature, Project
from apps.review import feature_keys
from apps.review.filters import IMPORTED, BoardFilters
from apps.review.models import Comment, LabelIssue, LabelIssueComputation, Mention, SavedView


def board_features(*, project: Project) -> dict[str, int]:
    """The project's feature names and their positions, for BoardFilters.from_query."""
    return dict(
        Feature.objects.filter(project=project).order_by("position").values_list("name", "position")
    )


@dataclass
class BoardVersion:
    """Whose verdicts the board shows: the production version's unless another is asked for
    (or production has none yet), and why, when they are not production's."""

    computation: LabelIssueComputation | None
    production: Deployment | None
    # Every version whose verdicts are kept, newest first: the board's choice of version.
    computed: list[LabelIssueComputation] = field(default_factory=list)
    note: str = ""

    @property
    def is_production(self) -> bool:
        return (
            self.computation is not None
            and self.production is not None
            and self.computation.model_version_id == self.production.model_version_id
        )


def label_issue_board(*, project: Project, number: int | None = None) -> BoardVersion:
    """The verdicts the board shows: of version `number` when asked for, else of the version
    in production; the newest kept when production's are not found yet (said in `note`).
    Two queries, whatever the number of cases."""
    computed = list(
        LabelIssueComputation.objects.filter(project=project)
        .select_related("model_version")
        .order_by("-model_version__number")
    )
    production = deployment_current(project=project)
    by_number = {c.model_version.number: c for c in computed}
    note = ""
    if number is not None:
        if number in by_number:
            return BoardVersion(by_number[number], production, computed)
        kept = ", ".join(str(n) for n in sorted(by_number)) or "none"
        note = f"Version {number} has no verdicts (versions with verdicts: {kept}). "
    if production is not None:
        shown = next(
            (c for c in computed if c.model_version_id == production.model_version_id), None
        )
        if shown is not None:
            return BoardVersion(shown, production, computed, note.strip())
        if computed:
            note += (
                f"Version {production.model_version.number} is in production, but its "
                f"verdicts are not found yet (the worker finds them after a training run, or "
                f"within a quarter of an hour of a deployment): showing version "
                f"{computed[0].model_version.number}'s, the newest found."
            )
    elif computed:
        note += (
            f"No version is in production yet: showing version "
            f"{computed[0].model_version.number}'s verdicts, the newest found."
        )
    return BoardVersion(computed[0] if computed else None, production, computed, note.strip())


def _filtered(computation: LabelIssueComputation, f: BoardFilters) -> QuerySet[LabelIssue]:
    rows = LabelIssue.objects.filter(model_version_id=computation.model_version_id)
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
    if f.annotator == IMPORTED:
        rows = rows.filter(import_batch__isnull=False)
    elif f.annotator:
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
    *,
    project: Project,
    filters: BoardFilters,
    limit: int = 50,
    computation: LabelIssueComputation | None = None,
) -> tuple[list[LabelIssue], tuple[float, int] | None]:
    """One page of a computation's verdicts (by default those label_issue_board shows), most
    likely wrong first; and the keyset of the next page (None at the end).

    Each row carries `range_values`: its values of the filtered features (None if missing)."""
    if computation is None:
        computation = label_issue_board(project=project, number=filters.version).computation
        if computation is None:
            return [], None
    rows = (
        _filtered(computation, filters)
        .select_related("case", "labeled_by", "import_batch")
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
        ranked = LabelIssue.objects.filter(model_version_id=computation.model_version_id).order_by(
            "label_quality", "id"
        )
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
        row.model_version = computation.model_version  # one version for the whole page
        row.range_values = [
            feature_keys.decode(row.feature_keys, r.position) for r in filters.features
        ]
        row.range_named = [
            (r.name, value) for r, value in zip(filters.features, row.range_values, strict=True)
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
    if stored is not None or computation is None:
        return stored or 0, True
    counted = _filtered(computation, filters)[: COUNT_CAP + 1].count()
    return min(counted, COUNT_CAP), counted <= COUNT_CAP


def label_issue_computation_latest(*, project: Project) -> LabelIssueComputation | None:
    return (
        LabelIssueComputation.objects.filter(project=project)
        .select_related("model_version")
        .first()
    )


def error_rates_by_month(
    *, project: Project, computation: LabelIssueComputation | None
) -> list[dict]:
    """Where the model fails: per month of the cases, how many are misclassified out of sample
    and how many labels look wrong. From the counts stored with the verdicts when there are."""
    if computation is None:
        return []
    if "months" in computation.summary:
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
            LabelIssue.objects.filter(
                model_version_id=computation.model_version_id, occurred_at__isnull=False
            )
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
    *, project: Project, computation: LabelIssueComputation | None
) -> list[dict]:
    """Per clinician: labels given, and the share the board flags as likely wrong (from the
    counts stored with the verdicts when there are); and their agreement with adjudications.
    Labels that came from files are counted apart, in one "imported" row last: they are not
    the labels of the person who imported the file."""
    people: list[tuple[int, int, int]] = []  # user id, labels, flagged
    files: list[tuple[int, int, int]] = []  # import batch id, labels, flagged
    if computation is None:
        pass
    elif "annotators" in computation.summary:
        people = [tuple(a) for a in computation.summary["annotators"]]
        files = [tuple(f) for f in computation.summary.get("imported", [])]
    else:
        counted = (
            LabelIssue.objects.filter(model_version_id=computation.model_version_id)
            .values_list("labeled_by_id", "import_batch_id")
            .annotate(labels=Count("id"), issues=Count("id", filter=Q(is_label_issue=True)))
            .order_by()
        )
        for author, batch, n, i in counted:
            if batch is not None:
                files.append((batch, n, i))
            elif author is not None:
                people.append((author, n, i))
    names = dict(
        User.objects.filter(pk__in=[a for a, _, _ in people]).values_list("pk", "username")
    )
    rows = sorted(
        ({"username": names.get(a, "(removed)"), "labels": n, "issues": i} for a, n, i in people),
        key=lambda r: r["username"],
    )
    agreement = annotator_agreement(project=project)
    result = [
        {
            **r,
            "share": r["issues"] / r["labels"] if r["labels"] else 0.0,
            "adjudicated": agreement.get(r["username"], {}).get("adjudicated", 0),
            "agreed": agreement.get(r["username"], {}).get("agreed", 0),
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
        for username, row in sorted(agreement.items())
        if username not in {r["username"] for r in rows}
    ]
    if files:
        labels = sum(n for _, n, _ in files)
        issues = sum(i for _, _, i in files)
        result.append(
            {
                "username": IMPORTED,
                "imported": True,
                "files": list(
                    ImportBatch.objects.filter(pk__in=[b for b, _, _ in files]).order_by("id")
                ),
                "labels": labels,
                "issues": issues,
                "share": issues / labels if labels else 0.0,
                "adjudicated": 0,
                "agreed": 0,
            }
        )
    return result


def saved_views(*, project: Project) -> QuerySet[SavedView]:
    return SavedView.objects.filter(project=project).select_related("created_by")


# Why a discussion is hidden (discussion_hidden); "" when it is not.
HIDDEN_OVERLAP = "overlap"
HIDDEN_BLIND_RELABEL = "blind_relabel"


def discussion_hidden(*, case, user, project: Project) -> str:
    """Why a case's discussion is hidden from this user now ("" when it is not): while they
    label it independently (an overlap case they have not labeled yet), or relabel it blind."""
    from apps.labeling.selectors import blind_relabel_held, case_blind_for

    if case_blind_for(case=case, user=user):
        return HIDDEN_OVERLAP
    if project.relabel_blind and blind_relabel_held(case_id=case.pk, user=user):
        return HIDDEN_BLIND_RELABEL
    return ""


def comment_thread(*, case_id: int) -> QuerySet[Comment]:
    return Comment.objects.filter(case_id=case_id).select_related("author").order_by("id")


def comment_count(*, case_id: int) -> int:
    return Comment.objects.filter(case_id=case_id).count()


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
    # An imported label is the file's, not an opinion of whoever imported it.
    earlier = (
        Label.objects.filter(case_id__in=list(decisions))
        .exclude(kind__in=[LabelKind.ADJUDICATED, LabelKind.UNDONE, LabelKind.IMPORTED])
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
    *, project: Project, feature: str, computation: LabelIssueComputation | None, bands: int = 5
) -> list[dict] | None:
    """Where the model fails, by bands of one feature (quantiles of the labeled cases' values,
    missing values a band of their own). None for a feature the project does not have."""
    import numpy as np

    from apps.cases.selectors import case_feature_matrix

    matrix = case_feature_matrix(project_id=project.pk)
    if feature not in matrix.feature_names:
        return None
    if computation is None:
        return []
    verdicts = np.array(
        LabelIssue.objects.filter(model_version_id=computation.model_version_id)
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
