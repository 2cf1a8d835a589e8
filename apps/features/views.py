"""The derived-features page: the features in force, define or change one with a live
preview on a sample of cases, retire one, and the feature-set versions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.features import selectors, services
from apps.features.charts import histogram_chart
from apps.features.expressions import FUNCTIONS
from apps.features.forms import DerivedFeatureForm, RetireForm
from apps.features.models import DerivedFeature
from apps.features.selectors import Preview
from apps.projects.ids import id_parse
from apps.projects.models import Role
from apps.projects.selectors import ProjectAccess, project_features, project_get_for_user

TEMPLATE = "features/features.html"


def _errors_into(form: DerivedFeatureForm, error: ValidationError) -> None:
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, problems in error.message_dict.items():
        for problem in problems:
            form.add_error(field if field in form.fields else None, problem)


def _preview_context(preview: Preview | None) -> dict[str, Any]:
    if preview is None:
        return {"preview": None}
    marked = None
    error = preview.error
    if error is not None and error.position is not None:
        # The expression as typed, with the offending part marked.
        text = preview.expression
        end = error.end if error.end and error.end > error.position else error.position + 1
        marked = (text[: error.position], text[error.position : end] or " ", text[end:])
    columns = preview.inputs
    return {
        "preview": preview,
        "marked": marked,
        "histogram": histogram_chart(preview.histogram, "Distribution of the result")
        if preview.histogram
        else None,
        "preview_rows": [
            {
                "external_id": row["external_id"],
                "inputs": [row["inputs"].get(name) for name in columns],
                "value": row["value"],
            }
            for row in preview.rows
        ],
    }


def _page_context(
    access: ProjectAccess,
    form: DerivedFeatureForm,
    editing: DerivedFeature | None = None,
    preview: Preview | None = None,
) -> dict[str, Any]:
    project = access.project
    current = selectors.feature_set_current(project=project)
    raw_features = project_features(project=project)
    return {
        "project": project,
        "access": access,
        "form": form,
        "editing": editing,
        "current": current,
        "features": list(selectors.derived_feature_list(project=project)),
        "retired": list(selectors.derived_feature_list(project=project, retired=True)[:50]),
        "versions": list(selectors.feature_set_list(project=project)[:30]),
        "raw_features": raw_features,
        # The raw features' groups, offered when choosing a derived feature's group.
        "groups": sorted({f.group for f in raw_features if f.group}),
        "functions": [usage for _, _, usage in FUNCTIONS.values()],
        **_preview_context(preview),
    }


@login_required
@require_http_methods(["GET", "POST"])
def features_page(request: HttpRequest, project_id: int) -> HttpResponse:
    # Every member reads the definitions; reviewers and up define them.
    needed = Role.REVIEWER if request.method == "POST" else Role.CLINICIAN
    access = project_get_for_user(user=request.user, project_id=project_id, role=needed)
    form = DerivedFeatureForm(request.POST or None)
    status = 200
    preview = None
    if request.method == "POST":
        if form.is_valid():
            try:
                feature, version = services.derived_feature_create(
                    project=access.project,
                    created_by=request.user,
                    name=form.cleaned_data["name"],
                    **form.service_fields(),
                )
            except ValidationError as error:
                _errors_into(form, error)
            else:
                messages.success(
                    request,
                    f"{feature.name} defined: feature set v{version.number}. The next training "
                    "run can use it (all features, or tick it on the Models page).",
                )
                return redirect("features:page", access.project.pk)
        status = 400
        if form.data.get("expression"):
            preview = selectors.derived_preview(
                project=access.project, expression=form.data["expression"]
            )
    return render(request, TEMPLATE, _page_context(access, form, preview=preview), status=status)


def _feature_or_404(access: ProjectAccess, feature_id: int) -> DerivedFeature:
    feature = selectors.derived_feature_get(project=access.project, feature_id=feature_id)
    if feature is None:
        raise Http404("No such derived feature in this project")
    feature.project = access.project
    return feature


@login_required
@require_http_methods(["GET", "POST"])
def feature_change(request: HttpRequest, project_id: int, feature_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    feature = _feature_or_404(access, feature_id)
    initial = {**feature.snapshot(), "note": ""}
    if request.method == "GET":
        form = DerivedFeatureForm(initial=initial, editing=True)
        preview = selectors.derived_preview(
            project=access.project, expression=feature.expression, replacing=feature.name
        )
        return render(request, TEMPLATE, _page_context(access, form, feature, preview))
    form = DerivedFeatureForm(request.POST, initial=initial, editing=True)
    if form.is_valid():
        try:
            version = services.derived_feature_change(
                feature=feature, changed_by=request.user, **form.service_fields()
            )
        except ValidationError as error:
            _errors_into(form, error)
        else:
            messages.success(
                request,
                f"{feature.name} changed: feature set v{version.number}. Model versions already "
                "trained keep the definition they were trained with.",
            )
            return redirect("features:page", access.project.pk)
    preview = None
    if form.data.get("expression"):
        preview = selectors.derived_preview(
            project=access.project, expression=form.data["expression"], replacing=feature.name
        )
    context = _page_context(access, form, feature, preview)
    return render(request, TEMPLATE, context, status=400)


@login_required
@require_POST
def feature_retire(request: HttpRequest, project_id: int, feature_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    feature = _feature_or_404(access, feature_id)
    form = RetireForm(request.POST)
    form.is_valid()
    try:
        version = services.derived_feature_retire(
            feature=feature, retired_by=request.user, note=form.cleaned_data.get("note", "")
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(
            request,
            f"{feature.name} retired: feature set v{version.number}. Model versions trained with "
            "it still compute it as they were trained.",
        )
    return redirect("features:page", access.project.pk)


@login_required
@require_POST
def feature_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """The preview panel for the expression being typed (htmx, on every pause in typing)."""
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    replacing = None
    raw_id = request.POST.get("feature_id", "")
    if raw_id:
        feature_id = id_parse(raw_id)
        if feature_id is None:
            raise Http404("No such derived feature in this project")
        replacing = _feature_or_404(access, feature_id).name
    preview = selectors.derived_preview(
        project=access.project,
        expression=request.POST.get("expression", "")[:2000],
        replacing=replacing,
    )
    context = {"project": access.project, "access": access, **_preview_context(preview)}
    return render(request, TEMPLATE + "#preview", context)
