"""The read-only FHIR R4 endpoint ``/fhir/``: read and search by patient, ``application/fhir+json``.

Same authentication (JWT bearer or session) and tenant scoping as the REST API; clinicians only
(docs/permissions.md, section FHIR). Every error is an ``OperationOutcome``: bad search parameters
400, not signed in 401, not a clinician 403, another hospital's or an unknown record or resource type
404, a write 405. Each request is audit-logged (ids and counts only). The endpoint is described by its
CapabilityStatement (``/fhir/metadata``), not by the OpenAPI schema of the REST API.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api_errors import message_translate
from portal.models import AuditLog
from portal.permissions import IsClinician
from portal.services import audit_record

from .. import services
from ..models import Report
from . import resources, selectors
from .registry import OBSERVATION_SOURCES

MEASUREMENT_PREFIX = "measurement-"

SEARCH_PARAMS: dict[str, list[tuple[str, str, str]]] = {
    "Patient": [("_id", "token", "The patient's id."),
                ("identifier", "token", "The medical record number: system|value, or the value alone.")],
    "ImagingStudy": [("patient", "reference", "The patient's id (or Patient/id).")],
    "DiagnosticReport": [("patient", "reference", "The patient's id (or Patient/id).")],
    "Observation": [("patient", "reference", "The patient's id (or Patient/id).")],
}
# Accepted everywhere; only JSON is served.
COMMON_PARAMS = {"_format"}
JSON_FORMATS = {"json", "application/json", "application/fhir+json"}


def mrn_system(hospital) -> str:
    """Return the identifier system URI of a hospital's medical record numbers (``FHIR_MRN_SYSTEM``)."""
    return settings.FHIR_MRN_SYSTEM.format(hospital=hospital.code)


class FhirSearchError(exceptions.APIException):
    """A search the endpoint cannot answer (unknown or malformed parameter): 400 ``invalid``."""

    status_code = 400


class FhirJsonRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "json"
    charset = "utf-8"


class FhirContentNegotiation(BaseContentNegotiation):
    """Serve ``application/fhir+json`` whatever ``Accept`` says (FHIR's JSON is the only format here)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


_OUTCOME_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
                  429: "throttled"}


def fhir_exception_handler(exc, context):
    """Render any error of the FHIR views as an ``OperationOutcome`` in the request's language."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(_("The resource was not found or is not visible to you."))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    if isinstance(exc, exceptions.MethodNotAllowed):
        message = message_translate(_("The FHIR endpoint is read-only: %(method)s is not supported."),
                                    {"method": context["request"].method})
    else:
        message = str(exc.detail)
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    code = _OUTCOME_CODES.get(exc.status_code, "processing")
    return Response(resources.operation_outcome(code=code, diagnostics=message), status=exc.status_code,
                    headers=headers, content_type=FhirJsonRenderer.media_type)


class FhirApi(APIView):
    """Base of the FHIR views: clinicians only, FHIR JSON, OperationOutcome errors, GET only."""

    permission_classes = [IsClinician]
    renderer_classes = [FhirJsonRenderer]
    content_negotiation_class = FhirContentNegotiation
    resource_type = ""

    def get_exception_handler(self):
        return fhir_exception_handler

    def permission_denied(self, request, message=None, code=None):
        # The role's refusal speaks FHIR's vocabulary; a missing login stays a 401.
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated()
        raise exceptions.PermissionDenied(
            message_translate(_("The FHIR endpoint is for doctors and hospital administrators.")))

    def respond(self, data: dict) -> Response:
        return Response(data, content_type=FhirJsonRenderer.media_type)

    # --- search parameters ---

    def search_params(self, request) -> dict[str, str]:
        """Return the search parameters (one value each), refusing unknown, repeated or bad ones (400)."""
        allowed = {name for name, _t, _d in SEARCH_PARAMS.get(self.resource_type, [])}
        params: dict[str, str] = {}
        for name in request.query_params:
            values = request.query_params.getlist(name)
            if name not in allowed | COMMON_PARAMS:
                raise FhirSearchError(message_translate(
                    _("Unknown search parameter '%(name)s' for %(type)s; supported: %(supported)s."),
                    {"name": name[:64], "type": self.resource_type, "supported": ", ".join(sorted(allowed))}))
            if len(values) != 1 or "," in values[0] or not values[0].strip():
                raise FhirSearchError(message_translate(
                    _("Search parameter '%(name)s' takes exactly one non-empty value."), {"name": name}))
            params[name] = values[0].strip()
        if "_format" in params and params.pop("_format") not in JSON_FORMATS:
            raise FhirSearchError(message_translate(_("Only the JSON format is served (_format=json).")))
        return params

    def patient_param(self, request) -> int:
        """Return the id of the required ``patient`` search parameter (``123`` or ``Patient/123``)."""
        params = self.search_params(request)
        if "patient" not in params:
            raise FhirSearchError(message_translate(
                _("Search %(type)s by patient: add ?patient=<id>."), {"type": self.resource_type}))
        value = params["patient"].removeprefix("Patient/")
        if not value.isdigit() or len(value) > 18:
            raise FhirSearchError(message_translate(
                _("The patient parameter must be a patient id or Patient/<id>, not '%(value)s'."),
                {"value": params["patient"][:64]}))
        return int(value)

    def bundle(self, request, found: list[dict]) -> Response:
        base = request.build_absolute_uri(reverse("fhir:metadata")).removesuffix("metadata")
        return self.respond(resources.searchset_bundle(found, base_url=base, self_url=request.build_absolute_uri()))

    def audit(self, request, *, interaction: str, target_id="", hospital=None, count: int | None = None,
              patient_id: int | None = None) -> None:
        detail: dict = {"interaction": interaction}
        if count is not None:
            detail["count"] = count
        if patient_id is not None:
            detail["patient_id"] = patient_id
        audit_record(actor=request.user, action=AuditLog.Action.VIEW, target_type=f"fhir:{self.resource_type}",
                     target_id=target_id, hospital=hospital, detail=detail)


