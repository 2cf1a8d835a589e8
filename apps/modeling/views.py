"""The training runs panel (polled while a run is active) and the retrain button."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.modeling import selectors, services
from apps.modeling.models import RunTrigger
from apps.projects.models import Role
from apps.projects.selectors import ProjectAccess, project_get_for_user


def runs_panel_context(access: ProjectAccess) -> dict:
    project = access.project
    return {
        "project": project,
        "access": access,
        "active_run": selectors.training_run_active(project=project),
        "runs": selectors.training_run_list(project=project)[:8],
        "latest_version": selectors.model_version_latest(project=project),
    }


@login_required
@require_GET
def runs_panel(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id)
    return render(request, "modeling/runs_panel.html", runs_panel_context(access))


@login_required
@require_POST
def retrain(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    run, created = services.training_run_request(
        project=access.project, trigger=RunTrigger.MANUAL, requested_by=request.user
    )
    if not request.htmx:
        return redirect("workbench:project", project_id=project_id)
    context = runs_panel_context(access)
    context["notice"] = (
        f"Run {run.pk} queued." if created else f"Run {run.pk} is already {run.status}."
    )
    return render(request, "modeling/runs_panel.html", context)
