"""Build HL7 FHIR R4 resources (JSON dicts) from the portal's records. Imports no Django.

Each builder takes model instances (read through their attributes only) and plain values, and
returns the resource as a dict validated by the ``fhir.resources`` model of its type
(:func:`resource_validate`). FHIR R4 is 4.0.1; ``fhir.resources`` 8 ships R5 as its default and R4B
(4.3.0) under ``fhir.resources.R4B``, and no R4 package. R4B changed none of the elements these
resources use (Patient, ImagingStudy, DiagnosticReport, Observation, Bundle, OperationOutcome,
CapabilityStatement: R4B's changes are to medication definitions, Subscription, Citation and new
resources), so a document valid under the R4B models is valid R4, and the endpoint states
``fhirVersion`` 4.0.1.

Ids: ``Patient/{patient.pk}``, ``ImagingStudy/{study.pk}``, ``DiagnosticReport/{report.pk}``,
``Observation/measurement-{measurement.pk}-{quantity}`` (one per quantity of a measured segment,
quantity as in :data:`codes.MEASUREMENT_CONCEPTS`) and ``Observation/questionnaire-score-{assignment.pk}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any, Iterable

from . import codes

FHIR_VERSION = "4.0.1"
MIME_FHIR_JSON = "application/fhir+json"


class FhirBuildError(ValueError):
    """A built resource did not validate against its ``fhir.resources`` model (a bug, not bad input)."""


def resource_validate(data: dict) -> dict:
    """Validate ``data`` with the ``fhir.resources`` R4B model of its ``resourceType``; return its JSON form.

    Raises
    ------
    FhirBuildError
        When the model refuses the resource (the message names the first failing element).
    """
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    try:
        model = get_fhir_model_class(data["resourceType"])
        return json.loads(model.model_validate(data).model_dump_json(exclude_none=True))
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise FhirBuildError(f"invalid FHIR {data.get('resourceType')}: {where}: {first.get('msg', exc)}") from None


def _instant(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _date(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _effective(study, fallback: dt.datetime | None) -> str | None:
    """The clinically relevant time of a study's results: its study date, else ``fallback``."""
    return _date(study.study_date) or _instant(fallback)


def reference(resource_type: str, pk: Any) -> dict:
    """Return a relative Reference (``{"reference": "Type/id"}``)."""
    return {"reference": f"{resource_type}/{pk}"}


# --- Patient ---------------------------------------------------------------------------------------

_GENDER = {"M": "male", "F": "female", "O": "other"}


def patient_resource(patient, *, mrn_system: str) -> dict:
    """Return the FHIR ``Patient`` of an ``annotation.models.Patient``.

    ``identifier`` is the medical record number (type ``MR`` of HL7 v2 table 0203) in ``mrn_system``,
    the hospital's identifier system URI; ``gender`` maps M/F/O to male/female/other (unknown when
    blank); the name is given as ``text`` because the portal stores it as written, not in parts.
    """
    data: dict = {
        "resourceType": "Patient",
        "id": str(patient.pk),
        "identifier": [{
            "use": "usual",
            "type": {"coding": [{"system": codes.IDENTIFIER_TYPE, "code": "MR", "display": "Medical record number"}]},
            "system": mrn_system,
            "value": patient.mrn,
        }],
        "gender": _GENDER.get(patient.sex, "unknown"),
        "managingOrganization": {"display": patient.hospital.name},
    }
    if patient.name:
        # DICOM PN separates family and given names with "^"; the FHIR text keeps them space-separated.
        data["name"] = [{"use": "official", "text": " ".join(p for p in patient.name.split("^") if p)}]
    if patient.birth_date:
        data["birthDate"] = _date(patient.birth_date)
    return resource_validate(data)


# --- ImagingStudy ----------------------------------------------------------------------------------

