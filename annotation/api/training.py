"""Training runs: start one on a training dataset, read its state and per-epoch progress, cancel it."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.permissions import IsClinician

from .. import selectors, services
from ..events import training_run_payload
from ..models import TrainingRun
from .common import ErrorSerializer

__all__ = ["TrainingRunCancelApi", "TrainingRunCreateApi", "TrainingRunDetailApi", "TrainingRunSerializer"]

_EpochSerializer = inline_serializer("TrainingEpoch", {
    "epoch": serializers.IntegerField(),
    "loss": serializers.FloatField(allow_null=True),
    "mean_dice": serializers.FloatField(allow_null=True, help_text="Mean validation Dice over the labels."),
    "val_dice_per_label": serializers.DictField(child=serializers.FloatField(allow_null=True),
                                                help_text="Validation Dice by label value."),
    "duration_s": serializers.FloatField(allow_null=True),
    "stopped_early": serializers.BooleanField(help_text="Early stopping ended the run after this epoch."),
})

TrainingRunSerializer = inline_serializer("TrainingRun", {
    "id": serializers.IntegerField(),
    "dataset": inline_serializer("TrainingRunDataset", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "version": serializers.IntegerField()}),
    "architecture": serializers.ChoiceField(choices=TrainingRun.Architecture.choices),
    "settings": serializers.DictField(help_text="epochs, learning_rate, patch_size, augmentation, seed, patience, "
                                                "batch_size, val_fraction, network_config"),
    "status": serializers.ChoiceField(choices=TrainingRun.Status.choices),
    "progress_percent": serializers.FloatField(),
    "stage": serializers.CharField(),
    "epochs": serializers.ListField(child=_EpochSerializer),
    "split": inline_serializer("TrainingRunSplit", {
        "train_cases": serializers.ListField(child=serializers.CharField(), required=False),
        "val_cases": serializers.ListField(child=serializers.CharField(), required=False),
        "train_patients": serializers.IntegerField(required=False),
        "val_patients": serializers.IntegerField(required=False),
    }),
    "error_message": serializers.CharField(),
    "device": serializers.CharField(),
    "attempts": serializers.IntegerField(),
    "segmentation_model": inline_serializer("TrainingRunModel", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "version": serializers.IntegerField(),
        "bundle_url": serializers.CharField(help_text="Download of the model as a MONAI bundle.")}, allow_null=True),
    "created_at": serializers.DateTimeField(),
    "started_at": serializers.DateTimeField(allow_null=True),
    "finished_at": serializers.DateTimeField(allow_null=True),
})


class TrainingRunCreateApi(APIView):
    """Start training a network on a training dataset (doctors and hospital administrators)."""

    permission_classes = [IsClinician]

    class InputSerializer(serializers.Serializer):
        dataset_id = serializers.IntegerField()
        architecture = serializers.ChoiceField(choices=TrainingRun.Architecture.choices)
        settings = serializers.DictField(required=False, default=dict)

    @extend_schema(request=InputSerializer,
                   responses={201: TrainingRunSerializer, 400: ErrorSerializer, 403: ErrorSerializer,
                              404: ErrorSerializer, 503: ErrorSerializer},
                   summary="Start a training run")
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = selectors.training_dataset_get_by_id(user=request.user, dataset_id=data.validated_data["dataset_id"])
        run = services.training_run_start(user=request.user, dataset=dataset,
                                          architecture=data.validated_data["architecture"],
                                          settings=data.validated_data["settings"])
        return Response(training_run_payload(run), status=status.HTTP_201_CREATED)


class TrainingRunDetailApi(APIView):
    """A training run's state and per-epoch loss and validation Dice (hospital staff of its hospital)."""

    @extend_schema(responses={200: TrainingRunSerializer, 404: ErrorSerializer}, summary="A training run's state")
    def get(self, request, run_id: int):
        return Response(training_run_payload(selectors.training_run_get(user=request.user, run_id=run_id)))


class TrainingRunCancelApi(APIView):
    """Cancel a queued or running training run."""

    permission_classes = [IsClinician]

    @extend_schema(request=None, responses={202: TrainingRunSerializer, 403: ErrorSerializer, 404: ErrorSerializer,
                                            409: ErrorSerializer}, summary="Cancel a training run")
    def post(self, request, run_id: int):
        run = selectors.training_run_get(user=request.user, run_id=run_id)
        run = services.training_run_cancel(user=request.user, run=run)
        return Response(training_run_payload(run), status=status.HTTP_202_ACCEPTED)
