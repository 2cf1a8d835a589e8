"""The Django admin as Casebook runs it: who may enter, and what each person sees there.

Every app's admin.py builds on this module, the lowest app's (audit) too: it sits in config,
beside the apps, and reads memberships from apps.projects only inside functions, at request
time, so no app's import of it pulls a higher app in.

A data scientist retrains, deploys and rolls back from the admin, so entry does not hang on
Django's `is_staff` flag and per-model permissions (which would have to be kept in step with
every membership change): whoever holds the data scientist or admin role in a project may enter,
and every project-scoped list shows only those projects' rows. Superusers see everything.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest


class CasebookAdminLoginForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user) -> None:
        from apps.projects.selectors import user_may_enter_admin

        if not user.is_active or not user_may_enter_admin(user=user):
            raise ValidationError(
                "The admin is for data scientists and admins of a project; your account has "
                "neither role. Use the workbench instead.",
                code="invalid_login",
            )


class CasebookAdminSite(admin.AdminSite):
    site_header = "Casebook admin"
    site_title = "Casebook admin"
    index_title = "Projects, runs and model versions"
    login_form = CasebookAdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        from apps.projects.selectors import user_may_enter_admin

        if not hasattr(request, "_casebook_admin_entry"):
            request._casebook_admin_entry = user_may_enter_admin(user=request.user)
        return request._casebook_admin_entry


def admin_project_ids(request: HttpRequest) -> list[int]:
    """The projects this request's user administers, read once per request."""
    from apps.projects.selectors import project_ids_administered_by

    if not hasattr(request, "_casebook_admin_projects"):
        request._casebook_admin_projects = project_ids_administered_by(user=request.user)
    return request._casebook_admin_projects


class ProjectScopedAdmin(admin.ModelAdmin):
    """A list of one kind of project record: a data scientist or admin of a project sees that
    project's rows and nothing of another project (not in a list, a count, a filter or by id);
    a superuser sees all. Viewing needs no Django permission; adding, changing and deleting
    keep each admin's own rules."""

    # The lookup from a row to its project's id.
    project_lookup = "project"

    def get_queryset(self, request: HttpRequest):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.project_lookup}__in": admin_project_ids(request)})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser or bool(admin_project_ids(request))

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            return bool(admin_project_ids(request))
        return self.get_queryset(request).filter(pk=obj.pk).exists()


class ReadOnlyProjectScopedAdmin(ProjectScopedAdmin):
    """Browsable, never editable here: these rows change only through the services."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def admin_projects(request: HttpRequest) -> list[tuple[int, str]]:
    """(id, name) of the projects this request's user administers, by name."""
    from apps.projects.models import Project

    projects = Project.objects.order_by("name")
    if not request.user.is_superuser:
        projects = projects.filter(pk__in=admin_project_ids(request))
    return [(pk, name) for pk, name in projects.values_list("pk", "name")]


def admin_member_names(request: HttpRequest) -> list[str]:
    """The usernames of the members of the projects this request's user administers."""
    from apps.projects.models import Membership

    members = Membership.objects.all()
    if not request.user.is_superuser:
        members = members.filter(project_id__in=admin_project_ids(request))
    names = members.order_by("user__username").values_list("user__username", flat=True)
    return list(names.distinct())


def project_name_of(field: str) -> Subquery:
    """The name of the project whose id is in `field`, for lists that keep a plain project id
    (the audit log) rather than a key."""
    from apps.projects.models import Project

    return Subquery(Project.objects.filter(pk=OuterRef(field)).values("name")[:1])


class ProjectFilter(admin.RelatedFieldListFilter):
    """The project filter, offering only the projects the person administers (Django's own
    would name every project, and its "related only" variant scans the whole table)."""

    def field_choices(self, field, request: HttpRequest, model_admin):
        return admin_projects(request)
