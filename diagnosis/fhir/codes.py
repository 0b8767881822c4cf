"""Code systems and the code tables of the FHIR export. Imports no Django.

Sources
-------
- Code system URIs: FHIR R4 "Using Codes" (https://hl7.org/fhir/R4/terminologies-systems.html):
  LOINC ``http://loinc.org``, SNOMED CT ``http://snomed.info/sct``, UCUM ``http://unitsofmeasure.org``,
  DICOM ``http://dicom.nema.org/resources/ontology/DCM``.
- Measurement concepts: DICOM PS3.16 CID 7470 (Linear Measurements: SCT 81827009 Diameter,
  103339001 Long axis, 103340004 Short axis), CID 7472 (Volume: SCT 118565006), CID 7471 (Area:
  SCT 42798000) and CID 7180/TID 1419 (DCM 112181 Mean Attenuation Coefficient, 112183 Standard
  Deviation of Attenuation Coefficient), as used by a TID 1500 Measurement Report, so the FHIR
  Observations and a DICOM SR of the same study speak the same codes. LOINC has no term for a
  measurement of an arbitrary segmented region, so these stay SNOMED CT / DCM.
- Units: UCUM (https://ucum.org/ucum): ``mL``, ``mm``, ``cm2``, ``[hnsf'U]`` (Hounsfield unit).
- Body parts: DICOM PS3.16 Annex L (Body Part Examined (0018,0015) → CID 4031 Common Anatomic
  Regions), plus SNOMED CT organ concepts for the organ names the portal's imports use.
- Report code: LOINC 18748-4 "Diagnostic imaging study" (the issue's choice).
- Questionnaire scores: LOINC 44249-1 "PHQ-9 quick depression assessment panel" and 69737-5
  "Generalized anxiety disorder 7 item (GAD-7)", as the issue names them; they are LOINC *panel*
  codes. The *total score* terms are 44261-6 (PHQ-9 total score) and 70274-6 (GAD-7 total score):
  each score Observation carries the panel code as its ``code`` and the total-score code on its
  ``component`` holding the same value, so an EMR that looks for either finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
DICOM_UID_SYSTEM = "urn:dicom:uid"

REPORT_CODE = {"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}


@dataclass(frozen=True)
class MeasurementConcept:
    """One measured quantity of a segment and how it is exported.

    ``field`` is the attribute of ``diagnosis.models.Measurement``; the stored value times ``scale``
    is the exported value in ``unit`` (UCUM), rounded to ``digits`` decimals. ``ct_only`` marks
    intensities that are Hounsfield units only on a CT series.
    """

    key: str
    field: str
    system: str
    code: str
    display: str
    unit: str
    scale: float = 1.0
    digits: int = 1
    ct_only: bool = False


MEASUREMENT_CONCEPTS: tuple[MeasurementConcept, ...] = (
    MeasurementConcept("volume", "volume_ml", SNOMED, "118565006", "Volume", "mL", digits=3),
    MeasurementConcept("max-diameter", "max_diameter_mm", SNOMED, "81827009", "Diameter", "mm"),
    MeasurementConcept("long-axis", "axial_long_mm", SNOMED, "103339001", "Long axis", "mm"),
    MeasurementConcept("short-axis", "axial_short_mm", SNOMED, "103340004", "Short axis", "mm"),
    # Stored in mm², exported in cm² as the report shows it (1 cm² = 100 mm²).
    MeasurementConcept("surface-area", "surface_area_mm2", SNOMED, "42798000", "Area", "cm2", scale=0.01, digits=2),
    MeasurementConcept("mean-hu", "mean_intensity", DICOM_DCM, "112181", "Mean Attenuation Coefficient",
                       "[hnsf'U]", ct_only=True),
    MeasurementConcept("sd-hu", "std_intensity", DICOM_DCM, "112183",
                       "Standard Deviation of Attenuation Coefficient", "[hnsf'U]", ct_only=True),
)
MEASUREMENT_CONCEPT_BY_KEY = {c.key: c for c in MEASUREMENT_CONCEPTS}

# DCM 126030 "Sum of segmented voxel method for volume" (CID 7474): how every volume here is computed.
VOLUME_METHOD = {"system": DICOM_DCM, "code": "126030", "display": "Sum of segmented voxel method for volume"}

# Body Part Examined (0018,0015) → SNOMED CT (PS3.16 Annex L / CID 4031; organ names: SNOMED CT).
BODY_PART_SNOMED: dict[str, tuple[str, str]] = {
    "CHEST": ("816094009", "Chest"),
    "ABDOMEN": ("818981001", "Abdomen"),
    "PELVIS": ("816092008", "Pelvis"),
    "HEAD": ("69536005", "Head"),
    "HEADNECK": ("774007", "Head and Neck"),
    "NECK": ("45048000", "Neck"),
    "HEART": ("80891009", "Heart"),
    "BREAST": ("76752008", "Breast"),
    "KNEE": ("72696002", "Knee"),
    "SPINE": ("421060004", "Spine"),
    "WHOLEBODY": ("38266002", "Entire body"),
    "PROSTATE": ("41216001", "Prostate"),
    "EYE": ("81745001", "Eye"),
    "BRAIN": ("12738006", "Brain"),
    "LUNG": ("39607008", "Lung"),
    "LIVER": ("10200004", "Liver"),
    "KIDNEY": ("64033007", "Kidney"),
    "SPLEEN": ("78961009", "Spleen"),
    "PANCREAS": ("15776009", "Pancreas"),
    "RETINA": ("5665001", "Retina"),
}

# DICOM modality (0008,0060) defined terms → display (PS3.16 CID 29 Acquisition Modality, DCM codes).
MODALITY_DISPLAY = {
    "CT": "Computed Tomography", "MR": "Magnetic Resonance", "PT": "Positron emission tomography (PET)",
    "NM": "Nuclear Medicine", "US": "Ultrasound", "CR": "Computed Radiography", "DX": "Digital Radiography",
    "MG": "Mammography", "XA": "X-Ray Angiography", "OP": "Ophthalmic Photography",
    "OPT": "Ophthalmic Tomography", "SEG": "Segmentation", "SR": "SR Document",
}


@dataclass(frozen=True)
class ScoreCode:
    """The LOINC codes of one standard instrument's score (see the module docstring)."""

    panel: str
    panel_display: str
    total: str
    total_display: str


