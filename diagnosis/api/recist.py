"""REST API of RECIST 1.1 (issue 14): the doctor's target and non-target lesions on a baseline study (PUT),
the doctor's non-target response at a follow-up (PATCH), and the assessment over the patient's later
studies (sum of diameters, nadir, responses, RECIST 1.1 Table 1 / Table 2 and the rule applied).

Permissions as the comparison routes: reads for hospital staff of the study's hospital (annotators
included, as on the other study diagnosis reads), writes for clinicians; another hospital's study is not
found (404); a patient is refused (403).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.models import AuditLog
from portal.permissions import IsClinician, IsHospitalStaff
from portal.services import audit_record

from .. import selectors, services

RecistAssessmentSerializer = inline_serializer("RecistAssessment", {
    "study_id": serializers.IntegerField(),
    "assessment": serializers.DictField(
        allow_null=True,
        help_text="null when no selection applies; else baseline_study_id, baseline_study_date, chosen_by, "
                  "chosen_at, lesions [{finding_id, finding_kind, role (target | non_target), organ, lymph_node, "
                  "baseline_mm}], time_points [{study_id, study_date, diameters_mm (per target finding id, mm), "
                  "sum_mm, nadir_mm, change_from_baseline_pct, change_from_nadir_pct, change_from_nadir_mm, "
                  "target_response, non_target_response, overall_response (CR, PR, SD, PD, NE, non-CR/non-PD), "
                  "non_target_source (doctor | derived), non_target_derived, new_lesions, table (1 | 2), "
                  "table_row, rule, overall_rule, findings}], error (a RECIST rule the stored selection "
                  "breaks), source"),
})


class RecistLesionInputSerializer(serializers.Serializer):
    finding = serializers.IntegerField(help_text="a finding of this (baseline) study")
    organ = serializers.CharField(required=False, allow_blank=True, max_length=64,
                                  help_text="the organ for the 2-per-organ limit; default: lung for a lung nodule, "
                                            "else the finding's region")
    lymph_node = serializers.BooleanField(required=False, default=False,
                                          help_text="measured by the short axis (≥ 15 mm to be a target)")


class RecistSelectionInputSerializer(serializers.Serializer):
    targets = RecistLesionInputSerializer(many=True, help_text="at most 5, at most 2 per organ, measurable")
    non_targets = RecistLesionInputSerializer(many=True, required=False, default=list)


class RecistNonTargetInputSerializer(serializers.Serializer):
    non_target_response = serializers.ChoiceField(
        choices=["CR", "non-CR/non-PD", "PD", "NE", ""], allow_blank=True, allow_null=True,
        help_text="the doctor's non-target response at this follow-up (RECIST 1.1 §4.3.2; PD: unequivocal "
                  "progression); empty or null removes it (the derived response applies)")


class StudyRecistApi(APIView):
    def get_permissions(self):
        return [IsClinician()] if self.request.method in ("PUT", "PATCH") else [IsHospitalStaff()]

    def _body(self, study) -> dict:
        return {"study_id": study.pk, "assessment": selectors.recist_assessment(study=study)}

    @extend_schema(responses=RecistAssessmentSerializer,
                   summary="RECIST 1.1 of the study: the lesions chosen and the response per time point")
    def get(self, request, study_id: int):
        from annotation import selectors as annotation_selectors

        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        body = self._body(study)
        selection = selectors.recist_selection_for(study=study)
        if selection is not None:  # the read of a patient's figures is logged; "none chosen" is not
            audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type="recist_selection",
                         target_id=selection.pk, hospital=study.hospital, detail={"study": study.pk})
        return Response(body)

    @extend_schema(request=RecistSelectionInputSerializer, responses=RecistAssessmentSerializer,
                   summary="Choose the RECIST 1.1 target and non-target lesions of this study as the baseline")
    def put(self, request, study_id: int):
        from annotation import selectors as annotation_selectors

        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        serializer = RecistSelectionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.recist_selection_set(user=request.user, study=study, targets=serializer.validated_data["targets"],
                                      non_targets=serializer.validated_data["non_targets"])
        return Response(self._body(study))

    @extend_schema(request=RecistNonTargetInputSerializer, responses=RecistAssessmentSerializer,
                   summary="Record the doctor's RECIST 1.1 non-target response at this follow-up study")
    def patch(self, request, study_id: int):
        from annotation import selectors as annotation_selectors

        study = annotation_selectors.study_get(user=request.user, study_id=study_id)
        serializer = RecistNonTargetInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.recist_non_target_set(user=request.user, study=study,
                                       response=serializer.validated_data["non_target_response"])
        return Response(self._body(study))
