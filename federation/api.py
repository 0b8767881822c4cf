"""REST API of the federation app: one APIView per operation; selectors scope, services write."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from portal.api import AuthRateThrottle
from portal.api_errors import ServiceError
from portal.models import Hospital
from portal.permissions import IsHospitalStaff

from . import selectors, services
from .models import FederatedTask, Participant

ErrorSerializer = inline_serializer(
    "FederationError", {"error": inline_serializer("FederationErrorBody", {"code": serializers.CharField(), "message": serializers.CharField()})}
)


def participant_payload(p: Participant) -> dict:
    return {
        "id": p.pk, "client_id": p.client_id, "hospital": {"code": p.hospital.code, "name": p.hospital.name},
        "status": p.status, "label_statistics": p.label_statistics,
        "datasets": [d.rsplit("/", 1)[-1] for d in p.datasets],  # names only: paths stay on the hospital's node
        "node": {"status": p.node_status or None, "status_at": p.node_status_at.isoformat() if p.node_status_at else None,
                 "online": p.node_is_online()},
    }


def round_payload(r) -> dict:
    return {
        "round_number": r.round_number, "metrics": r.metrics, "timing": r.timing, "details": r.details,
        "num_examples": r.num_examples, "global_sha256": r.global_sha256,
        "completed_at": r.completed_at.isoformat(),
        "clients": [
            {"client_id": u.participant.client_id, "status": u.status, "num_examples": u.num_examples, "metrics": u.metrics,
             "reputation": u.reputation, "shapley": u.shapley, "epochs": u.epochs}
            for u in r.updates.all()
        ],
    }


def task_payload(task: FederatedTask, *, detail: bool = False) -> dict:
    data = {
        "id": task.pk, "name": task.name, "owner_hospital": task.owner_hospital.code, "status": task.status,
        "strategy": task.strategy, "architecture": task.architecture, "rounds": task.rounds,
        "local_epochs": task.local_epochs, "min_clients": task.min_clients, "current_round": task.current_round,
        "secure_aggregation": task.secure_aggregation, "differential_privacy": task.differential_privacy,
        "dp_clipping_norm": task.dp_clipping_norm, "dp_epsilon": task.dp_epsilon, "dp_delta": task.dp_delta,
        "label_table": task.label_table, "error": task.error,
        "registered_model": task.registered_model_id, "url": reverse("federation:task-detail", args=[task.pk]),
        "created_at": task.created_at.isoformat(),
    }
    if detail:
        data["participants"] = [participant_payload(p) for p in task.participant_list]
        data["rounds_completed"] = [round_payload(r) for r in task.round_list]
        credits = services.contribution_credits(task=task)
        data["ledger_verified"] = credits["verified"]
        data["credits"] = credits["credits"]
    return data


def _task_fields() -> dict:
    return {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "status": serializers.CharField(),
        "strategy": serializers.CharField(), "current_round": serializers.IntegerField(), "url": serializers.CharField(),
    }


TaskSerializer = inline_serializer("FederatedTask", _task_fields())


class TaskListCreateApi(APIView):
    """List visible federated tasks; create one (hospital staff: annotators, doctors, hospital admins).

    The owner hospital may name some of its own datasets to train on and another held out for validation.
    """

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FederatedTaskCreate"

        name = serializers.CharField(max_length=200)
        architecture = serializers.ChoiceField(choices=FederatedTask.Architecture.choices, default="unet")
        label_table = serializers.ListField(child=serializers.DictField(), allow_empty=False)
        rounds = serializers.IntegerField(min_value=1, max_value=50)
        local_epochs = serializers.IntegerField(min_value=1, max_value=10)
        min_clients = serializers.IntegerField(min_value=1, default=2)
        strategy = serializers.ChoiceField(choices=FederatedTask.Strategy.choices, default="fedavg")
        secure_aggregation = serializers.BooleanField(default=False)
        differential_privacy = serializers.BooleanField(default=False)
        dp_clipping_norm = serializers.FloatField(required=False, allow_null=True, min_value=0.0)
        dp_epsilon = serializers.FloatField(required=False, allow_null=True, min_value=0.0)
        dp_delta = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
        invite = serializers.ListField(child=serializers.SlugField(), default=list, help_text="hospital codes")
        datasets = serializers.ListField(
            child=serializers.CharField(max_length=200), default=list,
            help_text="names of the owner hospital's datasets (GET /api/federation/invitations/ lists them) that it "
                      "trains on; none: the owner hospital only coordinates",
        )
        validation_dataset = serializers.CharField(
            max_length=200, required=False, allow_blank=True,
            help_text="one of the owner hospital's datasets held out for validation (RTIFed's Shapley contributions "
                      "need it)",
        )

        def validate(self, attrs):
            if attrs.get("validation_dataset") and attrs.get("validation_dataset") in attrs.get("datasets", []):
                raise serializers.ValidationError(
                    {"validation_dataset": _("The validation set must not be the dataset the hospital trains on.")})
            return attrs

    @extend_schema(responses={200: inline_serializer("FederatedTaskList", {"results": inline_serializer("FederatedTaskItem", _task_fields(), many=True)})},
                   summary="List federated tasks", operation_id="federation_tasks_list")
    def get(self, request):
        tasks = selectors.task_list(user=request.user)[:200]
        return Response({"results": [task_payload(t) for t in tasks]})

    @extend_schema(request=InputSerializer, responses={201: TaskSerializer, 400: ErrorSerializer, 403: ErrorSerializer},
                   summary="Create a federated task")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        codes = data.pop("invite")
        hospitals = list(Hospital.objects.filter(code__in=codes))
        if len(hospitals) != len(set(codes)):
            raise ServiceError(_("An invited hospital does not exist."), code="unknown_hospital")
        task = services.task_create(user=request.user, invite=[h for h in hospitals if h.pk != request.user.hospital_id], **data)
        return Response(task_payload(task), status=status.HTTP_201_CREATED)


class TaskDetailApi(APIView):
    """A task with its participants, completed rounds (metrics, client states, reputation) and credits."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: TaskSerializer, 404: ErrorSerializer}, summary="Get a federated task")
    def get(self, request, task_id: int):
        return Response(task_payload(selectors.task_detail(user=request.user, task_id=task_id), detail=True))


