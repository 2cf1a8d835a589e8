"""Pages of worklists: the project's worklists and a new one, a reviewer's reranking and
judgments (saved as they go through htmx), and how close each model version comes to the
reviewers' orders."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.modeling import charts
from apps.modeling.selectors import deployment_current
from apps.projects.ids import id_parse
from apps.projects.models import Project, Role
from apps.projects.selectors import ProjectAccess, project_features, project_get_for_user
from apps.worklists import selectors, services
from apps.worklists.forms import WorklistForm
from apps.worklists.models import Judgment, RerankSession, Worklist
from apps.worklists.selectors import Agreement

# Features shown on each row of the reranking list unless the reviewer picks others.
COMPACT_FEATURES = 4
K_CHOICES = (5, 10, 20, 25, 50, 100)
KEYS = {Judgment.ACTIONABLE: "1", Judgment.NOT_ACTIONABLE: "2", Judgment.NEEDS_INFORMATION: "3"}
STALE_MESSAGE = (
    "Not saved: this worklist was reordered in another window after this page was loaded. "
    "The order saved there is shown below; continue from it."
)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _worklist_or_404(project: Project, worklist_id: int) -> Worklist:
    worklist = selectors.worklist_get(project=project, worklist_id=worklist_id)
    if worklist is None:
        raise Http404("No such worklist in this project")
    return worklist


def _add_service_errors(form: WorklistForm, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, problems in error.message_dict.items():
            for problem in problems:
                form.add_error(field if field in form.fields else None, problem)
    else:
        for problem in error.messages:
            form.add_error(None, problem)


@login_required
@require_http_methods(["GET", "POST"])
def worklist_list(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    deployment = deployment_current(project=project)
    classes = list(project.classes)
    today = timezone.localdate()
    form = WorklistForm(
        request.POST or None,
        classes=classes,
        initial={"name": f"{classes[-1]} risk, {today.day} {today:%b %Y}"},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            worklist = services.worklist_create(
                project=project,
                name=data["name"],
                risk_class=data["risk_class"],
                size=data["size"],
                source=data["source"],
                months=data["months"],
                created_by=request.user,
            )
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(
                request,
                f"Worklist “{worklist.name}” made: version {worklist.model_version.number}'s "
                f"{worklist.size} highest risks of {worklist.risk_class}. Your order starts as "
                f"the model's.",
            )
            return redirect("worklists:rerank", project_id=project.pk, worklist_id=worklist.pk)
    worklists = list(selectors.worklist_list(project=project))
    progress = selectors.worklist_progress(project=project, user=request.user)
    context = {
        "project": project,
        "access": access,
        "form": form,
        "production": deployment.model_version if deployment else None,
        "rows": [(w, progress.get(w.pk, selectors.WorklistProgress())) for w in worklists],
    }
    return render(request, "worklists/list.html", context, status=400 if form.errors else 200)


def _rerank_context(
    request: HttpRequest, access: ProjectAccess, session: RerankSession, **extra: Any
) -> dict[str, Any]:
    features = project_features(project=access.project)
    names = [f.name for f in features]
    # The features picked for the rows: in the query string, and sent along with saves so that
    # a list shown again after a refused save keeps them.
    asked = request.POST.getlist("show") or request.GET.getlist("show")
    picked = [n for n in asked if n in names]
    rows = selectors.worklist_rows(session=session)
    return {
        "project": access.project,
        "access": access,
        "worklist": session.worklist,
        "session": session,
        "rows": rows,
        "judged": sum(1 for r in rows if r.judgment),
        "features": features,
        "shown": [f for f in features if f.name in picked] or features[:COMPACT_FEATURES],
        "judgments": [(value, label, KEYS[value]) for value, label in Judgment.choices],
        **extra,
    }


@login_required
@require_GET
def rerank(request: HttpRequest, project_id: int, worklist_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    worklist = _worklist_or_404(access.project, worklist_id)
    session = services.rerank_session_start(worklist=worklist, reviewer=request.user)
    return render(request, "worklists/rerank.html", _rerank_context(request, access, session))


@login_required
@require_GET
def case_features(
    request: HttpRequest, project_id: int, worklist_id: int, case_id: int
) -> HttpResponse:
    """All features of a case of the list, loaded when its row is opened (200 rows with every
    feature would make the page several times heavier)."""
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    worklist = _worklist_or_404(access.project, worklist_id)
    values = selectors.worklist_case_features(worklist=worklist, case_id=case_id)
    if values is None:
        raise Http404("No such case on this worklist")
    context = {"features": project_features(project=access.project), "values": values}
    return render(request, "worklists/rerank.html#all-features", context)


def _board(
    request: HttpRequest, access: ProjectAccess, session: RerankSession, error: str, status: int
) -> HttpResponse:
    """The whole list again as saved, with why the page's order was not: its rows are out of
    step with the saved ones, so the page takes the saved order back."""
    session.refresh_from_db()
    response = render(
        request,
        "worklists/rerank.html#board",
        _rerank_context(request, access, session, error=error, save_error=True),
        status=status,
    )
    response["HX-Retarget"] = "#rerank-board"
    response["HX-Reswap"] = "outerHTML"
    return response


@login_required
@require_POST
def order_save(request: HttpRequest, project_id: int, worklist_id: int) -> HttpResponse:
    """Save the reviewer's whole order (`order`: case ids, comma-separated), or one case moved
    (`case_id`, `to_position`), from the page that showed `revision`."""
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    worklist = _worklist_or_404(access.project, worklist_id)
    session = services.rerank_session_start(worklist=worklist, reviewer=request.user)
    worklist_url = reverse("worklists:rerank", args=[access.project.pk, worklist.pk])
    revision = _int(request.POST.get("revision"))
    try:
        if revision is None:
            raise ValidationError("The page did not say which saved order it showed.")
        if request.POST.get("case_id"):
            session = services.rerank_move(
                session=session,
                case_id=id_parse(request.POST["case_id"]) or 0,
                to_position=_int(request.POST.get("to_position")) or 1,
                revision=revision,
            )
        else:
            order = [c.strip() for c in request.POST.get("order", "").split(",") if c.strip()]
            session = services.rerank_order_save(session=session, order=order, revision=revision)
    except ValidationError as error:
        stale = isinstance(error, services.StaleOrder)
        message = (
            STALE_MESSAGE
            if stale
            else f"Not saved: {' '.join(error.messages)} The saved order is shown below."
        )
        if request.htmx:
            return _board(request, access, session, message, status=409 if stale else 400)
        messages.error(request, message)
        return redirect(worklist_url)
    if not request.htmx:
        return redirect(worklist_url)
    return render(
        request,
        "worklists/rerank.html#order-saved",
        {"project": access.project, "worklist": worklist, "session": session, "saved": True},
    )


@login_required
@require_POST
def judgment_save(request: HttpRequest, project_id: int, worklist_id: int) -> HttpResponse:
    """Judge one case (`case_id`, `value`, optional `reason`). A reason changed after the
    judgment comes without `value` and keeps the judgment in force (`current`)."""
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    worklist = _worklist_or_404(access.project, worklist_id)
    session = services.rerank_session_start(worklist=worklist, reviewer=request.user)
    case_id = id_parse(request.POST.get("case_id"))
    value = request.POST.get("value") or request.POST.get("current") or ""
    reason = request.POST.get("reason", "")
    row = {"case_id": case_id, "judgment": request.POST.get("current", ""), "reason": reason}
    if not value and request.htmx:
        # A reason typed before any judgment: it goes with the judgment when one is chosen.
        return HttpResponse(status=204)
    status, error = 200, ""
    try:
        if case_id is None:
            raise ValidationError("Which case? The page sent none.")
        if not value:
            raise ValidationError("Choose a judgment first; the reason is saved with it.")
        judgment = services.judgment_record(
            session=session, case_id=case_id, value=value, reason=reason
        )
    except ValidationError as error_:
        status, error = 400, " ".join(error_.messages)
    else:
        row = {"case_id": case_id, "judgment": judgment.value, "reason": judgment.reason}
    if not request.htmx:
        if error:
            messages.error(request, f"Not saved: {error}")
        return redirect("worklists:rerank", project_id=access.project.pk, worklist_id=worklist.pk)
    context = {
        "project": access.project,
        "worklist": worklist,
        "session": session,
        "row": row,
        "judge_error": error,
        "judgments": [(v, label, KEYS[v]) for v, label in Judgment.choices],
        "judged": len(selectors.judgments_current(session=session)),
        "saved": not error,
        "save_error": bool(error),
        "oob": True,
    }
    return render(request, "worklists/rerank.html#judged", context, status=status)


@login_required
@require_POST
def session_finish(request: HttpRequest, project_id: int, worklist_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    worklist = _worklist_or_404(access.project, worklist_id)
    session = services.rerank_session_start(worklist=worklist, reviewer=request.user)
    services.rerank_session_finish(session=session)
    messages.success(
        request,
        f"“{worklist.name}” is marked done. Your order and judgments are saved; you can open "
        f"it again to change them.",
    )
    return redirect("worklists:list", project_id=access.project.pk)


# The chart's three lines, in the order of its legend (drawn in the page, beside the chart).
CHART_LINES = (
    ("ndcg", "NDCG@{k}", charts.PALETTE[0]),
    ("tau", "Kendall's tau", charts.PALETTE[1]),
    ("precision", "Precision@{k} actionable", charts.PALETTE[2]),
)


def _agreement_chart(figures: Agreement) -> SafeString | None:
    versions = figures.by_version
    if not versions:
        return None
    xs = [v.number for v in versions]
    series = []
    for attribute, name, color in CHART_LINES:
        values = [getattr(v, attribute) for v in versions]
        series.append(
            charts.Series(
                name.format(k=figures.k),
                xs,
                values,
                color=color,
                points=True,
                labels=[
                    f"v{v.number}: {value:.2f}" if value is not None else ""
                    for v, value in zip(versions, values, strict=True)
                ],
            )
        )
    taus = [v.tau for v in versions if v.tau is not None]
    low = -1.0 if taus and min(taus) < -0.5 else (-0.5 if taus and min(taus) < 0 else 0.0)
    first, last = xs[0], xs[-1]
    step = max(1, -(-len(xs) // 8))
    return charts.line_chart(
        series,
        title="Agreement with the reviewers per model version",
        x_label="Model version",
        y_label="Agreement",
        x_range=(first - 0.5, last + 0.5) if first == last else (first, last),
        y_range=(low, 1.0),
        x_ticks=[(x, f"v{x}") for x in xs[::step]],
        legend=None,
    )


@login_required
@require_GET
def agreement(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    k = _int(request.GET.get("k"))
    k = k if k in K_CHOICES else 10
    figures = selectors.agreement(project=project, k=k)
    context = {
        "project": project,
        "access": access,
        "figures": figures,
        "k": k,
        "k_choices": K_CHOICES,
        "chart": _agreement_chart(figures),
        "chart_lines": [(name.format(k=k), color) for _, name, color in CHART_LINES],
        "worklist_count": selectors.worklist_list(project=project).count(),
        "derived": list(selectors.derived_project_list(project=project, user=request.user))
        if access.can_manage_data
        else [],
    }
    return render(request, "worklists/agreement.html", context)


@login_required
@require_GET
def preference_pairs(request: HttpRequest, project_id: int) -> StreamingHttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        services.preference_pairs_export(project=access.project, exported_by=request.user),
        content_type="text/csv; charset=utf-8",
    )
    filename = f"project-{access.project.pk}-preference-pairs-{stamp}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_POST
def derived_project_create(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    try:
        derived = services.derived_project_create(
            source=access.project,
            created_by=request.user,
            name=request.POST.get("name", ""),
        )
    except ValidationError as error:
        messages.error(request, "No project was started: " + " ".join(error.messages))
        return redirect("worklists:agreement", project_id=access.project.pk)
    messages.success(
        request,
        f"Project “{derived.name}” started: every case of {access.project.name}, labeled "
        f"actionable or not actionable by the reviewers' judgments, which go on arriving as "
        f"labels. Set its objective and train it from here.",
    )
    return redirect("workbench:project", project_id=derived.pk)
