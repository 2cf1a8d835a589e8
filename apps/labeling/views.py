"""The labeling screen, the import page and the label exports."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import replace_url, trigger_client_event

from apps.cases.columns import MappingError, file_preview
from apps.cases.importing import ImportRejected
from apps.cases.models import Case
from apps.cases.selectors import case_features_dict, case_get_in_project, import_batch_list
from apps.cases.services import upload_spool
from apps.features.selectors import derived_for_labeling
from apps.labeling import selectors, services
from apps.labeling.import_form import mapping_context, mapping_from_form
from apps.labeling.models import LabelKind, Lease, TaskKind
from apps.projects.ids import id_parse
from apps.projects.models import Role
from apps.projects.selectors import (
    ProjectAccess,
    membership_list,
    project_features,
    project_get_for_user,
)


def _case_context(
    access: ProjectAccess, user, case: Case | None, lease: Lease | None = None, **extra
) -> dict:
    project = access.project
    groups: dict[str, list[dict]] = {}
    prediction = None
    history = []
    if lease is not None and (case is None or lease.case_id != case.pk):
        lease = None  # a correction of another case: the held lease is not about this one
    task = lease.task if lease is not None and lease.task_id else None
    opinions = {}
    blind = blind_relabel = False
    seen_label_id = 0
    if case is not None:
        features = project_features(project=project)
        values = case_features_dict(case=case, features=features)
        for feature in features:
            groups.setdefault(feature.group or "Features", []).append(
                {"feature": feature, "value": values.get(feature.name)}
            )
        # Derived features the project shows clinicians, computed from this case's raw values,
        # in their group next to the raw ones ("Labs" joins "labs": headings are shown in
        # capitals, so nobody can see the difference when defining one).
        same_group = {name.strip().lower(): name for name in groups}
        for derived in derived_for_labeling(project=project, raw_values=values):
            group = derived["group"] or "Derived"
            group = same_group.get(group.strip().lower(), group)
            groups.setdefault(group, []).append(
                {"feature": derived, "value": derived["value"], "derived": True}
            )
        if project.show_predictions:
            prediction = selectors.case_score_get(case=case)
        # An overlap case is labeled blind: others' labels of it would make the second
        # opinion a copy of the first.
        blind = task is None and selectors.case_blind_for(case=case, user=user)
        # A relabel is a second look: the project may hide the label being questioned.
        blind_relabel = task is not None and task.kind == TaskKind.RELABEL and project.relabel_blind
        blind = blind or blind_relabel
        if not blind:
            history = list(selectors.label_history(case=case)[:5])
            seen_label_id = history[0].pk if history else 0
        else:
            history = list(selectors.label_history(case=case).filter(author=user)[:5])
            # The form still names the newest row, hidden or not: a label given since the page
            # was shown is then caught as stale, and the person's own is not mistaken for one.
            seen_label_id = selectors.label_newest_id(case=case)
        if task is not None and task.kind == TaskKind.ADJUDICATE:
            opinions = selectors.case_opinions(case_id=case.pk)
    return {
        "project": project,
        "access": access,
        "case": case,
        "lease": lease,
        "task": task,
        "opinions": opinions,
        "feature_groups": groups,
        "prediction": prediction,
        "history": history,
        "seen_label_id": seen_label_id,
        "blind": case is not None and blind,
        "blind_relabel": blind_relabel,
        "class_keys": list(enumerate(project.classes, start=1)),
        "progress": selectors.label_progress(project=project, user=user),
        "recent": selectors.label_recent_for_user(project=project, user=user, limit=5),
        "members": (
            [m.user.username for m in membership_list(project=project)]
            if case is not None and case.current_label and access.can_review and not blind
            else []
        ),
        **extra,
    }


def _case_panel(
    request: HttpRequest, access: ProjectAccess, case: Case | None, lease=None, **extra
):
    context = _case_context(access, request.user, case, lease, **extra)
    template = "labeling/label.html"
    if request.htmx:
        template += "#case-panel"
    return render(request, template, context)


def _next_panel(request: HttpRequest, access: ProjectAccess, **extra) -> HttpResponse:
    lease = services.queue_next(project=access.project, user=request.user, role=access.role)
    case = lease.case if lease is not None else None
    if case is not None:
        case.project = access.project
    return _queue_address(request, access, _case_panel(request, access, case, lease, **extra))


def _queue_address(request: HttpRequest, access: ProjectAccess, response: HttpResponse):
    """The page now shows the case the person holds: the address says so too, so that a reload
    after correcting a case (`?case=N`) opens the held case, not the corrected one again."""
    queue_url = reverse("labeling:label", args=[access.project.pk])
    if request.htmx and request.htmx.current_url_abs_path not in (None, queue_url):
        replace_url(response, queue_url)
    return response


def _case_in_project(access: ProjectAccess, case_id: int) -> Case:
    case = case_get_in_project(project=access.project, case_id=case_id)
    if case is None:
        raise Http404("No such case in this project")
    return case


@never_cache  # back and forward must not bring back a case already labeled
@login_required
@require_GET
def label_page(request: HttpRequest, project_id: int) -> HttpResponse:
    """The next case from the queue (under a lease), the task named by ?task=, or the case
    named by ?case= (to correct a label)."""
    access = project_get_for_user(user=request.user, project_id=project_id)
    if request.GET.get("case"):
        case_id = id_parse(request.GET["case"])
        if case_id is None:
            raise Http404("No such case in this project")
        case = _case_in_project(access, case_id)
        lease = selectors.lease_active_for(project=access.project, user=request.user)
        return _case_panel(request, access, case, lease)
    if request.GET.get("task"):
        task = None
        if (task_id := id_parse(request.GET["task"])) is not None:
            task = selectors.task_get(project=access.project, task_id=task_id)
        if task is None:
            raise Http404("No such task in this project")
        try:
            lease = services.task_claim(task=task, user=request.user, role=access.role)
        except ValidationError as error:
            return _next_panel(request, access, error=" ".join(error.messages))
        lease.case.project = access.project
        return _case_panel(request, access, lease.case, lease)
    return _next_panel(request, access)


@login_required
@require_POST
def label_submit(request: HttpRequest, project_id: int, case_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id)
    case = _case_in_project(access, case_id)
    value = request.POST.get("value", "")
    seen = request.POST.get("seen_label_id", "").strip()
    # 0: the page showed no label yet.
    seen_label_id = 0 if seen and not seen.strip("0") else id_parse(seen)
    sent_task = request.POST.get("task_id", "").strip()
    task_id = id_parse(sent_task)
    task = None
    if task_id is not None:
        task = selectors.task_get(project=access.project, task_id=task_id)
    try:
        if (seen and seen_label_id is None) or (sent_task and task_id is None):
            raise ValidationError("The page sent an id that is not one; reload it.")
        if task is not None:
            services.task_answer_check(task=task, user=request.user, role=access.role)
        label = services.label_record(
            case=case,
            value=value,
            author=request.user,
            seen_label_id=seen_label_id,
            task=task,
        )
    except services.StaleLabel as error:
        # Show the case as it is now; the next key press labels it again, knowingly.
        lease = selectors.lease_active_for(project=access.project, user=request.user)
        response = _case_panel(request, access, case, lease, error=" ".join(error.messages))
        response.status_code = 409
        return response
    except ValidationError as error:
        lease = selectors.lease_active_for(project=access.project, user=request.user)
        response = _case_panel(request, access, case, lease, error=" ".join(error.messages))
        response.status_code = 400
        return response
    verb = {
        LabelKind.RELABELED: "Relabeled",
        LabelKind.ADJUDICATED: "Adjudicated",
    }.get(label.kind, "Labeled")
    return _next_panel(request, access, notice=f"{verb} {case.external_id} as {label.value}.")


@login_required
@require_POST
def label_skip(request: HttpRequest, project_id: int, case_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id)
    case = _case_in_project(access, case_id)
    services.case_skip(case=case, user=request.user)
    return _next_panel(request, access, notice=f"Skipped {case.external_id}.")


@login_required
@require_POST
def label_undo(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(user=request.user, project_id=project_id)
    try:
        undo = services.label_undo_last(project=access.project, author=request.user)
    except ValidationError as error:
        return _next_panel(request, access, error=" ".join(error.messages))
    case = undo.case
    case.project = access.project
    lease = selectors.lease_active_for(project=access.project, user=request.user)
    # Undoing the answer to a blind relabel gives the task back, still blind: the value the
    # case went back to is the label in question.
    hidden = selectors.blind_relabel_held(case_id=case.pk, user=request.user)
    restored = f" (back to {undo.value})" if undo.value and not hidden else ""
    notice = f"Undid your label of {case.external_id}{restored}."
    return _queue_address(request, access, _case_panel(request, access, case, lease, notice=notice))


@login_required
@require_http_methods(["GET", "POST"])
def import_cases(request: HttpRequest, project_id: int) -> HttpResponse:
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    project = access.project
    context: dict = {"project": project, "access": access}
    status = 200
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            context["error"] = "Choose a CSV or Parquet file to import."
            status = 400
        else:
            try:
                result = _import_upload(
                    access, request.user, upload, mapping_from_form(request.POST)
                )
            except ImportRejected as rejected:
                context["rejected"] = rejected
                status = 400
            else:
                context["result"] = result
    context["batches"] = import_batch_list(project=project)[:10]
    context["features"] = project_features(project=project)
    template = "labeling/import.html"
    if request.htmx:
        template += "#import-result"
    response = render(request, template, context, status=status)
    if request.htmx and "result" in context:
        trigger_client_event(response, "casesImported")
    return response


def _import_upload(access: ProjectAccess, user, upload, mapping: dict | None = None):
    # Uploads are spooled to a named file so pyarrow can stream it in chunks.
    suffix = Path(upload.name or "upload").suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as spooled:
        upload_spool(chunks=upload.chunks(), destination=spooled)
        return services.cases_import(
            project=access.project,
            path=Path(spooled.name),
            filename=upload.name or "upload",
            imported_by=user,
            mapping=mapping,
        )


@login_required
@require_POST
def import_preview(request: HttpRequest, project_id: int) -> HttpResponse:
    """The mapping step, inside the import form: what Casebook makes of the chosen file's
    columns, with selects to change them; the form's Import button then sends file and mapping
    together (the browser keeps the chosen file, so nothing is stored in between)."""
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    upload = request.FILES.get("file")
    context: dict = {"project": access.project}
    status = 200
    if upload is None:
        context["error"] = "Choose a CSV or Parquet file first."
        status = 400
    else:
        suffix = Path(upload.name or "upload").suffix[:10]
        with tempfile.NamedTemporaryFile(suffix=suffix) as spooled:
            upload_spool(chunks=upload.chunks(), destination=spooled)
            try:
                preview = file_preview(
                    Path(spooled.name), upload.name or "upload", mapping_from_form(request.POST)
                )
            except ImportRejected as rejected:
                context["rejected"] = rejected
                status = 400
            except MappingError as error:
                context["error"] = str(error)
                status = 400
            else:
                context.update(mapping_context(preview, list(access.project.classes)))
    return render(request, "labeling/_import_mapping.html", context, status=status)


@login_required
@require_GET
def export_labels(request: HttpRequest, project_id: int, what: str, file_format: str):
    access = project_get_for_user(
        user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
    )
    try:
        body, content_type = services.labels_export(
            project=access.project, exported_by=request.user, what=what, file_format=file_format
        )
    except ValidationError as error:
        return HttpResponseBadRequest(error.messages[0])
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    filename = f"project-{access.project.pk}-{what}-{stamp}.{file_format}"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
