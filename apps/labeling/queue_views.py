"""The queue page (strategy, preview, leases) and the agreement page (kappa, adjudication)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.cases.selectors import case_get_in_project
from apps.labeling import selectors, services
from apps.labeling.forms import QueueSettingsForm, RelabelRequestForm
from apps.labeling.models import TaskKind
from apps.projects.ids import id_parse
from apps.projects.models import Role
from apps.projects.selectors import membership_list, membership_user, project_get_for_user


@login_required
@require_http_methods(["GET", "POST"])
def queue_page(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    current = selectors.queue_settings_current(project_id=project.pk)
    status = 200
    if request.method == "POST":
        form = QueueSettingsForm(request.POST, classes=list(project.classes))
        if form.is_valid():
            try:
                services.queue_settings_change(
                    project=project, changed_by=request.user, **form.service_fields()
                )
            except ValidationError as error:
                for field, problems in error.message_dict.items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
                status = 400
            else:
                messages.success(
                    request, "Queue settings saved. The worker is re-ranking the queue now."
                )
                return redirect("labeling:queue", project.pk)
        else:
            status = 400
    else:
        form = QueueSettingsForm(
            initial=QueueSettingsForm.initial_from(current), classes=list(project.classes)
        )
    context = {
        "project": project,
        "access": access,
        "form": form,
        "current": current,
        "build": selectors.queue_build_latest(project=project),
        "preview": selectors.queue_preview(project=project, limit=10),
        "progress": selectors.label_progress(project=project),
        "leases": selectors.leases_active(project=project),
        "waiting": selectors.queue_waiting_count(project=project),
        "history": selectors.queue_settings_history(project=project),
    }
    return render(request, "labeling/queue.html", context, status=status)


@login_required
@require_GET
def agreement_page(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    raw = request.GET.get("closed_before", "")
    before = id_parse(raw)
    error = "" if raw == "" or before else f"closed_before {raw!r} is not a task number."
    closed, older = selectors.task_closed_list(project=project, before_id=before)
    context = {
        "project": project,
        "access": access,
        "agreement": selectors.label_agreement(project=project),
        "disagreements": selectors.disagreements(project=project),
        "clinicians": selectors.label_counts_by_clinician(project=project),
        "relabel_tasks": selectors.task_list(project=project, kind=TaskKind.RELABEL)[:50],
        "closed_tasks": closed,
        "closed_older": older,
        "closed_paged": bool(raw) and not error,
        "error": error,
        "current": selectors.queue_settings_current(project_id=project.pk),
    }
    return render(request, "labeling/agreement.html", context, status=400 if error else 200)


@login_required
@require_POST
def relabel_request(request: HttpRequest, project_id: int, case_id: int) -> HttpResponse:
    """A reviewer asks for a case to be labeled again, by one clinician or the pool."""
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    case = case_get_in_project(project=access.project, case_id=case_id)
    if case is None:
        raise Http404("No such case in this project")
    members = [m.user.username for m in membership_list(project=access.project)]
    form = RelabelRequestForm(request.POST, members=members)
    back = reverse("labeling:label", args=[access.project.pk]) + f"?case={case.pk}"
    if not form.is_valid():
        messages.error(request, "Choose a member of this project, or the pool.")
        return redirect(back)
    assignee = None
    if form.cleaned_data["assignee"]:
        assignee = membership_user(project=access.project, username=form.cleaned_data["assignee"])
    try:
        services.task_open(
            case=case,
            kind=TaskKind.RELABEL,
            created_by=request.user,
            reason=form.cleaned_data["reason"],
            assignee=assignee,
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        who = assignee.username if assignee else "the pool"
        messages.success(request, f"Asked {who} to relabel {case.external_id}.")
    return redirect(back)
