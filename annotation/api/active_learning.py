"""Workbench: active learning. Rank unlabelled studies by a model's uncertainty (scored ones first) and
queue the scoring of unlabelled series; the scores themselves are computed by a Celery task."""

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

from .. import selectors, services


class ActiveLearningApi(APIView):
    """GET: unlabelled studies ranked by the model's uncertainty (scored ones first); POST: queue scoring."""

    permission_classes = [IsHospitalStaff]

    class InputSerializer(serializers.Serializer):
        model = serializers.IntegerField()
        method = serializers.ChoiceField(choices=["entropy", "mc_dropout"], default="entropy")
        limit = serializers.IntegerField(min_value=1, max_value=200, default=20)

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT}, parameters=[OpenApiParameter("model", int), OpenApiParameter("method", str)],
                   summary="Next studies to annotate")
    def get(self, request):
        model_id = request.query_params.get("model", "")
        if not model_id.isdigit():
            raise ServiceError(_("Give the model id."), code="invalid_input")
        model = selectors.segmentation_model_get(user=request.user, model_id=int(model_id))
        method = request.query_params.get("method", "entropy")
        scores = selectors.uncertainty_ranking(user=request.user, model=model, method=method)
        return Response({"model": model.pk, "method": method, "results": [
            {"series": s.series_id, "study": s.series.study_id, "score": s.score, "details": s.details,
             "computed_at": s.computed_at.isoformat(), "url": reverse("annotation:study-detail", args=[s.series.study_id])}
            for s in scores]})

    @extend_schema(request=InputSerializer, responses={202: None}, summary="Score unlabelled series for active learning")
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = selectors.segmentation_model_get(user=request.user, model_id=serializer.validated_data["model"])
        series_ids = services.uncertainty_rank_start(user=request.user, model=model,
                                                     method=serializer.validated_data["method"],
                                                     limit=serializer.validated_data["limit"])
        return Response({"queued_series": series_ids}, status=status.HTTP_202_ACCEPTED)
