"""The REST API: one class per operation, each calling one access check and one service."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api import serializers as s
from apps.cases.columns import MappingError, file_preview
from apps.cases.importing import ImportRejected
from apps.cases.models import Case
from apps.cases.selectors import case_features_dict, case_get_in_project, case_list
from apps.cases.services import upload_spool
from apps.features import selectors as feature_selectors
from apps.features import services as feature_services
from apps.labeling import selectors as labeling_selectors
from apps.labeling import services as labeling_services
from apps.labeling.models import TaskKind
from apps.modeling import selectors as modeling_selectors
from apps.modeling import services as modeling_services
from apps.modeling.models import RunTrigger, TrainingRun
from apps.modeling.serving import NoProductionModel, predict
from apps.projects import services as project_services
from apps.projects.models import Membership, Project, Role
from apps.projects.selectors import (
    ProjectAccess,
    membership_list,
    membership_user,
    project_create_check,
    project_features,
    project_get_for_user,
    project_list_for_user,
)
from apps.projects.services import FeatureSpec
from apps.review import selectors as review_selectors
from apps.review import services as review_services
from apps.review.selectors import BoardFilters
from apps.worklists import selectors as worklist_selectors
from apps.worklists import services as worklist_services


def _case_out(case: Case, blind: bool = False) -> dict:
    """A case; `blind` hides its current label from someone who must label it independently."""
    return {
        "id": case.pk,
        "external_id": case.external_id,
        "occurred_at": case.occurred_at,
        "current_label": "" if blind else case.current_label,
        "features": case_features_dict(case=case),
    }


class ProjectListCreateApi(APIView):
    @extend_schema(responses=s.ProjectOut(many=True))
    def get(self, request: Request) -> Response:
        projects = project_list_for_user(user=request.user).prefetch_related("features")
        return Response(s.ProjectOut(projects, many=True).data)

    @extend_schema(request=s.ProjectCreateIn, responses={201: s.ProjectOut})
    def post(self, request: Request) -> Response:
        project_create_check(user=request.user)
        data = s.ProjectCreateIn(data=request.data)
        data.is_valid(raise_exception=True)
        features = [
            FeatureSpec(
                name=str(f.get("name", "")),
                unit=str(f.get("unit", "")),
                group=str(f.get("group", "")),
                description=str(f.get("description", "")),
            )
            for f in data.validated_data["features"]
        ]
        project = project_services.project_create(
            name=data.validated_data["name"],
            classes=data.validated_data["classes"],
            description=data.validated_data["description"],
            features=features,
            created_by=request.user,
        )
        return Response(s.ProjectOut(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=s.ProjectOut)
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id)
        return Response(s.ProjectOut(access.project).data)


class ProjectMemberApi(APIView):
    @extend_schema(responses=s.MemberOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.ADMIN)
        return Response(s.MemberOut(membership_list(project=access.project), many=True).data)

    @extend_schema(request=s.MemberIn, responses={201: s.MemberOut})
    def post(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = s.MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        membership = project_services.membership_set(
            project=access.project, changed_by=request.user, **data.validated_data
        )
        return Response(s.MemberOut(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.MemberRemoveIn,
        responses={204: None, 400: s.ErrorOut},
        description="Remove a member: the cases they hold go back to the queue, their tasks to "
        "the pool; their labels stay. The project's last admin cannot be removed.",
    )
    def delete(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.ADMIN)
        data = s.MemberRemoveIn(data=request.data)
        data.is_valid(raise_exception=True)
        labeling_services.member_remove(
            project=access.project,
            username=data.validated_data["username"],
            removed_by=request.user,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# A case file and, optionally, the mapping from its preview (apps/cases/columns.py).
CASE_FILE_REQUEST = {
    "multipart/form-data": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "mapping": {
                "type": "string",
                "description": "The mapping from the preview, as JSON (optional)",
            },
        },
        "required": ["file"],
    }
}


class CaseImportApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request=CASE_FILE_REQUEST,
        responses={201: s.ImportOut, 400: s.ImportErrorOut},
    )
    def post(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )

        def store(path: Path, filename: str, mapping: object) -> Response:
            result = labeling_services.cases_import(
                project=access.project,
                path=path,
                filename=filename,
                imported_by=request.user,
                mapping=mapping,
            )
            body = {
                "imported": result.imported,
                "labels": result.labels,
                "import_batch": result.batch.pk,
                "ignored_columns": result.ignored_columns,
            }
            return Response(body, status=status.HTTP_201_CREATED)

        return _with_upload(request, store)


def _with_upload(request: Request, work) -> Response:
    """`work(path, filename, mapping)` on the request's uploaded `file`, spooled to disk, with
    its optional JSON `mapping`; a missing file, bad JSON, a mapping that does not fit the file
    or a rejected file answer 400 naming the problem."""
    upload = request.FILES.get("file")
    if upload is None:
        return _refused("Send the file as multipart field 'file'.")
    try:
        mapping = json.loads(request.data.get("mapping") or "null")
    except ValueError as error:
        return _refused(f"mapping is not JSON: {error}")
    with tempfile.NamedTemporaryFile(suffix=Path(upload.name or "").suffix[:10]) as spooled:
        try:
            upload_spool(chunks=upload.chunks(), destination=spooled)
            return work(Path(spooled.name), upload.name or "upload", mapping)
        except ImportRejected as rejected:
            body = {
                "detail": rejected.summary(),
                "errors": [issue.as_dict() for issue in rejected.issues],
                "more_errors": rejected.more,
            }
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        except MappingError as error:
            return _refused(str(error))


class CaseImportPreviewApi(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request=CASE_FILE_REQUEST,
        responses={200: s.ImportPreviewOut, 400: s.ImportErrorOut},
    )
    def post(self, request: Request, project_id: int) -> Response:
        """What Casebook makes of a file's columns (types, roles, problems) and the mapping an
        import would use, with `mapping`'s choices applied. Stores nothing."""
        project_get_for_user(user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST)
        return _with_upload(
            request, lambda path, filename, mapping: Response(file_preview(path, filename, mapping))
        )