def _int_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise Http404("No such resource.")
    return int(value)


# --- metadata -----------------------------------------------------------------------------------------

class MetadataApi(FhirApi):
    # The CapabilityStatement holds no patient data; FHIR clients read it before they sign in.
    permission_classes = [AllowAny]
    resource_type = "CapabilityStatement"

    def get(self, request):
        self.search_params(request)
        base = request.build_absolute_uri(reverse("fhir:metadata")).removesuffix("metadata")
        return self.respond(resources.capability_statement(
            base_url=base, date=timezone.now(), software_version=settings.SPECTACULAR_SETTINGS["VERSION"],
            search_params=SEARCH_PARAMS))


# --- Patient ------------------------------------------------------------------------------------------

def _patient(patient) -> dict:
    return resources.patient_resource(patient, mrn_system=mrn_system(patient.hospital))


class PatientReadApi(FhirApi):
    resource_type = "Patient"

    def get(self, request, patient_id: str):
        patient = selectors.fhir_patient_get(user=request.user, patient_id=_int_id(patient_id))
        self.audit(request, interaction="read", target_id=patient.pk, hospital=patient.hospital)
        return self.respond(_patient(patient))


class PatientSearchApi(FhirApi):
    resource_type = "Patient"

    def get(self, request):
        params = self.search_params(request)
        if not params:
            raise FhirSearchError(message_translate(_("Search Patient by identifier or _id.")))
        criteria: dict = {}
        if "_id" in params:
            criteria["patient_id"] = _search_int(params["_id"], "_id")
        if "identifier" in params:
            system, bar, value = params["identifier"].rpartition("|")
            if bar and system:
                code = _hospital_code_of_system(system)
                if code is None:  # a system no hospital here uses matches nobody
                    return self._found(request, [])
                criteria["hospital_code"] = code
            criteria["mrn"] = value
        return self._found(request, selectors.fhir_patient_search(user=request.user, **criteria))

    def _found(self, request, patients: list) -> Response:
        self.audit(request, interaction="search", count=len(patients))
        return self.bundle(request, [_patient(p) for p in patients])


