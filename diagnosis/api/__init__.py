"""REST API of the diagnosis app, one module per section: :mod:`.reports` (measurements and reports)
and :mod:`.findings` (findings and the doctor's decisions on them) and :mod:`.pacs` (deliveries of signed reports to the PACS)."""

from .findings import (
    FindingAcceptApi,
    FindingDetailApi,
    FindingRejectApi,
    ReportLungRadsConfirmApi,
    StudyFindingComparisonApi,
    StudyLungRadsApi,
    StudyFindingsApi,
)
from .pacs import ReportPacsResendApi, ReportPacsSendsApi
from .reads import SeriesLidcReadsApi, SeriesLuna16AnnotationsApi
from .reports import (
    ReportAmendApi,
    ReportDetailApi,
    ReportFinalizeApi,
    ReportPdfApi,
    SegmentationMeasurementsApi,
    StudyReportsApi,
)

__all__ = [
    "FindingAcceptApi",
    "FindingDetailApi",
    "FindingRejectApi",
    "ReportAmendApi",
    "ReportDetailApi",
    "ReportPacsResendApi",
    "ReportPacsSendsApi",
    "ReportFinalizeApi",
    "ReportPdfApi",
    "SegmentationMeasurementsApi",
    "SeriesLidcReadsApi",
    "SeriesLuna16AnnotationsApi",
    "ReportLungRadsConfirmApi",
    "StudyFindingComparisonApi",
    "StudyLungRadsApi",
    "StudyFindingsApi",
    "StudyReportsApi",
]