def _refused(detail: str) -> Response:
    return Response({"detail": detail, "errors": []}, status=status.HTTP_400_BAD_REQUEST)


class QueueNextApi(APIView):
    @extend_schema(
        responses={200: s.QueueNextOut, 204: OpenApiResponse(description="Nothing waiting")},
        description="Hand the caller their next case under a lease: the case they hold, "
        "else their open tasks, else the queue's next case. Calling again before labeling, "
        "skipping or releasing returns the same case.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id)
        lease = labeling_services.queue_next(
            project=access.project, user=request.user, role=access.role
        )
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        if lease.task_id is None:
            blind = labeling_selectors.case_blind_for(case=lease.case, user=request.user)
        else:
            blind = lease.task.kind == TaskKind.RELABEL and access.project.relabel_blind
        return Response({**_case_out(lease.case, blind), "lease": s.LeaseOut(lease).data})


class QueueReleaseApi(APIView):
    @extend_schema(request=None, responses={200: s.LeaseOut, 204: None})
    def post(self, request: Request, project_id: int) -> Response:
        """Give back the case the caller holds, without labeling or skipping it."""
        access = project_get_for_user(user=request.user, project_id=project_id)
        lease = labeling_services.lease_release(project=access.project, user=request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.LeaseOut(lease).data)


def _settings_out(queue_settings) -> dict:
    return s.QueueSettingsOut(queue_settings).data


class QueueSettingsApi(APIView):
    @extend_schema(responses=s.QueueSettingsOut)
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        queue_settings = labeling_selectors.queue_settings_current(project_id=access.project.pk)
        return Response(_settings_out(queue_settings))

    @extend_schema(request=s.QueueSettingsIn, responses=s.QueueSettingsOut)
    def put(self, request: Request, project_id: int) -> Response:
        """Record a new version of the queue settings; the worker re-ranks the queue."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        data = s.QueueSettingsIn(data=request.data)
        data.is_valid(raise_exception=True)
        queue_settings = labeling_services.queue_settings_change(
            project=access.project, changed_by=request.user, **data.validated_data
        )
        return Response(_settings_out(queue_settings))


class AgreementApi(APIView):
    @extend_schema(responses=s.AgreementOut)
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        agreement = labeling_selectors.label_agreement(project=access.project)
        return Response(s.AgreementOut(agreement).data)


class TaskListCreateApi(APIView):
    @extend_schema(responses=s.TaskOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        status_filter = request.query_params.get("status", "open")
        tasks = labeling_selectors.task_list(
            project=access.project, status=None if status_filter == "all" else status_filter
        )[:500]
        return Response(s.TaskOut(tasks, many=True).data)

    @extend_schema(request=s.TaskIn, responses={201: s.TaskOut})
    def post(self, request: Request, project_id: int) -> Response:
        """Ask for a case to be relabeled (or adjudicated), by one member or by the pool."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        data = s.TaskIn(data=request.data)
        data.is_valid(raise_exception=True)
        case = case_get_in_project(project=access.project, case_id=data.validated_data["case"])
        if case is None:
            raise Http404("No such case in this project")
        assignee = None
        if data.validated_data.get("assignee"):
            assignee = membership_user(
                project=access.project, username=data.validated_data["assignee"]
            )
            if assignee is None:
                raise DjangoValidationError(
                    {"assignee": f"{data.validated_data['assignee']} is not a member."}
                )
        task = labeling_services.task_open(
            case=case,
            kind=data.validated_data["kind"],
            created_by=request.user,
            reason=data.validated_data["reason"],
            assignee=assignee,
        )
        return Response(s.TaskOut(task).data, status=status.HTTP_201_CREATED)


def _case_for_user(request: Request, case_id: int) -> tuple[Case, ProjectAccess]:
    """The case and the caller's access to its project, in one statement (the label submit
    starts here); 404 for a case of a project they are not a member of, as for no case."""
    found = list(
        Case.objects.raw(
            f"SELECT c.*, m.role AS member_role, p.name AS project_name,"
            f" p.classes AS project_classes FROM {Case._meta.db_table} c"
            f" JOIN {Project._meta.db_table} p ON p.id = c.project_id"
            f" JOIN {Membership._meta.db_table} m ON m.project_id = p.id AND m.user_id = %s"
            f" WHERE c.id = %s",
            [request.user.pk, case_id],
        )
    )
    if not found:
        raise Http404("No such case")
    case = found[0]
    classes = case.project_classes
    # The JSON column comes back as text from a raw query.
    case.project = Project(
        pk=case.project_id,
        name=case.project_name,
        classes=json.loads(classes) if isinstance(classes, str) else classes,
    )
    return case, ProjectAccess(project=case.project, role=case.member_role)


class CaseLabelApi(APIView):
    @extend_schema(responses=s.LabelOut(many=True))
    def get(self, request: Request, case_id: int) -> Response:
        case, _ = _case_for_user(request, case_id)
        history = labeling_selectors.label_history(case=case)
        if labeling_selectors.case_labels_hidden_for(case=case, user=request.user):
            # An independent label still to give, or a blind relabel held: others' labels
            # stay hidden until you give yours.
            history = history.filter(author=request.user)
        return Response(s.LabelOut(history, many=True).data)

    @extend_schema(
        request=s.LabelIn,
        responses={
            201: s.LabelOut,
            409: OpenApiResponse(s.ErrorOut, description="Labeled since `seen_label_id`"),
        },
    )
    def post(self, request: Request, case_id: int) -> Response:
        case, access = _case_for_user(request, case_id)
        data = s.LabelIn(data=request.data)
        data.is_valid(raise_exception=True)
        task = None
        if "task_id" in data.validated_data:
            task = labeling_selectors.task_get(
                project=case.project, task_id=data.validated_data["task_id"]
            )
            if task is None:
                raise Http404("No such task in this project")
            labeling_services.task_answer_check(task=task, user=request.user, role=access.role)
        label = labeling_services.label_record(
            case=case,
            value=data.validated_data["value"],
            author=request.user,
            note=data.validated_data["note"],
            seen_label_id=data.validated_data.get("seen_label_id"),
            task=task,
        )
        return Response(s.LabelOut(label).data, status=status.HTTP_201_CREATED)


class CaseSkipApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, case_id: int) -> Response:
        case, _ = _case_for_user(request, case_id)
        labeling_services.case_skip(case=case, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TrainingRunListCreateApi(APIView):
    @extend_schema(responses=s.TrainingRunOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id)
        runs = modeling_selectors.training_run_list(project=access.project)[:100]
        return Response(s.TrainingRunOut(runs, many=True).data)

    @extend_schema(request=None, responses={202: s.TrainingRunOut})
    def post(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        run, created = modeling_services.training_run_request(
            project=access.project, trigger=RunTrigger.API, requested_by=request.user
        )
        body = s.TrainingRunOut(run).data
        body["created"] = created
        return Response(body, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailApi(APIView):
    @extend_schema(responses=s.TrainingRunOut)
    def get(self, request: Request, run_id: int) -> Response:
        project_id = (
            TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
        )
        if project_id is None:
            raise Http404("No such training run")
        access = project_get_for_user(user=request.user, project_id=project_id)
        run = modeling_selectors.training_run_get(project=access.project, run_id=run_id)
        return Response(s.TrainingRunOut(run).data)


def _production_id(project: Project) -> int | None:
    deployment = modeling_selectors.deployment_current(project=project)
    return deployment.model_version_id if deployment else None


class ModelVersionListApi(APIView):
    @extend_schema(responses=s.ModelVersionOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id)
        versions = modeling_selectors.model_version_list(project=access.project)
        context = {"production_id": _production_id(access.project)}
        return Response(s.ModelVersionOut(versions, many=True, context=context).data)


def _version_or_404(project: Project, number: int):
    version = modeling_selectors.model_version_get(project=project, number=number)
    if version is None:
        raise Http404("No such model version in this project")
    return version


class ModelVersionDetailApi(APIView):
    @extend_schema(responses=s.ModelVersionDetailOut)
    def get(self, request: Request, project_id: int, number: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        version = _version_or_404(access.project, number)
        context = {"production_id": _production_id(access.project)}
        return Response(s.ModelVersionDetailOut(version, context=context).data)


class ModelVersionDeployApi(APIView):
    @extend_schema(request=s.DeployIn, responses={201: s.DeploymentOut})
    def post(self, request: Request, project_id: int, number: int) -> Response:
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        version = _version_or_404(access.project, number)
        data = s.DeployIn(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = modeling_services.model_version_deploy(
            version=version, deployed_by=request.user, note=data.validated_data["note"]
        )
        return Response(s.DeploymentOut(deployment).data, status=status.HTTP_201_CREATED)


class RollbackApi(APIView):
    @extend_schema(request=s.RollbackIn, responses={201: s.DeploymentOut})
    def post(self, request: Request, project_id: int) -> Response:
        """Back to the version that served before the current one, or to `to_version`."""
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        data = s.RollbackIn(data=request.data)
        data.is_valid(raise_exception=True)
        number = data.validated_data["to_version"]
        deployment = modeling_services.model_version_rollback(
            project=access.project,
            deployed_by=request.user,
            to_version=_version_or_404(access.project, number) if number else None,
            note=data.validated_data["note"],
        )
        return Response(s.DeploymentOut(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentListApi(APIView):
    @extend_schema(responses=s.DeploymentOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        deployments = modeling_selectors.deployment_history(project=access.project)[:100]
        return Response(s.DeploymentOut(deployments, many=True).data)


class PredictApi(APIView):
    @extend_schema(
        request=s.PredictIn,
        responses={
            200: s.PredictOut,
            409: OpenApiResponse(s.ErrorOut, description="No model in production"),
        },
    )
    def post(self, request: Request, project_id: int) -> Response:
        """Predict stored cases (`case_ids`) or new ones (`cases`: feature values by name) with
        the production model. The answer names the version that made every prediction in it."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        data = s.PredictIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            answer = predict(
                project=access.project,
                case_ids=data.validated_data.get("case_ids"),
                rows=data.validated_data.get("cases"),
            )
        except NoProductionModel as error:
            return Response({"detail": str(error), "errors": {}}, status=status.HTTP_409_CONFLICT)
        return Response(
            {
                "model_version": answer.version.number,
                "deployment": answer.deployment.pk,
                "predictions": answer.rows,
            }
        )


class ObjectiveApi(APIView):
    @extend_schema(responses=s.ObjectiveOut)
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        return Response(
            s.ObjectiveOut(modeling_selectors.objective_current(project=access.project)).data
        )

    @extend_schema(request=s.ObjectiveIn, responses={201: s.ObjectiveOut})
    def put(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        data = s.ObjectiveIn(data=request.data)
        data.is_valid(raise_exception=True)
        objective = modeling_services.objective_change(
            project=access.project, changed_by=request.user, **data.validated_data
        )
        return Response(s.ObjectiveOut(objective).data, status=status.HTTP_201_CREATED)


class TrainingConfigApi(APIView):
    @extend_schema(responses=s.TrainingConfigOut)
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        config = modeling_selectors.training_config_current(project=access.project)
        return Response(s.TrainingConfigOut(config).data)

    @extend_schema(request=s.TrainingConfigIn, responses={201: s.TrainingConfigOut})
    def put(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        data = s.TrainingConfigIn(data=request.data)
        data.is_valid(raise_exception=True)
        config = modeling_services.training_config_change(
            project=access.project, changed_by=request.user, **data.validated_data
        )
        return Response(s.TrainingConfigOut(config).data, status=status.HTTP_201_CREATED)


class AlertListApi(APIView):
    @extend_schema(responses=s.AlertOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        alerts = modeling_selectors.project_alerts(project=access.project)
        return Response(s.AlertOut(alerts, many=True).data)


class TrainingRunReproduceApi(APIView):
    @extend_schema(request=None, responses={202: s.TrainingRunOut})
    def post(self, request: Request, run_id: int) -> Response:
        """Retrain the run from its snapshot in the worker; poll the run for `reproduction`."""
        project_id = (
            TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
        )
        if project_id is None:
            raise Http404("No such training run")
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        run = modeling_selectors.training_run_get(project=access.project, run_id=run_id)
        modeling_services.training_run_reproduce_request(run=run)
        run.refresh_from_db()
        return Response(s.TrainingRunOut(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunCancelApi(APIView):
    @extend_schema(
        request=None,
        responses={
            200: s.TrainingRunOut,
            409: OpenApiResponse(s.ErrorOut, description="The run had already ended"),
        },
    )
    def post(self, request: Request, run_id: int) -> Response:
        """Cancel a queued or running run: its worker stops within seconds and stores nothing;
        the project can be trained again at once."""
        project_id = (
            TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
        )
        if project_id is None:
            raise Http404("No such training run")
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        run = modeling_selectors.training_run_get(project=access.project, run_id=run_id)
        if not modeling_services.training_run_cancel(run=run, user=request.user):
            return Response(
                {
                    "detail": f"Run {run.pk} is {run.status}: only a queued or running run can be "
                    "cancelled.",
                    "errors": {},
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(s.TrainingRunOut(run).data)


class LabelIssueListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, description="issues (default), misclassified or all"),
            OpenApiParameter("given", str),
            OpenApiParameter("suggested", str),
            OpenApiParameter("max_quality", float),
            OpenApiParameter("min_confidence", float),
            OpenApiParameter("max_confidence", float),
            OpenApiParameter("annotator", str, description="username"),
            OpenApiParameter("month", str, description="YYYY-MM of the case"),
            OpenApiParameter(
                "version", int, description="whose verdicts: a model version (default production)"
            ),
            OpenApiParameter("after", str, description="next_after of the previous page"),
            OpenApiParameter("limit", int, description="1-500, default 50"),
        ],
        responses=s.LabelIssuePageOut,
    )
    def get(self, request: Request, project_id: int) -> Response:
        """Likely label errors (confident learning on out-of-sample probabilities), most
        likely wrong first, filtered and paged by keyset.

        Feature ranges: `min.<feature>` and `max.<feature>` for any feature of the project,
        e.g. `min.age=60&max.ejection_fraction=30`. They include their bounds; a missing value
        never matches. (Not listed as parameters: their names depend on the project.)"""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        filters = BoardFilters.from_query(
            request.query_params,
            features=review_selectors.board_features(project=access.project),
        )
        try:
            limit = min(500, max(1, int(request.query_params.get("limit", 50))))
        except ValueError:
            filters.errors.append("limit is not a number.")
            limit = 50
        if filters.errors:
            return Response(
                {"detail": filters.errors[0], "errors": {"query": filters.errors}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        # The board's verdicts: production's, or those of `version`.
        board = review_selectors.label_issue_board(project=access.project, number=filters.version)
        computation = board.computation
        if filters.version is not None and (
            computation is None or computation.model_version.number != filters.version
        ):
            # The page falls back and says so; an API client would not notice the swap.
            return Response(
                {"detail": board.note or f"Version {filters.version} has no verdicts."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        rows, following = review_selectors.label_issue_page(
            project=access.project, filters=filters, limit=limit, computation=computation
        )
        count, exact = review_selectors.label_issue_total(
            project=access.project, filters=filters, computation=computation
        )
        body = {
            "count": count,
            "count_exact": exact,
            "next_after": f"{following[0]!r},{following[1]}" if following else None,
            "results": s.LabelIssueOut(rows, many=True).data,
        }
        return Response(body)


class CaseCommentApi(APIView):
    @extend_schema(responses=s.CommentOut(many=True))
    def get(self, request: Request, case_id: int) -> Response:
        """A case's discussion, oldest first (empty while the caller labels it blind)."""
        case, _ = _case_for_user(request, case_id)
        project = Project.objects.get(pk=case.project_id)  # the raw case carries a partial one
        if review_selectors.discussion_hidden(case=case, user=request.user, project=project):
            return Response([])
        return Response(
            s.CommentOut(review_selectors.comment_thread(case_id=case.pk), many=True).data
        )

    @extend_schema(request=s.CommentIn, responses={201: s.CommentOut})
    def post(self, request: Request, case_id: int) -> Response:
        """Comment on a case; @name mentions must be members of the project."""
        case, _ = _case_for_user(request, case_id)
        data = s.CommentIn(data=request.data)
        data.is_valid(raise_exception=True)
        comment = review_services.comment_add(
            case=case, author=request.user, body=data.validated_data["body"]
        )
        return Response(s.CommentOut(comment).data, status=status.HTTP_201_CREATED)


class MentionListApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("unseen", bool, description="only those not yet seen")],
        responses=s.MentionOut(many=True),
    )
    def get(self, request: Request) -> Response:
        unseen = request.query_params.get("unseen") in ("1", "true", "yes")
        found = review_selectors.mentions_for(user=request.user, unseen_only=unseen)
        return Response(s.MentionOut(found, many=True).data)


def _worklist_or_404(request: Request, project_id: int, worklist_id: int):
    access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
    worklist = worklist_selectors.worklist_get(project=access.project, worklist_id=worklist_id)
    if worklist is None:
        raise Http404("No such worklist")
    return worklist


class WorklistListCreateApi(APIView):
    @extend_schema(responses=s.WorklistOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        worklists = worklist_selectors.worklist_list(project=access.project)[:200]
        return Response(s.WorklistOut(worklists, many=True).data)

    @extend_schema(request=s.WorklistIn, responses={201: s.WorklistDetailOut})
    def post(self, request: Request, project_id: int) -> Response:
        """The production model's top `size` cases by risk of `risk_class`, frozen."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        data = s.WorklistIn(data=request.data)
        data.is_valid(raise_exception=True)
        worklist = worklist_services.worklist_create(
            project=access.project, created_by=request.user, **data.validated_data
        )
        return Response(s.WorklistDetailOut(worklist).data, status=status.HTTP_201_CREATED)


class WorklistDetailApi(APIView):
    @extend_schema(responses=s.WorklistDetailOut)
    def get(self, request: Request, project_id: int, worklist_id: int) -> Response:
        """A worklist's cases in the model's order."""
        worklist = _worklist_or_404(request, project_id, worklist_id)
        return Response(s.WorklistDetailOut(worklist).data)


class RerankSessionApi(APIView):
    @extend_schema(responses=s.RerankSessionOut)
    def get(self, request: Request, project_id: int, worklist_id: int) -> Response:
        """Your reranking of the worklist (begun in the model's order if you had none)."""
        worklist = _worklist_or_404(request, project_id, worklist_id)
        session = worklist_services.rerank_session_start(worklist=worklist, reviewer=request.user)
        return Response(s.RerankSessionOut(session).data)

    @extend_schema(
        request=s.RerankOrderIn,
        responses={
            200: s.RerankSessionOut,
            409: OpenApiResponse(s.ErrorOut, description="Saved since `revision`"),
        },
    )
    def put(self, request: Request, project_id: int, worklist_id: int) -> Response:
        """Save your order (every case once). With `revision`, a save from an out-of-date
        copy is refused with 409 and the stored order kept."""
        worklist = _worklist_or_404(request, project_id, worklist_id)
        data = s.RerankOrderIn(data=request.data)
        data.is_valid(raise_exception=True)
        session = worklist_services.rerank_session_start(worklist=worklist, reviewer=request.user)
        session = worklist_services.rerank_order_save(
            session=session,
            order=data.validated_data["order"],
            revision=data.validated_data["revision"],
        )
        if data.validated_data["finished"]:
            session = worklist_services.rerank_session_finish(session=session)
        return Response(s.RerankSessionOut(session).data)


class JudgmentCreateApi(APIView):
    @extend_schema(request=s.JudgmentIn, responses={201: s.JudgmentOut})
    def post(self, request: Request, project_id: int, worklist_id: int) -> Response:
        """Judge a case of the worklist; the newest judgment is the one in force."""
        worklist = _worklist_or_404(request, project_id, worklist_id)
        data = s.JudgmentIn(data=request.data)
        data.is_valid(raise_exception=True)
        session = worklist_services.rerank_session_start(worklist=worklist, reviewer=request.user)
        judgment = worklist_services.judgment_record(session=session, **data.validated_data)
        return Response(s.JudgmentOut(judgment).data, status=status.HTTP_201_CREATED)


class WorklistAgreementApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("k", int, description="cut-off of NDCG and precision")],
        responses=s.AgreementFiguresOut,
    )
    def get(self, request: Request, project_id: int) -> Response:
        """NDCG@k, Kendall's tau and precision@k of "actionable" per model version, per
        reviewer's session, and Kendall's tau between reviewers of the same worklist."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        try:
            k = min(200, max(1, int(request.query_params.get("k", 10))))
        except ValueError:
            return Response(
                {"detail": "k is not a number.", "errors": {"k": ["k is not a number."]}},
                status=status.HTTP_400_BAD_REQUEST,
            )
        figures = worklist_selectors.agreement(project=access.project, k=k)
        return Response(s.AgreementFiguresOut(figures).data)


class PreferencePairsApi(APIView):
    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(description="CSV of pairs")})
    def get(self, request: Request, project_id: int):
        """Pairwise preferences from every reviewer's order, for learning to rank (CSV)."""
        from django.http import StreamingHttpResponse

        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        response = StreamingHttpResponse(
            worklist_services.preference_pairs_export(
                project=access.project, exported_by=request.user
            ),
            content_type="text/csv",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="project-{access.project.pk}-preference-pairs.csv"'
        )
        return response


class DerivedProjectApi(APIView):
    @extend_schema(request=s.DerivedProjectIn, responses={201: s.ProjectOut})
    def post(self, request: Request, project_id: int) -> Response:
        """A new project of the same cases, labeled by the worklist judgments (actionable or
        not), to train a model of what needs action."""
        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        data = s.DerivedProjectIn(data=request.data)
        data.is_valid(raise_exception=True)
        derived = worklist_services.derived_project_create(
            source=access.project, created_by=request.user, **data.validated_data
        )
        return Response(s.ProjectOut(derived).data, status=status.HTTP_201_CREATED)


class CaseListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("label", str, description="current label is this class"),
            OpenApiParameter("labeled", bool, description="only labeled (true) or unlabeled"),
            OpenApiParameter("occurred_from", str, description="ISO 8601, inclusive"),
            OpenApiParameter("occurred_to", str, description="ISO 8601, exclusive"),
            OpenApiParameter("external_id", str),
            OpenApiParameter("limit", int, description="page size, default 50, at most 500"),
            OpenApiParameter("offset", int),
        ],
        responses=s.CasePageOut,
    )
    def get(self, request: Request, project_id: int) -> Response:
        """The project's cases in import order, with their features and current label,
        filtered and paged (limit/offset)."""
        from rest_framework.pagination import LimitOffsetPagination

        from apps.cases.filters import CaseFilter

        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        found = CaseFilter(request.query_params, queryset=case_list(project=access.project))
        if not found.is_valid():
            raise DjangoValidationError(
                {name: [str(e) for e in errors] for name, errors in found.errors.items()}
            )
        pager = LimitOffsetPagination()
        pager.max_limit = 500
        page = pager.paginate_queryset(found.qs, request, view=self)
        features = project_features(project=access.project)
        results = [
            {
                "id": case.pk,
                "external_id": case.external_id,
                "occurred_at": case.occurred_at,
                "current_label": case.current_label,
                "features": case_features_dict(case=case, features=features),
            }
            for case in page
        ]
        return pager.get_paginated_response(s.CaseOut(results, many=True).data)


class LabelExportApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "what",
                str,
                enum=["labels", "history"],
                description="labels (one row per case, the default) or history",
            ),
            OpenApiParameter(
                "format", str, enum=["csv", "parquet"], description="csv (default) or parquet"
            ),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="the file"),
            (200, "application/vnd.apache.parquet"): OpenApiResponse(
                OpenApiTypes.BINARY, description="the file"
            ),
        },
    )
    def get(self, request: Request, project_id: int):
        """Download the current labels or the whole label history (data scientists; the export
        is in the audit log)."""
        from django.http import HttpResponse

        access = project_get_for_user(
            user=request.user, project_id=project_id, role=Role.DATA_SCIENTIST
        )
        what = request.query_params.get("what", "labels")
        file_format = request.query_params.get("format", "csv")
        body, content_type = labeling_services.labels_export(
            project=access.project, exported_by=request.user, what=what, file_format=file_format
        )
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="project-{access.project.pk}-{what}.{file_format}"'
        )
        return response


