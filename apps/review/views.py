"""The review board page and the relabel request it sends."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.cases.models import Case
from apps.labeling.models import LabelTask, TaskKind, TaskStatus
from apps.labeling.selectors import case_ids_hidden_for
from apps.projects.ids import id_parse
from apps.projects.models import Role
from apps.projects.selectors import (
    membership_list,
    membership_user,
    project_features,
    project_get_for_user,
)
from apps.review import selectors, services
from apps.review.filters import IMPORTED, KINDS, BoardFilters


@login_required
@require_GET
def board(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    features = project_features(project=project)
    filters = BoardFilters.from_query(request.GET, features={f.name: f.position for f in features})
    shown = selectors.label_issue_board(project=project, number=filters.version)
    computation = shown.computation
    if request.htmx and request.GET.get("fragment") == "count":
        total, exact = selectors.label_issue_total(
            project=project, filters=filters, computation=computation
        )
        # 200 even for filters with errors: htmx swaps nothing on a 4xx.
        return render(
            request,
            "review/board.html#count",
            {"project": project, "total": total, "total_exact": exact},
        )
    band_feature = request.GET.get("band_feature", "")
    rows, following = (
        selectors.label_issue_page(project=project, filters=filters, computation=computation)
        if computation is not None
        else ([], None)
    )
    units = {f.name: f.unit for f in features}
    context = {
        "project": project,
        "access": access,
        "filters": filters,
        "kinds": KINDS,
        "rows": rows,
        # Cases of this page already sent back for relabeling.
        "asked": set(
            LabelTask.objects.filter(
                case_id__in=[r.case_id for r in rows],
                kind=TaskKind.RELABEL,
                status=TaskStatus.OPEN,
            ).values_list("case_id", flat=True)
        ),
        "next_query": filters.query_string(after=f"{following[0]!r},{following[1]}")
        if following
        else None,
        "first_query": filters.query_string() if filters.after else None,
        # None: counted in the database, after the page is shown (the count fragment).
        "total": selectors.label_issue_count_stored(filters=filters, computation=computation),
        "total_exact": True,
        "computation": computation,
        "shown": shown,
        "by_month": selectors.error_rates_by_month(project=project, computation=computation),
        "band_feature": band_feature,
        "by_band": selectors.error_rates_by_feature_band(
            project=project, feature=band_feature, computation=computation
        )
        if band_feature
        else None,
        "features": features,
        "feature_names": [f.name for f in features],
        "range_rows": [
            {
                "name": name,
                "min": low,
                "max": high,
                "unit": units.get(name, ""),
                "remove": filters.without_range(name),
            }
            for name, low, high in filters.range_inputs
        ],
        "by_annotator": selectors.error_rates_by_annotator(
            project=project, computation=computation
        ),
        "members": membership_list(project=project),
        "imported_choice": IMPORTED,
        "return_to": request.get_full_path(),
        "saved_views": selectors.saved_views(project=project),
        "current_query": filters.query_string(),
        "filter_pairs": filters.query_pairs(),
        # The new-range row as typed, when it was refused and is not among the rows above.
        "add_row": {
            "feature": request.GET.get("add_feature", ""),
            "min": request.GET.get("add_min", ""),
            "max": request.GET.get("add_max", ""),
        }
        if filters.errors
        and request.GET.get("add_feature", "") not in {n for n, _, _ in filters.range_inputs}
        else {},
    }
    return render(request, "review/board.html", context, status=400 if filters.errors else 200)


@login_required
@require_POST
def relabel(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    back = request.POST.get("return_to") or ""
    if not back.startswith(f"/projects/{project.pk}/review/"):
        back = f"/projects/{project.pk}/review/"
    try:
        case_ids = [id_parse(c) for c in request.POST.getlist("case")]
        if None in case_ids:
            raise ValueError("not a case id")
        username = request.POST.get("assignee", "")
        assignee = membership_user(project=project, username=username) if username else None
        if username and assignee is None:
            raise ValidationError(f"{username} is not a member of this project.")
        opened, pending = services.relabel_tasks_open(
            project=project,
            case_ids=case_ids,
            created_by=request.user,
            reason=request.POST.get("reason", ""),
            assignee=assignee,
        )
    except ValueError:
        messages.error(request, "The selection was not understood; nothing was sent.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages) + " Nothing was sent.")
    else:
        who = f"to {assignee.username}" if assignee else "to the clinicians' pool"
        text = f"Opened {opened} relabel task{'s' if opened != 1 else ''} {who}."
        if pending:
            text += (
                f" {pending} already had an open relabel or adjudication and"
                f" {'was' if pending == 1 else 'were'} skipped."
            )
        messages.success(request, text)
    return redirect(back)


@login_required
@require_POST
def saved_view_save(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    try:
        view = services.saved_view_save(
            project=access.project,
            name=request.POST.get("name", ""),
            query=request.POST.get("query", ""),
            created_by=request.user,
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect(f"/projects/{access.project.pk}/review/?{request.POST.get('query', '')}")
    messages.success(request, f"Saved the view “{view.name}” for the team.")
    return redirect(f"/projects/{access.project.pk}/review/?{view.query}")


def _thread_context(request: HttpRequest, access, case: Case, **extra) -> dict:
    hidden = selectors.discussion_hidden(case=case, user=request.user, project=access.project)
    return {
        "project": access.project,
        "access": access,
        "case": case,
        # While hidden, only how many comments there are: that a discussion exists is no
        # one's opinion, and the person knows to come back to it.
        "comments": [] if hidden else selectors.comment_thread(case_id=case.pk),
        "comment_count": selectors.comment_count(case_id=case.pk) if hidden else None,
        "hidden": hidden,
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def comments(request: HttpRequest, project_id: int, case_id: int) -> HttpResponse:
    """A case's discussion (an htmx partial on the labeling page), and a new comment."""
    access = project_get_for_user(user=request.user, project_id=project_id)
    case = Case.objects.filter(project=access.project, pk=case_id).first()
    if case is None:
        raise Http404("No such case in this project")
    status = 200
    extra: dict = {}
    if request.method == "POST":
        try:
            services.comment_add(case=case, author=request.user, body=request.POST.get("body", ""))
        except ValidationError as error:
            extra = {"error": " ".join(error.messages), "draft": request.POST.get("body", "")}
            status = 400
    return render(
        request,
        "review/_thread.html",
        _thread_context(request, access, case, **extra),
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def mentions(request: HttpRequest) -> HttpResponse:
    """Where the user was @mentioned, across their projects; seen ones can be marked."""
    if request.method == "POST":
        ids = [i for i in map(id_parse, request.POST.getlist("mention")) if i is not None]
        services.mentions_mark_seen(user=request.user, mention_ids=ids)
        return redirect("review:mentions")
    found = selectors.mentions_for(user=request.user)
    # A comment on a case the user must label blind may name the label: its text waits until
    # they have given theirs, as the thread does.
    hidden = case_ids_hidden_for(user=request.user, case_ids=[m.comment.case_id for m in found])
    for mention in found:
        mention.body_hidden = mention.comment.case_id in hidden
    return render(request, "review/mentions.html", {"mentions": found})
