"""The home page (my projects) and the project page, composed from the lower apps' selectors."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.features.selectors import derived_feature_list
from apps.labeling.selectors import case_totals, label_counts_by_clinician, label_progress
from apps.labeling.services import member_remove
from apps.modeling.selectors import project_alerts
from apps.modeling.views import runs_panel_context
from apps.projects.models import Role
from apps.projects.selectors import (
    project_create_allowed,
    project_features,
    project_get_for_user,
    project_list_for_user,
)
from apps.projects.views import members_page


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = list(project_list_for_user(user=request.user).order_by("name"))
    totals = case_totals(project_ids=[p.pk for p in projects])
    for project in projects:
        project.case_total = totals.get(project.pk, 0)
    roles = dict(request.user.memberships.values_list("project_id", "role"))
    rows = [{"project": p, "role": Role(roles[p.pk]).label} for p in projects]
    return render(
        request,
        "workbench/home.html",
        {"rows": rows, "may_create": project_create_allowed(user=request.user)},
    )


@login_required
@require_GET
def project_page(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id)
    context = {
        **runs_panel_context(access),
        "progress": label_progress(project=access.project, user=request.user),
        "clinicians": label_counts_by_clinician(project=access.project),
        "features": project_features(project=access.project),
        # A query set, read only when the whole page renders (not the progress fragment).
        "derived_features": derived_feature_list(project=access.project),
        # Alerts call for reviewers' and data scientists' actions; clinicians just label.
        "alerts": project_alerts(project=access.project) if access.can_review else [],
    }
    template = "workbench/project.html"
    if request.htmx and request.GET.get("fragment") == "progress":
        template += "#progress"
    return render(request, template, context)


@login_required
@require_POST
def member_remove_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """Remove a member (the members page's Remove button). Lives here, above labeling, because
    removing a person also hands their held cases and tasks back."""
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.ADMIN)
    username = request.POST.get("username", "").strip()
    try:
        member_remove(project=access.project, username=username, removed_by=request.user)
    except ValidationError as error:
        return members_page(request, access, error=" ".join(error.messages), status=400)
    messages.success(request, f"{username} is no longer a member of {access.project.name}.")
    if username == request.user.username:
        return redirect("workbench:home")
    return redirect("projects:members", project_id=project_id)