def _derived_feature(access: ProjectAccess, feature_id: int):
    feature = feature_selectors.derived_feature_get(project=access.project, feature_id=feature_id)
    if feature is None:
        raise Http404("No such derived feature")
    feature.project = access.project
    return feature


def _saved(feature, version) -> dict:
    return {
        "feature": s.DerivedFeatureOut(feature).data,
        "feature_set": s.FeatureSetVersionOut(version).data,
    }


class DerivedFeatureListCreateApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("retired", bool, description="1: the retired ones")],
        responses=s.DerivedFeatureOut(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        """The derived features in force, in the order they were defined (any member)."""
        access = project_get_for_user(user=request.user, project_id=project_id)
        retired = request.query_params.get("retired", "") in ("1", "true")
        features = feature_selectors.derived_feature_list(project=access.project, retired=retired)
        return Response(s.DerivedFeatureOut(features, many=True).data)

    @extend_schema(request=s.DerivedFeatureIn, responses={201: s.DerivedFeatureSavedOut})
    def post(self, request: Request, project_id: int) -> Response:
        """Define a derived feature (reviewers): refused with the reason (and the position in
        the expression) when it cannot be computed or gives no usable values."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        data = s.DerivedFeatureIn(data=request.data)
        data.is_valid(raise_exception=True)
        feature, version = feature_services.derived_feature_create(
            project=access.project, created_by=request.user, **data.validated_data
        )
        return Response(_saved(feature, version), status=status.HTTP_201_CREATED)


class DerivedFeatureDetailApi(APIView):
    @extend_schema(responses=s.DerivedFeatureOut)
    def get(self, request: Request, project_id: int, feature_id: int) -> Response:
        access = project_get_for_user(user=request.user, project_id=project_id)
        return Response(s.DerivedFeatureOut(_derived_feature(access, feature_id)).data)

    @extend_schema(request=s.DerivedFeatureChangeIn, responses={200: s.DerivedFeatureSavedOut})
    def patch(self, request: Request, project_id: int, feature_id: int) -> Response:
        """Change a derived feature in force (reviewers); model versions already trained keep
        the definition they were trained with."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        feature = _derived_feature(access, feature_id)
        data = s.DerivedFeatureChangeIn(data=request.data)
        data.is_valid(raise_exception=True)
        version = feature_services.derived_feature_change(
            feature=feature, changed_by=request.user, **data.validated_data
        )
        return Response(_saved(feature, version))


class DerivedFeatureRetireApi(APIView):
    @extend_schema(request=s.DerivedFeatureRetireIn, responses={200: s.DerivedFeatureSavedOut})
    def post(self, request: Request, project_id: int, feature_id: int) -> Response:
        """Retire a derived feature (reviewers): new runs no longer use it; model versions
        trained with it keep computing it."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        feature = _derived_feature(access, feature_id)
        data = s.DerivedFeatureRetireIn(data=request.data)
        data.is_valid(raise_exception=True)
        version = feature_services.derived_feature_retire(
            feature=feature, retired_by=request.user, note=data.validated_data["note"]
        )
        return Response(_saved(feature, version))


class DerivedFeaturePreviewApi(APIView):
    @extend_schema(request=s.DerivedFeaturePreviewIn, responses=s.DerivedFeaturePreviewOut)
    def post(self, request: Request, project_id: int) -> Response:
        """Try an expression on a sample of the project's cases without saving it (reviewers):
        values for a few cases, the distribution, and what is wrong (with the position)."""
        access = project_get_for_user(user=request.user, project_id=project_id, role=Role.REVIEWER)
        data = s.DerivedFeaturePreviewIn(data=request.data)
        data.is_valid(raise_exception=True)
        replacing = None
        if data.validated_data.get("feature_id"):
            replacing = _derived_feature(access, data.validated_data["feature_id"]).name
        preview = feature_selectors.derived_preview(
            project=access.project,
            expression=data.validated_data["expression"],
            replacing=replacing,
        )
        return Response(s.DerivedFeaturePreviewOut(preview.to_dict()).data)


class FeatureSetListApi(APIView):
    @extend_schema(responses=s.FeatureSetVersionOut(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        """The feature-set versions, newest first, each with every definition in force (any
        member)."""
        access = project_get_for_user(user=request.user, project_id=project_id)
        versions = feature_selectors.feature_set_list(project=access.project)[:200]
        return Response(s.FeatureSetVersionOut(versions, many=True).data)
