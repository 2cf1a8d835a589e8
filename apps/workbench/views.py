"""The home page (my projects) and the project page, composed from the lower apps' selectors."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.features.selectors import derived_feature_list
from apps.labeling.selectors import case_totals, label_counts_by_clinician, label_progress
from apps.modeling.selectors import project_alerts
from apps.modeling.views import runs_panel_context
from apps.projects.models import Role
from apps.projects.selectors import project_features, project_get_for_user, project_list_for_user


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = list(project_list_for_user(user=request.user).order_by("name"))
    totals = case_totals(project_ids=[p.pk for p in projects])
    for project in projects:
        project.case_total = totals.get(project.pk, 0)
    roles = dict(request.user.memberships.values_list("project_id", "role"))
    rows = [{"project": p, "role": Role(roles[p.pk]).label} for p in projects]
    return render(request, "workbench/home.html", {"rows": rows})


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
