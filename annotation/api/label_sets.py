"""Workbench: label sets and searches. List, create and edit a hospital's label sets and their labels,
start segmentations on a series from a label set, and find the studies and models that carry a label
(by name or SNOMED CT code)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.permissions import IsHospitalStaff
from portal.validators import validate_color

from .. import selectors, services
from .common import ErrorSerializer, version_payload


def label_set_payload(label_set) -> dict:
    return {
        "id": label_set.pk, "name": label_set.name, "project": label_set.project, "description": label_set.description,
        "allow_overlap": label_set.allow_overlap, "hospital": label_set.hospital.code,
        "labels": [{**label.to_entry(), "id": label.pk} for label in label_set.labels.all()],
    }


class LabelInputSerializer(serializers.Serializer):
    index = serializers.IntegerField(min_value=1, max_value=65535)
    name = serializers.CharField(max_length=100, required=False)
    color = serializers.CharField(max_length=7, required=False, trim_whitespace=False, validators=[validate_color],
                                  help_text="#rrggbb (# and six hexadecimal digits).")
    description = serializers.CharField(required=False, allow_blank=True)
    snomed_code = serializers.CharField(max_length=20, required=False, allow_blank=True)
    snomed_meaning = serializers.CharField(max_length=100, required=False, allow_blank=True)


class LabelSetListApi(APIView):
    """Label sets of the user's hospital; POST creates one (clinicians and annotators)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        project = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
        description = serializers.CharField(required=False, allow_blank=True, default="")
        allow_overlap = serializers.BooleanField(required=False, default=False)
        labels = LabelInputSerializer(many=True, required=False, default=list)

    @extend_schema(operation_id="label_sets_list", responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Label sets")
    def get(self, request):
        return Response({"results": [label_set_payload(s) for s in selectors.label_set_list(user=request.user)]})

    @extend_schema(request=InputSerializer, responses={201: None, 400: ErrorSerializer, 409: ErrorSerializer},
                   summary="Create a label set")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if request.user.hospital is None:
            raise ServiceError(_("Label sets belong to a hospital."), code="hospital_required")
        label_set = services.label_set_create(user=request.user, hospital=request.user.hospital, **serializer.validated_data)
        label_set = selectors.label_set_get(user=request.user, label_set_id=label_set.pk)
        return Response(label_set_payload(label_set), status=status.HTTP_201_CREATED)


class LabelSetDetailApi(APIView):
    """Read, rename or describe a label set; POST to /labels/ adds or edits one label."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        project = serializers.CharField(max_length=100, required=False, allow_blank=True)
        description = serializers.CharField(required=False, allow_blank=True)
        allow_overlap = serializers.BooleanField(required=False)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="A label set")
    def get(self, request, label_set_id: int):
        return Response(label_set_payload(selectors.label_set_get(user=request.user, label_set_id=label_set_id)))

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Rename or describe a label set")
    def patch(self, request, label_set_id: int):
        label_set = selectors.label_set_get(user=request.user, label_set_id=label_set_id)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.label_set_update(user=request.user, label_set=label_set, **serializer.validated_data)
        return Response(label_set_payload(selectors.label_set_get(user=request.user, label_set_id=label_set_id)))


class LabelUpsertApi(APIView):
    """Add a label to a set, or rename / recolour / describe / code an existing one (by value)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=LabelInputSerializer, summary="Add or edit a label")
    def post(self, request, label_set_id: int):
        label_set = selectors.label_set_get(user=request.user, label_set_id=label_set_id)
        serializer = LabelInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        services.label_upsert(user=request.user, label_set=label_set, index=data.pop("index"), **data)
        return Response(label_set_payload(selectors.label_set_get(user=request.user, label_set_id=label_set_id)))


class SeriesLabelSetSegmentationApi(APIView):
    """Start empty segmentations on a series from a label set (one layer per label when overlap is allowed)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        label_set = serializers.IntegerField()
        name = serializers.CharField(max_length=180, required=False, allow_blank=True, default="")

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Create segmentations from a label set")
    def post(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label_set = selectors.label_set_get(user=request.user, label_set_id=serializer.validated_data["label_set"])
        created = services.segmentation_create_from_label_set(user=request.user, series=series, label_set=label_set,
                                                              name=serializer.validated_data["name"])
        return Response({"results": [version_payload(s) for s in created]}, status=status.HTTP_201_CREATED)


class LabelSearchApi(APIView):
    """Which studies have label X, and which models produce it (by name or SNOMED CT code)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, parameters=[OpenApiParameter("name", str), OpenApiParameter("snomed_code", str)],
                   summary="Search studies and models by label")
    def get(self, request):
        name = request.query_params.get("name", "").strip()
        code = request.query_params.get("snomed_code", "").strip()
        if not name and not code:
            raise ServiceError(_("Give a label name or a SNOMED CT code."), code="invalid_input")
        studies = selectors.studies_with_label(user=request.user, name=name, snomed_code=code)
        models = selectors.models_with_label(user=request.user, name=name, snomed_code=code)
        return Response({
            "studies": [{"id": s.pk, "description": s.description, "url": reverse("annotation:study-detail", args=[s.pk])}
                        for s in studies],
            "models": [{"id": m.pk, "name": m.name, "version": m.version, "display_name": m.shown_name} for m in models],
        })
