"""URLs of the read-only FHIR endpoint, mounted at ``/fhir/`` (no trailing slashes, as FHIR writes them)."""

from django.urls import path, re_path

from . import api

app_name = "fhir"
urlpatterns = [
    path("metadata", api.MetadataApi.as_view(), name="metadata"),
    path("Patient", api.PatientSearchApi.as_view(), name="patient-search"),
    path("Patient/<str:patient_id>", api.PatientReadApi.as_view(), name="patient-read"),
    path("ImagingStudy", api.ImagingStudySearchApi.as_view(), name="imagingstudy-search"),
    path("ImagingStudy/<str:study_id>", api.ImagingStudyReadApi.as_view(), name="imagingstudy-read"),
    path("DiagnosticReport", api.DiagnosticReportSearchApi.as_view(), name="diagnosticreport-search"),
    path("DiagnosticReport/<str:report_id>", api.DiagnosticReportReadApi.as_view(), name="diagnosticreport-read"),
    path("Observation", api.ObservationSearchApi.as_view(), name="observation-search"),
    path("Observation/<str:observation_id>", api.ObservationReadApi.as_view(), name="observation-read"),
    # Anything else under /fhir/ (another resource type, _history, a trailing slash): a 404 OperationOutcome.
    re_path(r"^(?P<rest>.*)$", api.UnknownResourceApi.as_view(), name="unknown"),
]
