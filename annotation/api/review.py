"""Workbench: review workflow. Assign a study to an annotator, list the studies assigned, submit a
version for review or approve / reject it with a comment, and read a study's review comments with the
annotators' agreement (Dice per label)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import ServiceError
from portal.permissions import IsHospitalStaff

from .. import selectors, services
from .common import ErrorSerializer


def comment_payload(comment) -> dict:
    return {"id": comment.pk, "segmentation": comment.segmentation_id, "decision": comment.decision, "text": comment.text,
            "author": str(comment.author) if comment.author else None, "created_at": comment.created_at.isoformat()}


class StudyAssignmentsApi(APIView):
    """Assignments of a study; POST assigns it to an annotator of the hospital (doctors only)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        annotator = serializers.IntegerField()
        review_only = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Assignments of a study")
    def get(self, request, study_id: int):
        study = selectors.study_get(user=request.user, study_id=study_id)
        return Response({"results": [
            {"id": a.pk, "annotator": a.annotator_id, "annotator_name": str(a.annotator), "status": a.status,
             "review_only": a.review_only} for a in selectors.assignment_list(user=request.user, study=study)]})

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Assign a study to an annotator")
    def post(self, request, study_id: int):
        from portal.models import User
        from portal.permissions import is_clinician

        study = selectors.study_get(user=request.user, study_id=study_id)
        if not is_clinician(request.user):
            raise ServiceError(_("Only doctors assign studies."), code="not_reviewer", status_code=403)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        annotator = User.objects.filter(pk=serializer.validated_data["annotator"]).first()
        if annotator is None:
            raise ServiceError(_("No such user."), code="bad_annotator")
        assignment = services.study_assign(user=request.user, study=study, annotator=annotator,
                                           review_only=serializer.validated_data["review_only"])
        return Response({"id": assignment.pk, "status": assignment.status, "review_only": assignment.review_only},
                        status=status.HTTP_201_CREATED)


class MyAssignmentsApi(APIView):
    """The studies assigned to the signed-in annotator (or, for doctors, their hospital's)."""

    permission_classes = [IsHospitalStaff]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Assigned studies")
    def get(self, request):
        return Response({"results": [
            {"id": a.pk, "study": a.study_id, "annotator": a.annotator_id, "status": a.status, "review_only": a.review_only,
             "url": reverse("annotation:study-detail", args=[a.study_id])}
            for a in selectors.assignment_list(user=request.user)]})


class SegmentationReviewApi(APIView):
    """Submit a version for review, or approve / reject it with a comment."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        decision = serializers.ChoiceField(choices=["submit", "approve", "reject"])
        text = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: None, 403: ErrorSerializer, 409: ErrorSerializer},
                   summary="Review a version")
    def post(self, request, segmentation_id: int):
        segmentation = selectors.segmentation_get(user=request.user, segmentation_id=segmentation_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = services.segmentation_review(user=request.user, segmentation=segmentation, **serializer.validated_data)
        return Response({**comment_payload(comment), "review_status": segmentation.review_status},
                        status=status.HTTP_201_CREATED)


class StudyReviewApi(APIView):
    """Comments and review decisions on a study, and the annotators' agreement (Dice per label)."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        text = serializers.CharField(max_length=4000)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, summary="Review comments and inter-annotator agreement")
    def get(self, request, study_id: int):
        study = selectors.study_get(user=request.user, study_id=study_id)
        agreement = selectors.study_agreement(user=request.user, study_id=study.pk)
        return Response({"comments": [comment_payload(c) for c in selectors.review_comments(study=study)],
                         "agreement": agreement["series"]})

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, request=InputSerializer, summary="Comment on a study")
    def post(self, request, study_id: int):
        study = selectors.study_get(user=request.user, study_id=study_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        comment = services.review_comment_add(user=request.user, study=study, text=serializer.validated_data["text"])
        return Response(comment_payload(comment), status=status.HTTP_201_CREATED)