def imaging_study_resource(study, series_list: Iterable) -> dict:
    """Return the FHIR ``ImagingStudy`` of an ``annotation.models.Study`` and its series.

    The Study Instance UID (0020,000D) is the identifier (``urn:dicom:uid`` system, ``urn:oid:``
    value) and each series its ``uid``; modalities are DCM codings; ``bodySite`` is the SNOMED CT
    concept of the series' Body Part Examined (omitted when the value is not in
    :data:`codes.BODY_PART_SNOMED`); ``numberOfInstances`` counts the stored DICOM instances.
    """
    series_list = list(series_list)
    series_out = []
    for series in series_list:
        entry: dict = {
            "uid": series.series_instance_uid,
            "modality": codes.modality_coding(series.modality),
            "numberOfInstances": series.instance_count,
        }
        if series.series_number is not None:
            entry["number"] = series.series_number
        if series.description:
            entry["description"] = series.description
        site = codes.body_site_coding(series.body_part)
        if site:
            entry["bodySite"] = site
        series_out.append(entry)
    modalities = {}
    for entry in series_out:
        modalities.setdefault(entry["modality"]["code"], entry["modality"])
    data: dict = {
        "resourceType": "ImagingStudy",
        "id": str(study.pk),
        "identifier": [{"use": "official", "system": codes.DICOM_UID_SYSTEM,
                        "value": f"urn:oid:{study.study_instance_uid}"}],
        "status": "available",
        "subject": reference("Patient", study.patient_id),
        "numberOfSeries": len(series_out),
        "numberOfInstances": sum(e["numberOfInstances"] for e in series_out),
        "series": series_out,
    }
    if modalities:
        data["modality"] = list(modalities.values())
    if study.accession_number:
        data["identifier"].append({
            "type": {"coding": [{"system": codes.IDENTIFIER_TYPE, "code": "ACSN", "display": "Accession ID"}]},
            "value": study.accession_number,
        })
    if study.study_date:
        # A dateTime may be a bare date; the portal keeps the study date only (no time, no zone).
        data["started"] = _date(study.study_date)
    if study.description:
        data["description"] = study.description
    return resource_validate(data)


# --- Observations of measurements -----------------------------------------------------------------

def measurement_observation_id(measurement_pk: int, key: str) -> str:
    """Return the id of the Observation of quantity ``key`` of a measurement."""
    return f"measurement-{measurement_pk}-{key}"


def measurement_observation_keys(measurement, *, modality: str) -> list[str]:
    """Return the quantity keys exported for ``measurement`` (those with a value; HU only on CT)."""
    return [c.key for c in codes.MEASUREMENT_CONCEPTS
            if getattr(measurement, c.field) is not None and not (c.ct_only and (modality or "").upper() != "CT")]


