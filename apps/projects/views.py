"""Pages to create a project, change its settings and manage its members."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.projects import services
from apps.projects.forms import MembershipForm, ProjectCreateForm, ProjectSettingsForm
from apps.projects.models import Role
from apps.projects.selectors import (
    ProjectAccess,
    membership_list,
    project_create_check,
    project_get_for_user,
)


def _add_service_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            for message in errors:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in error.messages:
            form.add_error(None, message)


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    project_create_check(user=request.user)
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                classes=form.cleaned_data["classes"],
                features=form.cleaned_data["features"],
                created_by=request.user,
            )
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(request, f"Project “{project.name}” created. Import cases next.")
            return redirect("labeling:import", project_id=project.pk)
    return render(request, "projects/project_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    project = access.project
    initial = {
        "show_predictions": project.show_predictions,
        "auto_retrain": project.auto_retrain,
        "retrain_min_new_labels": project.retrain_min_new_labels,
        "retrain_quiet_seconds": project.retrain_quiet_seconds,
        "auto_deploy": project.auto_deploy,
        "relabel_blind": project.relabel_blind,
        "alert_min_class_share": project.alert_min_class_share,
        "alert_stale_margin": project.alert_stale_margin,
        "alert_psi_threshold": project.alert_psi_threshold,
        "alert_recent_months": project.alert_recent_months,
    }
    form = ProjectSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.project_settings_update(project=project, **form.cleaned_data)
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(request, "Settings saved.")
            return redirect("workbench:project", project_id=project.pk)
    return render(
        request,
        "projects/project_settings.html",
        {"project": project, "access": access, "form": form},
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_members(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.ADMIN)
    form = MembershipForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.membership_set(
                project=access.project, changed_by=request.user, **form.cleaned_data
            )
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(
                request, f"{membership.user.username} is now {membership.get_role_display()}."
            )
            return redirect("projects:members", project_id=project_id)
    return members_page(request, access, form)


def members_page(
    request: HttpRequest,
    access: ProjectAccess,
    form: MembershipForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The members page; `error` when removing a member was refused."""
    return render(
        request,
        "projects/project_members.html",
        {
            "project": access.project,
            "access": access,
            "form": form or MembershipForm(),
            "error": error,
            "memberships": membership_list(project=access.project),
        },
        status=status,
    )
