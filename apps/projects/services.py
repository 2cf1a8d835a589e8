"""Writes to projects: creation, features, members and settings."""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import User
from apps.audit.models import AuditAction
from apps.audit.services import audit_record
from apps.projects.models import Feature, Membership, Project, Role

RESERVED_COLUMNS = ("external_id", "occurred_at", "label")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    unit: str = ""
    group: str = ""
    description: str = ""


def project_classes_clean(classes: Sequence[str]) -> list[str]:
    """The class names, stripped; raises ValidationError naming what is wrong."""
    cleaned = [str(c).strip() for c in classes if str(c).strip()]
    if len(cleaned) < 2:
        raise ValidationError({"classes": "A project needs at least two label classes."})
    if len(set(cleaned)) != len(cleaned):
        raise ValidationError({"classes": "Label classes must be unique."})
    if len(cleaned) > 9:
        # Number keys 1-9 label a case; more classes would need another input.
        raise ValidationError({"classes": "At most 9 label classes (one per number key)."})
    too_long = [c for c in cleaned if len(c) > 100]
    if too_long:
        raise ValidationError(
            {"classes": f"Class names are limited to 100 characters: {too_long[0]!r}"}
        )
    return cleaned


def _clean_features(features: Sequence[FeatureSpec]) -> list[FeatureSpec]:
    names = [f.name for f in features]
    for name in names:
        if not _NAME_RE.match(name):
            raise ValidationError(
                {
                    "features": f"Feature name {name!r} must start with a letter or _ and "
                    "contain only letters, digits and _."
                }
            )
        if name in RESERVED_COLUMNS:
            raise ValidationError({"features": f"{name!r} is a reserved column, not a feature."})
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError({"features": f"Feature names repeat: {', '.join(duplicates)}"})
    return list(features)


def project_create(
    *,
    name: str,
    classes: Sequence[str],
    created_by: User,
    features: Sequence[FeatureSpec] = (),
    description: str = "",
    show_predictions: bool = False,
) -> Project:
    """Create a project; its creator becomes its admin."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "A project needs a name."})
    cleaned_classes = project_classes_clean(classes)
    cleaned_features = _clean_features(features)
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            description=description,
            classes=cleaned_classes,
            created_by=created_by,
            show_predictions=show_predictions,
        )
        Feature.objects.bulk_create(
            Feature(project=project, position=i, **vars(spec))
            for i, spec in enumerate(cleaned_features)
        )
        Membership.objects.create(project=project, user=created_by, role=Role.ADMIN)
    return project


def project_features_define(*, project: Project, features: Sequence[FeatureSpec]) -> list[Feature]:
    """Give a project without features its feature list (the first import does this)."""
    cleaned = _clean_features(features)
    if Feature.objects.filter(project=project).exists():
        raise ValidationError({"features": "This project's features are already defined."})
    return Feature.objects.bulk_create(
        Feature(project=project, position=i, **vars(spec)) for i, spec in enumerate(cleaned)
    )


def membership_set(
    *, project: Project, username: str, role: str, changed_by: User | None = None
) -> Membership:
    """Add a member or change their role."""
    if role not in Role.values:
        raise ValidationError(
            {"role": f"Unknown role {role!r}; use one of {', '.join(Role.values)}."}
        )
    user = User.objects.filter(username=username).first()
    if user is None:
        raise ValidationError({"username": f"No user named {username!r}."})
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # as in removal
        others_admin = (
            Membership.objects.select_for_update()
            .filter(project=project, role=Role.ADMIN)
            .exclude(user=user)
            .exists()
        )
        if role != Role.ADMIN and not others_admin:
            raise ValidationError(
                {"role": f"{username} is the project's only admin; make someone else admin first."}
            )
        before = Membership.objects.filter(project=project, user=user).first()
        membership, _ = Membership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
        if before is None or before.role != role:
            audit_record(
                action=AuditAction.ROLE,
                actor=changed_by,
                summary=f"{username}: {before.role if before else 'not a member'} → {role}",
                project_id=project.pk,
                object_type="member",
                object_id=user.pk,
                detail={"user": username, "from": before.role if before else None, "to": role},
            )
    return membership


def membership_remove(
    *, project: Project, username: str, removed_by: User, detail: dict | None = None
) -> Membership:
    """Take a person out of a project, with an audit row (`detail` adds to it). Their labels
    stay in the history under their name. The last admin cannot be removed. Callers that hand
    the person's work back (labeling's `member_remove`) call this in their transaction."""
    with transaction.atomic():
        # The project row first: two admins removing each other at once are taken one after
        # the other, so the second sees that only one admin is left.
        Project.objects.select_for_update().filter(pk=project.pk).first()
        membership = (
            Membership.objects.select_for_update()
            .filter(project=project, user__username=username)
            .select_related("user")
            .first()
        )
        if membership is None:
            raise ValidationError({"username": f"{username!r} is not a member of this project."})
        if membership.role == Role.ADMIN and not (
            Membership.objects.filter(project=project, role=Role.ADMIN)
            .exclude(pk=membership.pk)
            .exists()
        ):
            raise ValidationError(
                {
                    "username": f"{username} is the project's only admin; make someone else admin "
                    "first."
                }
            )
        membership.delete()
        audit_record(
            action=AuditAction.ROLE,
            actor=removed_by,
            summary=f"{username}: {membership.role} → removed",
            project_id=project.pk,
            object_type="member",
            object_id=membership.user_id,
            detail={"user": username, "from": membership.role, "to": None, **(detail or {})},
        )
    return membership


def project_settings_update(
    *,
    project: Project,
    show_predictions: bool,
    auto_retrain: bool,
    retrain_min_new_labels: int,
    retrain_quiet_seconds: int,
    auto_deploy: bool | None = None,
    relabel_blind: bool | None = None,
    alert_min_class_share: float | None = None,
    alert_stale_margin: float | None = None,
    alert_psi_threshold: float | None = None,
    alert_recent_months: int | None = None,
) -> Project:
    """Change a project's labeling, retraining, deployment and alert settings (`None` keeps a
    setting as it is)."""
    if retrain_min_new_labels < 1:
        raise ValidationError({"retrain_min_new_labels": "Must be at least 1."})
    optional = {
        "auto_deploy": auto_deploy,
        "relabel_blind": relabel_blind,
        "alert_min_class_share": alert_min_class_share,
        "alert_stale_margin": alert_stale_margin,
        "alert_psi_threshold": alert_psi_threshold,
        "alert_recent_months": alert_recent_months,
    }
    if alert_recent_months is not None and alert_recent_months < 1:
        raise ValidationError({"alert_recent_months": "At least one month counts as recent."})
    project.show_predictions = show_predictions
    project.auto_retrain = auto_retrain
    project.retrain_min_new_labels = retrain_min_new_labels
    project.retrain_quiet_seconds = retrain_quiet_seconds
    for name, value in optional.items():
        if value is not None:
            setattr(project, name, value)
    project.save(
        update_fields=[
            "show_predictions",
            "auto_retrain",
            "retrain_min_new_labels",
            "retrain_quiet_seconds",
            *(name for name, value in optional.items() if value is not None),
        ]
    )
    return project