class _TaskActionApi(APIView):
    permission_classes = [IsHospitalStaff]
    action_name = ""

    def act(self, task, user):  # pragma: no cover - overridden
        raise NotImplementedError

    def post(self, request, task_id: int):
        task = selectors.task_get(user=request.user, task_id=task_id)
        task = self.act(task, request.user)
        return Response(task_payload(task))


@extend_schema(request=None, responses={200: TaskSerializer, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
               summary="Start or resume a federated task")
class TaskStartApi(_TaskActionApi):
    """Queue a draft, paused or failed task for the worker; it resumes after the last completed round."""

    def act(self, task, user):
        return services.task_start(task=task, user=user)


@extend_schema(request=None, responses={200: TaskSerializer, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
               summary="Pause a federated task")
class TaskPauseApi(_TaskActionApi):
    """Stop the task's processes; completed rounds stay and a later start resumes."""

    def act(self, task, user):
        return services.task_pause(task=task, user=user)


@extend_schema(request=None, responses={200: TaskSerializer, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
               summary="Cancel a federated task")
class TaskCancelApi(_TaskActionApi):
    """End the task for good; its rounds and ledger stay browsable."""

    def act(self, task, user):
        return services.task_cancel(task=task, user=user)


class TaskRegisterModelApi(APIView):
    """Register a round's global model in the registry; ``deploy`` makes one-click segmentation use it."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FederatedModelRegister"

        round_number = serializers.IntegerField(min_value=1, required=False)
        deploy = serializers.BooleanField(default=False)
        name = serializers.SlugField(required=False)

    @extend_schema(request=InputSerializer,
                   responses={201: inline_serializer("RegisteredModel", {"id": serializers.IntegerField(), "name": serializers.CharField(),
                                                                          "version": serializers.IntegerField(), "is_active": serializers.BooleanField()}),
                              400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
                   summary="Register (and deploy) a round's model")
    def post(self, request, task_id: int):
        task = selectors.task_get(user=request.user, task_id=task_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = services.model_register(task=task, user=request.user, round_number=serializer.validated_data.get("round_number"),
                                        deploy=serializer.validated_data["deploy"], name=serializer.validated_data.get("name"))
        return Response({"id": model.pk, "name": model.name, "version": model.version, "is_active": model.is_active},
                        status=status.HTTP_201_CREATED)


class TaskLedgerApi(APIView):
    """The task's ledger entries and the result of checking the whole chain."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: inline_serializer("Ledger", {"check": serializers.DictField(), "entries": serializers.ListField()}),
                              404: ErrorSerializer}, summary="Get a task's ledger")
    def get(self, request, task_id: int):
        task = selectors.task_get(user=request.user, task_id=task_id)
        entries = [
            {"index": e.index, "round_number": e.round_number, "kind": e.kind, "client": e.client,
             "update_sha256": e.update_sha256, "num_examples": e.num_examples, "metrics": e.metrics, "reputation": e.reputation,
             "prev_hash": e.prev_hash, "entry_hash": e.entry_hash}
            for e in selectors.ledger_entries(task=task)
        ]
        return Response({"check": services.ledger_verify(task=task), "entries": entries})


class InvitationListApi(APIView):
    """Invitations addressed to the user's hospital, with the datasets it may contribute."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: inline_serializer("Invitations", {"results": serializers.ListField(), "datasets": serializers.ListField()})},
                   summary="List my hospital's invitations")
    def get(self, request):
        items = selectors.invitation_list(user=request.user)
        datasets = services.dataset_choices(hospital=request.user.hospital) if request.user.hospital_id else []
        return Response({
            "results": [{"id": p.pk, "status": p.status, "task": {"id": p.task_id, "name": p.task.name,
                                                                   "owner": p.task.owner_hospital.code}} for p in items],
            "datasets": datasets,
        })


class InvitationRespondApi(APIView):
    """Accept with one of the hospital's own datasets (only its label statistics leave), or decline."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FederatedInvitationAnswer"

        accept = serializers.BooleanField()
        datasets = serializers.ListField(child=serializers.CharField(max_length=200), default=list)

    @extend_schema(request=InputSerializer,
                   responses={200: inline_serializer("Invitation", {"id": serializers.IntegerField(), "status": serializers.CharField(),
                                                                     "label_statistics": serializers.DictField()}),
                              400: ErrorSerializer, 403: ErrorSerializer, 404: ErrorSerializer},
                   summary="Answer an invitation")
    def post(self, request, participant_id: int):
        participant = selectors.invitation_get(user=request.user, participant_id=participant_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        participant = services.invitation_respond(user=request.user, participant=participant, **serializer.validated_data)
        return Response({"id": participant.pk, "status": participant.status, "label_statistics": participant.label_statistics})


class SiteEnrolApi(APIView):
    """A site node's enrolment: a one-time token and a CSR for the node's own key → its certificate.

    No login: the token is the credential (throttled like the login endpoints). The private key never
    travels; only the CSR does.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthRateThrottle]
    throttle_scope = "auth"

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FederationSiteEnrolment"

        token = serializers.CharField(max_length=200)
        csr = serializers.CharField(max_length=20000, help_text="PEM PKCS #10 CSR, subject CN = the hospital's code")
        node_auth_public_key = serializers.CharField(
            max_length=2000, required=False, allow_blank=True,
            help_text="OpenSSH EC P-384 public key of the site's own SuperNode (a site that runs its node itself)")
        label_statistics = serializers.JSONField(
            required=False, help_text="counts per label of the data the site's node trains on "
                                      "({cases, voxels, cases_with_label}); with a node key, the hospital's acceptance")

    @extend_schema(
        request=InputSerializer,
        responses={201: inline_serializer("FederationSiteCertificate", {
            "task_id": serializers.IntegerField(), "hospital": serializers.CharField(),
            "certificate": serializers.CharField(), "ca_certificate": serializers.CharField(),
            "fingerprint_sha256": serializers.CharField(), "client_id": serializers.CharField(),
            "superlink": serializers.CharField(allow_null=True)}),
            400: ErrorSerializer, 403: ErrorSerializer, 409: ErrorSerializer, 410: ErrorSerializer},
        summary="Enrol a site node (certify its own key)",
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        cert, ca_pem = services.site_enrol(token=data["token"], csr_pem=data["csr"],
                                           node_auth_public_key=data.get("node_auth_public_key", ""),
                                           label_statistics=data.get("label_statistics"))
        return Response({"task_id": cert.task_id, "hospital": cert.hospital.code, "certificate": cert.certificate_pem,
                         "ca_certificate": ca_pem, "fingerprint_sha256": cert.fingerprint_sha256,
                         "client_id": selectors.site_client_id(certificate=cert),
                         "superlink": settings.FEDERATION_SUPERLINK_ADDRESS or None},
                        status=status.HTTP_201_CREATED)