def _search_int(value: str, name: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise FhirSearchError(message_translate(
            _("Search parameter '%(name)s' must be a numeric id, not '%(value)s'."),
            {"name": name, "value": value[:64]}))
    return int(value)


def _hospital_code_of_system(system: str) -> str | None:
    """Return the hospital code a ``FHIR_MRN_SYSTEM`` URI names, or None when it is not such a URI."""
    head, marker, tail = settings.FHIR_MRN_SYSTEM.partition("{hospital}")
    if not marker or not system.startswith(head) or not system.endswith(tail):
        return None
    code = system[len(head):len(system) - len(tail)] if tail else system[len(head):]
    return code or None


# --- ImagingStudy -------------------------------------------------------------------------------------

class ImagingStudyReadApi(FhirApi):
    resource_type = "ImagingStudy"

    def get(self, request, study_id: str):
        study = selectors.fhir_study_get(user=request.user, study_id=_int_id(study_id))
        self.audit(request, interaction="read", target_id=study.pk, hospital=study.hospital)
        return self.respond(resources.imaging_study_resource(study, study.series.all()))


class ImagingStudySearchApi(FhirApi):
    resource_type = "ImagingStudy"

    def get(self, request):
        patient_id = self.patient_param(request)
        studies = selectors.fhir_study_search(user=request.user, patient_id=patient_id)
        self.audit(request, interaction="search", count=len(studies), patient_id=patient_id)
        return self.bundle(request, [resources.imaging_study_resource(s, s.series.all()) for s in studies])


# --- DiagnosticReport ---------------------------------------------------------------------------------

def _observation_ids(measurements) -> list[str]:
    return [resources.measurement_observation_id(m.pk, key) for m in measurements
            for key in resources.measurement_observation_keys(m, modality=m.segmentation.series.modality)]


def _report(request, report: Report, measurements, *, with_pdf: bool) -> dict:
    signed = report.status == Report.Status.FINAL and bool(report.pdf_file)
    pdf_url = request.build_absolute_uri(reverse("report-pdf", args=[report.pk]))
    pdf = None
    if with_pdf and signed:  # the signed (Chinese) PDF, audit-logged as a download by the service
        pdf = services.report_pdf_bytes(user=request.user, report=report, language="zh-hans")
    return resources.diagnostic_report_resource(report, observation_ids=_observation_ids(measurements),
                                                pdf_url=pdf_url, pdf_bytes=pdf)


class DiagnosticReportReadApi(FhirApi):
    resource_type = "DiagnosticReport"

    def get(self, request, report_id: str):
        report = selectors.fhir_report_get(user=request.user, report_id=_int_id(report_id))
        measurements = selectors.fhir_report_measurements(reports=[report])[report.pk]
        self.audit(request, interaction="read", target_id=report.pk, hospital=report.study.hospital)
        # A single report carries its signed PDF inline (base64); a search gives the PDF's URL only.
        return self.respond(_report(request, report, measurements, with_pdf=True))


class DiagnosticReportSearchApi(FhirApi):
    resource_type = "DiagnosticReport"

    def get(self, request):
        patient_id = self.patient_param(request)
        reports = selectors.fhir_report_search(user=request.user, patient_id=patient_id)
        measurements = selectors.fhir_report_measurements(reports=reports)
        self.audit(request, interaction="search", count=len(reports), patient_id=patient_id)
        return self.bundle(request, [_report(request, r, measurements[r.pk], with_pdf=False) for r in reports])


# --- Observation --------------------------------------------------------------------------------------

def _measurement_observations(measurement) -> list[dict]:
    segmentation = measurement.segmentation
    series = segmentation.series
    label_entry = next((e for e in segmentation.label_table if e.get("index") == measurement.label), None)
    return resources.measurement_observations(
        measurement, study=series.study, modality=series.modality, label_entry=label_entry,
        status="final" if measurement.is_final else "preliminary")


class ObservationReadApi(FhirApi):
    resource_type = "Observation"

    def get(self, request, observation_id: str):
        for prefix, source in OBSERVATION_SOURCES.items():
            if observation_id.startswith(prefix):
                resource = source.read(user=request.user, key=observation_id.removeprefix(prefix))
                self.audit(request, interaction="read", target_id=observation_id[:64])
                return self.respond(resource)
        if not observation_id.startswith(MEASUREMENT_PREFIX):
            raise Http404("No such observation.")
        number, dash, key = observation_id.removeprefix(MEASUREMENT_PREFIX).partition("-")
        measurement = selectors.fhir_measurement_get(user=request.user, measurement_id=_int_id(number))
        found = next((o for o in _measurement_observations(measurement) if o["id"] == observation_id), None)
        if found is None:
            raise Http404("No such observation.")
        self.audit(request, interaction="read", target_id=observation_id,
                   hospital=measurement.segmentation.series.study.hospital)
        return self.respond(found)


class ObservationSearchApi(FhirApi):
    resource_type = "Observation"

    def get(self, request):
        patient_id = self.patient_param(request)
        found: list[dict] = []
        for measurement in selectors.fhir_measurement_search(user=request.user, patient_id=patient_id):
            found.extend(_measurement_observations(measurement))
        for source in OBSERVATION_SOURCES.values():
            found.extend(source.search(user=request.user, patient_id=patient_id))
        self.audit(request, interaction="search", count=len(found), patient_id=patient_id)
        return self.bundle(request, found)


# --- anything else ------------------------------------------------------------------------------------

class UnknownResourceApi(FhirApi):
    """Resource types and interactions this server does not serve: 404 with an OperationOutcome."""

    def get(self, request, rest: str):
        resource_type = rest.split("/", 1)[0]
        if resource_type in SEARCH_PARAMS:
            raise exceptions.NotFound(message_translate(
                _("Only read (%(type)s/<id>) and search (%(type)s?…) of %(type)s are supported."),
                {"type": resource_type}))
        raise exceptions.NotFound(message_translate(
            _("This FHIR server does not serve the resource type '%(type)s'; it serves %(served)s."),
            {"type": resource_type[:64], "served": ", ".join(SEARCH_PARAMS)}))


for _view in (MetadataApi, PatientReadApi, PatientSearchApi, ImagingStudyReadApi, ImagingStudySearchApi,
              DiagnosticReportReadApi, DiagnosticReportSearchApi, ObservationReadApi, ObservationSearchApi,
              UnknownResourceApi):
    # Described by the CapabilityStatement at /fhir/metadata, not by the REST API's OpenAPI schema.
    extend_schema(exclude=True)(_view)