QUESTIONNAIRE_SCORE_CODES: dict[str, ScoreCode] = {
    "phq-9": ScoreCode("44249-1", "PHQ-9 quick depression assessment panel [Reported.PHQ]",
                       "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
    "gad-7": ScoreCode("69737-5", "Generalized anxiety disorder 7 item (GAD-7)",
                       "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"),
}
# Questionnaires without a LOINC code (a hospital's own) are coded in the portal's own system.
QUESTIONNAIRE_SYSTEM = "https://yixin-portal.org/fhir/CodeSystem/questionnaire"


def body_site_coding(body_part: str) -> dict | None:
    """Return the SNOMED CT Coding of a DICOM Body Part Examined value, or None when it is not mapped."""
    key = (body_part or "").strip().upper().replace(" ", "").replace("_", "")
    found = BODY_PART_SNOMED.get(key)
    if found is None:
        return None
    return {"system": SNOMED, "code": found[0], "display": found[1]}


def modality_coding(modality: str) -> dict:
    """Return the DICOM DCM Coding of a modality (the code is the DICOM defined term itself)."""
    code = (modality or "OT").strip().upper() or "OT"
    coding = {"system": DICOM_DCM, "code": code}
    if code in MODALITY_DISPLAY:
        coding["display"] = MODALITY_DISPLAY[code]
    return coding


def ucum_quantity(value: float, unit: str) -> dict:
    """Return a FHIR Quantity of ``value`` in UCUM ``unit`` (``unit`` is both the human unit and the code)."""
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}