def measurement_observations(measurement, *, study, modality: str, label_entry: dict | None,
                             status: str) -> list[dict]:
    """Return one FHIR ``Observation`` per quantity of a ``diagnosis.models.Measurement``.

    Quantities, codes and units follow :data:`codes.MEASUREMENT_CONCEPTS` (volume in mL, diameters
    and axes in mm, surface area in cm², mean and SD of the intensity in Hounsfield units on a CT
    series only). ``label_entry`` is the segment's row of the segmentation's label table: its name
    is the code's text and, when it carries ``snomed_code``, the ``bodySite``. ``status`` is
    ``final`` when a signed report cites the segmentation, else ``preliminary``. Each Observation is
    ``derivedFrom`` the ImagingStudy.
    """
    label_entry = label_entry or {}
    segment = label_entry.get("name") or measurement.label_name
    out = []
    for key in measurement_observation_keys(measurement, modality=modality):
        concept = codes.MEASUREMENT_CONCEPT_BY_KEY[key]
        value = getattr(measurement, concept.field)
        data: dict = {
            "resourceType": "Observation",
            "id": measurement_observation_id(measurement.pk, concept.key),
            "status": status,
            "category": [{"coding": [{"system": codes.OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
            "code": {"coding": [{"system": concept.system, "code": concept.code, "display": concept.display}],
                     "text": f"{'Surface area' if concept.key == 'surface-area' else concept.display} of {segment}"},
            "subject": reference("Patient", study.patient_id),
            "effectiveDateTime": _effective(study, measurement.created_at),
            "issued": _instant(measurement.created_at),
            "valueQuantity": codes.ucum_quantity(round(float(value) * concept.scale, concept.digits), concept.unit),
            "derivedFrom": [reference("ImagingStudy", study.pk)],
        }
        if concept.key == "volume":
            data["method"] = {"coding": [codes.VOLUME_METHOD]}
        if label_entry.get("snomed_code"):
            data["bodySite"] = {"coding": [{"system": codes.SNOMED, "code": str(label_entry["snomed_code"]),
                                            "display": label_entry.get("snomed_meaning") or segment}],
                                "text": segment}
        out.append(resource_validate(data))
    return out


# --- DiagnosticReport -------------------------------------------------------------------------------

def report_status(report) -> str:
    """Return the FHIR status of a ``diagnosis.models.Report``: only a signed report is ``final``
    (``amended`` when it is a signed amendment of an earlier version); a draft is ``preliminary``."""
    if report.status == "final":
        return "amended" if report.supersedes_id else "final"
    return "preliminary"


def diagnostic_report_resource(report, *, observation_ids: Iterable[str], pdf_url: str | None,
                               pdf_bytes: bytes | None = None) -> dict:
    """Return the FHIR ``DiagnosticReport`` of a ``diagnosis.models.Report``.

    ``code`` is LOINC 18748-4 "Diagnostic imaging study"; ``conclusion`` the impression;
    ``effectiveDateTime`` the study date (else the report's creation), ``issued`` the signing time
    (the last change of a draft); ``result`` references ``observation_ids``; ``presentedForm`` is
    the signed PDF (``application/pdf``): its ``url`` and, when ``pdf_bytes`` is given, the bytes
    in base64 ``data`` with their size and SHA-1 ``hash`` (FHIR Attachment.hash is SHA-1).
    """
    study = report.study
    data: dict = {
        "resourceType": "DiagnosticReport",
        "id": str(report.pk),
        "identifier": [{"system": "https://yixin-portal.org/fhir/sid/report",
                        "value": f"{study.study_instance_uid}/v{report.version}"}],
        "status": report_status(report),
        "category": [{"coding": [{"system": codes.DIAGNOSTIC_SERVICE, "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [dict(codes.REPORT_CODE)], "text": codes.REPORT_CODE["display"]},
        "subject": reference("Patient", study.patient_id),
        "effectiveDateTime": _effective(study, report.created_at),
        "issued": _instant(report.signed_at or report.updated_at),
        "imagingStudy": [reference("ImagingStudy", study.pk)],
        "result": [reference("Observation", oid) for oid in observation_ids],
    }
    if report.impression:
        data["conclusion"] = report.impression
    if report.signed_by_id and report.signed_by is not None:
        data["resultsInterpreter"] = [{"display": str(report.signed_by)}]
    if pdf_url or pdf_bytes is not None:
        form: dict = {"contentType": "application/pdf", "language": "zh-CN",
                      "title": f"report-{report.pk}-v{report.version}.pdf"}
        if report.signed_at:
            form["creation"] = _instant(report.signed_at)
        if pdf_url:
            form["url"] = pdf_url
        if pdf_bytes is not None:
            form["data"] = base64.b64encode(pdf_bytes).decode("ascii")
            form["size"] = len(pdf_bytes)
            form["hash"] = base64.b64encode(hashlib.sha1(pdf_bytes).digest()).decode("ascii")
        data["presentedForm"] = [form]
    if not data["result"]:
        del data["result"]
    return resource_validate(data)


# --- Bundles, outcomes, capability -----------------------------------------------------------------

def searchset_bundle(resources: list[dict], *, base_url: str, self_url: str) -> dict:
    """Return a ``searchset`` Bundle of ``resources`` (each a match) with ``fullUrl``s under ``base_url``."""
    data = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": self_url}],
        "entry": [{"fullUrl": f"{base_url.rstrip('/')}/{r['resourceType']}/{r['id']}", "resource": r,
                   "search": {"mode": "match"}} for r in resources],
    }
    if not data["entry"]:
        del data["entry"]
    return resource_validate(data)


def operation_outcome(*, code: str, diagnostics: str, severity: str = "error") -> dict:
    """Return an ``OperationOutcome`` with one issue (``code`` from the FHIR issue-type value set)."""
    return resource_validate({"resourceType": "OperationOutcome",
                              "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]})


def capability_statement(*, base_url: str, date: dt.datetime, software_version: str,
                         search_params: dict[str, list[tuple[str, str, str]]]) -> dict:
    """Return the server's ``CapabilityStatement`` (read and search-type for each resource type).

    ``search_params`` maps a resource type to ``(name, type, documentation)`` of its search parameters.
    """
    resources = []
    for resource_type, params in search_params.items():
        resources.append({
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": n, "type": t, "documentation": d} for n, t, d in params],
        })
    return resource_validate({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _instant(date),
        "kind": "instance",
        "software": {"name": "Yixin Portal", "version": software_version},
        "implementation": {"description": "Yixin Portal read-only FHIR endpoint", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": [MIME_FHIR_JSON, "json"],
        "rest": [{"mode": "server",
                  "security": {"cors": False, "description": "JWT bearer token or portal session; clinicians only."},
                  "resource": resources}],
    })
