"""The plain parts of the FHIR export: code tables, the validator, the score Observation (no database)."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.observation import Observation
from pydicom.sr.codedict import codes as dicom_codes

from diagnosis.fhir import codes
from diagnosis.fhir.resources import FhirBuildError, resource_validate
from followup.questionnaires.fhir import score_observation


@pytest.mark.parametrize("keyword, cid_name", [
    ("CHEST", "Chest"), ("ABDOMEN", "Abdomen"), ("PELVIS", "Pelvis"), ("HEAD", "Head"), ("HEADNECK", "HeadAndNeck"),
    ("WHOLEBODY", "EntireBody"), ("KNEE", "Knee"), ("BREAST", "Breast"),
])
def test_body_parts_follow_dicom_cid_4031(keyword, cid_name):
    expected = getattr(dicom_codes.CID4031, cid_name)

    assert codes.body_site_coding(keyword.lower()) == {"system": codes.SNOMED, "code": expected.value,
                                                        "display": expected.meaning}


def test_measurement_codes_are_the_dicom_concepts():
    by_key = codes.MEASUREMENT_CONCEPT_BY_KEY
    for key, concept in (("volume", dicom_codes.SCT.Volume), ("max-diameter", dicom_codes.SCT.Diameter),
                         ("long-axis", dicom_codes.SCT.LongAxis), ("short-axis", dicom_codes.SCT.ShortAxis),
                         ("surface-area", dicom_codes.SCT.Area),
                         ("mean-hu", dicom_codes.DCM.MeanAttenuationCoefficient),
                         ("sd-hu", dicom_codes.DCM.StandardDeviationOfAttenuationCoefficient)):
        assert (by_key[key].code, by_key[key].display) == (concept.value, concept.meaning)
    assert codes.VOLUME_METHOD["code"] == dicom_codes.DCM.SumOfSegmentedVoxelMethodForVolume.value


def test_unmapped_body_part_and_unknown_modality():
    assert codes.body_site_coding("") is None and codes.body_site_coding("SOMEWHERE") is None
    assert codes.modality_coding("xyz") == {"system": codes.DICOM_DCM, "code": "XYZ"}
    assert codes.modality_coding("") == {"system": codes.DICOM_DCM, "code": "OT"}


@pytest.mark.parametrize("change, where", [
    ({"status": None}, "status"),  # a required element missing
    ({"bogus": 1}, "bogus"),  # an element R4 does not have
    ({"effectiveDateTime": "yesterday"}, "effectiveDateTime"),  # a malformed dateTime
    ({"valueQuantity": {"value": "abc"}}, "valueQuantity.value"),
])
def test_the_validator_refuses_an_invalid_resource(change, where):
    # fhir.resources checks structure, cardinality and datatypes; it does not check value-set bindings
    # (an unknown status code passes), so the builders' status codes are asserted in test_fhir.py.
    data = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}} | change
    data = {k: v for k, v in data.items() if v is not None}

    with pytest.raises(FhirBuildError, match=where):
        resource_validate(data)


def test_a_hospitals_own_questionnaire_is_coded_in_the_portal_system():
    observation = score_observation(observation_id="questionnaire-score-1", questionnaire_code="sleep-5",
                                    questionnaire_title="睡眠问卷", patient_id=3, total=4.5, max_total=10,
                                    band_label="", submitted_at="2026-12-01T08:00:00+08:00")

    Observation.model_validate(observation)
    assert observation["code"]["coding"] == [{"system": codes.QUESTIONNAIRE_SYSTEM, "code": "sleep-5"}]
    assert observation["valueQuantity"]["value"] == 4.5 and "component" not in observation
    assert observation["referenceRange"][0]["high"]["value"] == 10
