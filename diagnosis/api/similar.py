"""REST API of similar cases (issue 14): the earlier cases of the study's hospital most like the study, with
their impression and the Lung-RADS management of their signed report as suggestions.

Clinicians only (doctors, hospital admins, platform admins): the cases' impressions are suggestions for the
reading doctor. Another hospital's study is not found (404); annotators and patients are refused (403).
Every read is audit-logged by :func:`diagnosis.services.similar_cases_read`.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.permissions import IsClinician

from .. import services
from ..selectors_similar import K_MAX
from ..similarity import FEATURES


class StudySimilarCasesApi(APIView):
    permission_classes = [IsClinician]

    class SimilarCasesInputSerializer(serializers.Serializer):
        k = serializers.IntegerField(required=False, default=5, min_value=1, max_value=K_MAX,
                                     help_text="how many cases (1–20)")

    class SimilarCasesOutputSerializer(serializers.Serializer):
        class SimilarCaseSerializer(serializers.Serializer):
            class SimilarCaseFindingSerializer(serializers.Serializer):
                kind = serializers.CharField()
                kind_label = serializers.CharField()
                side = serializers.CharField(allow_blank=True)
                region = serializers.CharField(allow_blank=True)
                long_axis_mm = serializers.FloatField(allow_null=True)
                volume_ml = serializers.FloatField(allow_null=True)
                composition = serializers.CharField(allow_blank=True)
                composition_label = serializers.CharField(allow_blank=True)

            study_id = serializers.IntegerField()
            study_date = serializers.DateField(allow_null=True)
            similarity = serializers.FloatField(
                help_text="Σ wₚ·Simₚ / Σ wₚ over the features present on both, in [0, 1]")
            parts = serializers.DictField(child=serializers.FloatField(),
                                          help_text=f"feature → similarity in [0, 1]; features: {', '.join(FEATURES)}")
            report_id = serializers.IntegerField()
            report_version = serializers.IntegerField()
            impression = serializers.CharField(allow_blank=True)
            lung_rads_category = serializers.CharField(allow_blank=True,
                                                       help_text="the category the doctor confirmed, or empty")
            recommendation = serializers.CharField(allow_blank=True,
                                                   help_text="Lung-RADS v2022 management of that category")
            signed_at = serializers.DateTimeField(allow_null=True)
            findings = SimilarCaseFindingSerializer(many=True)

        study_id = serializers.IntegerField()
        k = serializers.IntegerField()
        weights = serializers.DictField(child=serializers.FloatField(), help_text="feature → weight used")
        features = serializers.DictField(child=serializers.BooleanField(),
                                         help_text="feature → whether this study has it")
        candidate_count = serializers.IntegerField(help_text="earlier signed studies of the hospital compared")
        cases = SimilarCaseSerializer(many=True)

    @extend_schema(
        parameters=[OpenApiParameter("k", int, required=False, description="how many cases, 1–20 (default 5)")],
        responses=SimilarCasesOutputSerializer,
        summary="Earlier cases of the same hospital most similar to this study (needs a signed report and a finding)",
    )
    def get(self, request, study_id: int):
        from annotation import selectors as annotation_selectors

        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        params = self.SimilarCasesInputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        result = services.similar_cases_read(user=request.user, study=study, k=params.validated_data["k"])
        return Response(self.SimilarCasesOutputSerializer(result).data)
