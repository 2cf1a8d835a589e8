"""Reads of projects, and the one access check every view and API endpoint calls first."""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.models import User
from apps.projects.models import ROLE_RANK, Feature, Membership, Project, Role


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str

    def can(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def role_label(self) -> str:
        return str(Role(self.role).label)

    @property
    def can_review(self) -> bool:
        return self.can(Role.REVIEWER)

    @property
    def can_manage_data(self) -> bool:
        return self.can(Role.DATA_SCIENTIST)

    @property
    def is_admin(self) -> bool:
        return self.can(Role.ADMIN)


def project_list_for_user(*, user: User) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user)


ADMIN_ROLES = (Role.DATA_SCIENTIST, Role.ADMIN)


def project_ids_administered_by(*, user: User) -> list[int]:
    """The projects whose records `user` browses in the Django admin: those where they are a
    data scientist or an admin (a superuser: every project)."""
    if not user.is_authenticated or not user.is_active:
        return []
    if user.is_superuser:
        return list(Project.objects.values_list("pk", flat=True))
    return list(
        Membership.objects.filter(user=user, role__in=ADMIN_ROLES).values_list(
            "project_id", flat=True
        )
    )


def user_may_enter_admin(*, user: User) -> bool:
    """The Django admin is for superusers and for whoever holds the data scientist or admin
    role in at least one project. Derived from the memberships at every request, so it cannot
    drift from them the way a stored staff flag would."""
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or Membership.objects.filter(user=user, role__in=ADMIN_ROLES).exists()


PROJECT_CREATION_DENIED = (
    "Projects are created by data scientists and admins: ask a project admin for that role, or "
    "the site administrator for the permission to create projects."
)


def project_create_allowed(*, user: User) -> bool:
    """Who may create a project: a superuser; someone given Django's "add project" permission
    (how a site administrator lets a new data scientist start their first project); or anyone
    who already is a data scientist or admin of a project. Not clinicians and reviewers: a new
    project makes its creator its admin, who then imports data and adds members."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser or user.has_perm("projects.add_project"):
        return True
    return Membership.objects.filter(user=user, role__in=ADMIN_ROLES).exists()


def project_create_check(*, user: User) -> None:
    """Raise PermissionDenied (403) unless `user` may create a project."""
    if not project_create_allowed(user=user):
        raise PermissionDenied(PROJECT_CREATION_DENIED)


def project_get_for_user(
    *, user: User, project_id: int, role: str = Role.CLINICIAN
) -> ProjectAccess:
    """The project if `user` is a member with at least `role`.

    Not a member (or no such project): 404, so that ids reveal nothing. A member whose role is too
    low: 403.
    """
    if not user.is_authenticated:
        raise Http404("No such project")
    # Every page and endpoint starts here: one SQL statement, no query to build.
    found = list(
        Project.objects.raw(
            f"SELECT p.*, m.role AS member_role FROM {Project._meta.db_table} p"
            f" JOIN {Membership._meta.db_table} m ON m.project_id = p.id"
            f" WHERE p.id = %s AND m.user_id = %s",
            [project_id, user.pk],
        )
    )
    if not found:
        raise Http404("No such project")
    project = found[0]
    access = ProjectAccess(project=project, role=project.member_role)
    if not access.can(role):
        raise PermissionDenied(
            f"This needs the {Role(role).label} role; you are {Role(access.role).label}."
        )
    return access


def project_features(*, project: Project) -> list[Feature]:
    return list(
        Feature.objects.raw(
            f"SELECT * FROM {Feature._meta.db_table} WHERE project_id = %s ORDER BY position",
            [project.pk],
        )
    )


def membership_list(*, project: Project) -> list[Membership]:
    """Members from the highest role down, then in the order they joined."""
    members = Membership.objects.filter(project=project).select_related("user").order_by("id")
    return sorted(members, key=lambda m: -ROLE_RANK[m.role])


def membership_user(*, project: Project, username: str) -> User | None:
    """The member of `project` with this username, or None."""
    membership = (
        Membership.objects.filter(project=project, user__username=username)
        .select_related("user")
        .first()
    )
    return membership.user if membership else None
