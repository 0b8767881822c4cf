"""REST API of the diagnosis app, one module per section: :mod:`.reports` (measurements and reports)
and :mod:`.findings` (findings and the doctor's decisions on them)."""

from .findings import (
    FindingAcceptApi,
    FindingDetailApi,
    FindingRejectApi,
    StudyFindingsApi,
)
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
    "ReportFinalizeApi",
    "ReportPdfApi",
    "SegmentationMeasurementsApi",
    "StudyFindingsApi",
    "StudyReportsApi",
]
