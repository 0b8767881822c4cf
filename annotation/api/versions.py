"""Workbench: versions, diffs, refinements, comparison. Start an empty segmentation, read a version tree,
save a browser diff as a new version, refine a version on the server, roll back to an older version,
and compare two versions (per-label changes and Dice, and a difference map for the viewer)."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.permissions import IsHospitalStaff

from .. import selectors, services
from .common import ErrorSerializer, VersionSerializer, _bytes_response, version_payload


class LabelTableField(serializers.ListField):
    child = serializers.DictField()


class SeriesSegmentationCreateApi(APIView):
    """Start an empty segmentation (a new version tree) on a series, to paint from scratch."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=200)
        label_table = LabelTableField(allow_empty=False)

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Create an empty segmentation")
    def post(self, request, series_id: int):
        series = selectors.series_get(user=request.user, series_id=series_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segmentation = services.segmentation_create_blank(user=request.user, series=series, **serializer.validated_data)
        return Response(version_payload(segmentation), status=status.HTTP_201_CREATED)


class SegmentationVersionsApi(APIView):
    """The version tree of a segmentation; POST saves a browser diff as a new version (a branch
    when the parent is not the newest)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        diff = serializers.DictField(help_text='{"format": "runs-v1", "shape": [K, J, I], "runs": base64(zlib(uint32 LE (start, length, value)...))}')
        name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
        tool = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
        locked_labels = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
        label_table = LabelTableField(required=False, allow_null=True, default=None)

    @extend_schema(responses=inline_serializer("SegmentationVersionList", {"results": VersionSerializer}),
                   summary="Versions of a segmentation (its whole tree)")
    def get(self, request, segmentation_id: int):
        versions = selectors.segmentation_versions(user=request.user, segmentation_id=segmentation_id)
        return Response({"results": [version_payload(v) for v in versions]})

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Save an edit (sparse diff) as a new version")
    def post(self, request, segmentation_id: int):
        parent = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        segmentation = services.segmentation_save_diff(user=request.user, parent=parent, **serializer.validated_data)
        return Response(version_payload(segmentation), status=status.HTTP_201_CREATED)


class SegmentationRefineApi(APIView):
    """Run a server-side refinement on a version; the result is a new version."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        operation = serializers.ChoiceField(choices=["largest_component", "remove_small_components", "fill_holes",
                                                     "opening", "closing", "restrict_to_mask"])
        params = serializers.DictField(required=False, default=dict)
        mask_segmentation = serializers.IntegerField(required=False, allow_null=True, default=None)
        comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: VersionSerializer, 400: ErrorSerializer},
                   summary="Refine a segmentation (new version)")
    def post(self, request, segmentation_id: int):
        parent = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        mask = None
        if data["mask_segmentation"] is not None:
            mask = selectors.segmentation_get(user=request.user, segmentation_id=data["mask_segmentation"])
        segmentation = services.segmentation_refine(
            user=request.user, parent=parent, operation=data["operation"], params=data["params"],
            mask_segmentation=mask, comment=data["comment"],
        )
        return Response(version_payload(segmentation), status=status.HTTP_201_CREATED)


class SegmentationMakeCurrentApi(APIView):
    """Roll back: make this (older) version the current one of its tree."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(request=None, responses={200: VersionSerializer}, summary="Make a version current (roll back)")
    def post(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        segmentation = services.segmentation_make_current(user=request.user, segmentation=segmentation)
        return Response(version_payload(segmentation))


class SegmentationCompareApi(APIView):
    """Compare two segmentations of one series: per-label voxels added and removed, and Dice."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: inline_serializer("SegmentationComparison", {
        "a": serializers.IntegerField(), "b": serializers.IntegerField(),
        "labels": serializers.ListField(child=serializers.DictField())}), 400: ErrorSerializer},
        summary="Compare two versions")
    def get(self, request, segmentation_id: int, other_id: int):
        result = selectors.segmentation_compare(user=request.user, segmentation_id=segmentation_id, other_id=other_id)
        names = {int(e["index"]): e.get("name", "") for e in result["a"].label_table + result["b"].label_table}
        return Response({
            "a": result["a"].pk, "b": result["b"].pk,
            "labels": [{**entry, "name": names.get(entry["label"], "")} for entry in result["labels"]],
            "changes_url": reverse("segmentation-compare-changes", args=[result["a"].pk, result["b"].pk]),
        })


class SegmentationCompareChangesApi(APIView):
    """The difference between two versions as a label map for the viewer (1 added, 2 removed)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={(200, "application/gzip"): bytes}, summary="Difference map of two versions (NIfTI)")
    def get(self, request, segmentation_id: int, other_id: int):
        data, filename = services.segmentation_change_map_nifti(user=request.user, segmentation_id=segmentation_id,
                                                                other_id=other_id)
        return _bytes_response(data, filename, "application/gzip")
