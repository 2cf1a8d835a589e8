"""Pages of the modeling app: the runs panel, the models page (objective, training
configuration, versions, deploy and rollback), a run's evaluation, and two versions compared."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.features import selectors as feature_selectors
from apps.modeling import charts, selectors, services
from apps.modeling.forms import DeployForm, ObjectiveForm, TrainingConfigForm
from apps.modeling.models import RunTrigger
from apps.projects.models import Role
from apps.projects.selectors import ProjectAccess, project_get_for_user


def runs_panel_context(access: ProjectAccess) -> dict:
    project = access.project
    deployment = selectors.deployment_current(project=project)
    return {
        "project": project,
        "access": access,
        "active_run": selectors.training_run_active(project=project),
        "runs": selectors.training_run_list(project=project)[:8],
        "latest_version": selectors.model_version_latest(project=project),
        "production": deployment.model_version if deployment else None,
        "deployment": deployment,
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
        messages.success(
            request,
            f"Run {run.pk} queued." if created else f"Run {run.pk} is already {run.status}.",
        )
        # Back to the page the button was on: only the models page or the project page.
        back = "modeling:models" if request.POST.get("next") == "modeling:models" else None
        return redirect(back or "workbench:project", project_id=project_id)
    context = runs_panel_context(access)
    context["notice"] = (
        f"Run {run.pk} queued." if created else f"Run {run.pk} is already {run.status}."
    )
    return render(request, "modeling/runs_panel.html", context)


@login_required
@require_POST
def cancel(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    run = selectors.training_run_get(project=access.project, run_id=run_id)
    if run is None:
        raise Http404
    if services.training_run_cancel(run=run, user=request.user):
        notice = f"Run {run.pk} cancelled; nothing of it is kept. You can retrain at once."
    else:
        notice = f"Run {run.pk} had already {_ended(run.status)}; nothing was cancelled."
    if request.htmx and request.POST.get("from") == "panel":
        context = runs_panel_context(access)
        context["notice"] = notice
        return render(request, "modeling/runs_panel.html", context)
    messages.info(request, notice)
    return redirect("modeling:run", project_id=access.project.pk, run_id=run.pk)


def _ended(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "skipped": "been skipped"}.get(
        status, "been cancelled"
    )


def _errors_into(form, error: ValidationError) -> None:
    for field, problems in error.message_dict.items():
        for problem in problems:
            form.add_error(field if field in form.fields else None, problem)


@login_required
@require_http_methods(["GET", "POST"])
def models_page(request: HttpRequest, project_id: int) -> HttpResponse:
    # Reviewers see the page; only data scientists change it (403 for a reviewer's POST).
    needed = Role.DATA_SCIENTIST if request.method == "POST" else Role.REVIEWER
    access = project_get_for_user(user=request.user, project_id=project_id, role=needed)
    project = access.project
    classes = list(project.classes)
    # Raw features, then the derived ones in force: the configuration may choose either.
    features = feature_selectors.feature_names(project=project)
    objective = selectors.objective_current(project=project)
    config = selectors.training_config_current(project=project)
    # Prefixed: both forms have a note, and ids must stay unique on the page.
    objective_form = ObjectiveForm(
        initial=ObjectiveForm.initial_from(objective), classes=classes, prefix="objective"
    )
    config_form = TrainingConfigForm(
        initial=TrainingConfigForm.initial_from(config), features=features, prefix="config"
    )
    status = 200
    if request.method == "POST":
        which = request.POST.get("form")
        if which == "objective":
            objective_form = ObjectiveForm(request.POST, classes=classes, prefix="objective")
            if objective_form.is_valid():
                try:
                    services.objective_change(
                        project=project, changed_by=request.user, **objective_form.service_fields()
                    )
                except ValidationError as error:
                    _errors_into(objective_form, error)
                else:
                    messages.success(request, "Objective saved. The next run is chosen under it.")
                    return redirect("modeling:models", project.pk)
        elif which == "config":
            config_form = TrainingConfigForm(request.POST, features=features, prefix="config")
            if config_form.is_valid():
                try:
                    services.training_config_change(
                        project=project, changed_by=request.user, **config_form.service_fields()
                    )
                except ValidationError as error:
                    _errors_into(config_form, error)
                else:
                    messages.success(request, "Training configuration saved; the next run uses it.")
                    return redirect("modeling:models", project.pk)
        status = 400
    deployment = selectors.deployment_current(project=project)
    versions = list(selectors.model_version_list(project=project)[:50])
    context = {
        "project": project,
        "access": access,
        "objective": objective,
        "config": config,
        "objective_form": objective_form,
        "config_form": config_form,
        "objective_history": selectors.objective_history(project=project)[:20],
        "config_history": selectors.training_config_history(project=project)[:20],
        "deployment": deployment,
        "production": deployment.model_version if deployment else None,
        "deployments": selectors.deployment_history(project=project)[:20],
        "versions": versions,
        "alerts": selectors.project_alerts(project=project),
        "active_run": selectors.training_run_active(project=project),
        "feature_set": feature_selectors.feature_set_current(project=project),
    }
    return render(request, "modeling/models.html", context, status=status)


@login_required
@require_POST
def deploy(request: HttpRequest, project_id: int, number: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    project = access.project
    version = selectors.model_version_get(project=project, number=number)
    if version is None:
        raise Http404
    form = DeployForm(request.POST)
    if not form.is_valid() and "note" in form.errors:
        # The page's field stops at 300 characters; a longer note is refused, not cut.
        return HttpResponseBadRequest(
            f"Nothing was deployed: the note is too long ({len(request.POST.get('note', ''))} "
            "characters; at most 300)."
        )
    deployment = selectors.deployment_current(project=project)
    showing = form.cleaned_data.get("expected_production")
    now_number = deployment.model_version.number if deployment else None
    rollback = request.POST.get("action") == "rollback"
    if showing != now_number:
        messages.error(
            request,
            f"Production changed to version {now_number} since this page was opened; nothing "
            "was deployed. Look again, then deploy.",
        )
        return redirect("modeling:models", project.pk)
    try:
        if rollback:
            services.model_version_rollback(
                project=project,
                deployed_by=request.user,
                to_version=version,
                note=form.cleaned_data.get("note", ""),
            )
        else:
            services.model_version_deploy(
                version=version, deployed_by=request.user, note=form.cleaned_data.get("note", "")
            )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        verb = "Rolled back to" if rollback else "Deployed"
        messages.success(
            request,
            f"{verb} version {version.number}. Predictions switch now; the stored scores and "
            "the queue follow in the worker.",
        )
    return redirect("modeling:models", project.pk)


def _version_charts(version) -> dict[str, Any]:
    evaluation = version.evaluation or {}
    curves = evaluation.get("curves") or {}
    out: dict[str, Any] = {}
    if curves:
        out["roc"] = charts.roc_chart(curves)
        out["pr"] = charts.pr_chart(curves)
        out["calibration"] = charts.calibration_chart(curves)
    slices = evaluation.get("slices") or []
    if slices:
        by_source: dict[str, list[dict]] = {}
        for row in slices:
            by_source.setdefault(row["source"], []).append(row)
        out["slices"] = charts.slices_chart(
            list(by_source.items()), evaluation.get("objective_label", "Objective")
        )
    if evaluation.get("importance"):
        derived = {d["name"] for d in version.training_run.params.get("derived") or []}
        out["importance"] = charts.importance_chart(evaluation["importance"], derived)
    return out


@login_required
@require_GET
def run_page(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    run = selectors.training_run_get(project=access.project, run_id=run_id)
    if run is None:
        raise Http404
    version = getattr(run, "model_version", None)
    deployment = selectors.deployment_current(project=access.project)
    context = {
        "project": access.project,
        "access": access,
        "run": run,
        "version": version,
        "charts": _version_charts(version) if version else {},
        "is_production": bool(deployment and version and deployment.model_version_id == version.pk),
        "production": deployment.model_version if deployment else None,
        "classes": list(access.project.classes),
        "params_json": json.dumps(run.params, indent=1, sort_keys=True),
        "slices_newest_first": sorted(
            (version.evaluation or {}).get("slices", []) if version else [],
            key=lambda row: row["period"],
            reverse=True,
        ),
    }
    template = "modeling/run.html"
    if request.htmx and request.GET.get("fragment") == "reproduction":
        template += "#reproduction"
    return render(request, template, context)


@login_required
@require_POST
def reproduce(request: HttpRequest, project_id: int, run_id: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    run = selectors.training_run_get(project=access.project, run_id=run_id)
    if run is None:
        raise Http404
    try:
        services.training_run_reproduce_request(run=run)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.info(
            request, f"Reproducing run {run.pk} in the worker; the result appears below when done."
        )
    return redirect(reverse("modeling:run", args=[access.project.pk, run.pk]) + "#reproduction")


@login_required
@require_GET
def compare_page(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    project = access.project
    versions = list(selectors.model_version_list(project=project)[:100])
    by_number = {v.number: v for v in versions}
    numbers: list[int | None] = []
    problems = []
    for key in ("a", "b"):
        raw = request.GET.get(key, "")
        try:
            numbers.append(int(raw))
        except ValueError:
            numbers.append(None)
            if raw:
                problems.append(f"{raw!r} is not a version number.")
    if numbers == [None, None] and len(versions) >= 2:
        numbers = [versions[1].number, versions[0].number]
    for number in numbers:
        if number is not None and number not in by_number:
            problems.append(f"Version {number} does not exist in this project.")
    if numbers[0] is not None and numbers[0] == numbers[1]:
        problems.append("Pick two different versions.")
    a, b = (None, None) if problems else (by_number.get(numbers[0]), by_number.get(numbers[1]))
    context: dict[str, Any] = {
        "project": project,
        "access": access,
        "versions": versions,
        "a": a,
        "b": b,
        "problems": problems,
        "objective": selectors.objective_current(project=project),
        "picked": numbers,
    }
    if a and b:
        objective = context["objective"]
        context["comparison"] = services.model_versions_compare(a=a, b=b, objective=objective)
        context["objective"] = objective
        curves_a = (a.evaluation or {}).get("curves")
        curves_b = (b.evaluation or {}).get("curves")
        names = (f"v{a.number}", f"v{b.number}")
        if curves_a and curves_b and curves_a.get("class") == curves_b.get("class"):
            context["roc"] = charts.roc_chart(curves_a, curves_b, names)
            context["pr"] = charts.pr_chart(curves_a, curves_b, names)
        context["slices"] = charts.slices_chart(
            [
                (n, rows)
                for n, rows in zip(names, context["comparison"]["slices"], strict=True)
                if rows
            ],
            objective.spec().describe(),
        )
    return render(request, "modeling/compare.html", context)
