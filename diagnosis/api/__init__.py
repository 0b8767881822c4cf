"""REST API of the diagnosis app, one module per section: :mod:`.reports` (measurements and reports),
:mod:`.findings` (findings and the doctor's decisions on them), :mod:`.postprocessing` (doctors'
scripts run in the sandbox) and :mod:`.longitudinal` (a study compared with its prior)."""

from .findings import (
    FindingAcceptApi,
    FindingDetailApi,
    FindingRejectApi,
    ReportLungRadsConfirmApi,
    StudyFindingComparisonApi,
    StudyLungRadsApi,
    StudyFindingsApi,
)
from .postprocessing import (
    PostProcessingRunDetailApi,
    PostProcessingRunPlotApi,
    PostProcessingScriptsApi,
    StudyPostProcessingRunsApi,
)

from .longitudinal import FindingMatchUnlinkApi, StudyComparisonApi, StudyComparisonLinkApi
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
    "FindingMatchUnlinkApi",
    "StudyComparisonApi",
    "StudyComparisonLinkApi",
    "FindingAcceptApi",
    "FindingDetailApi",
    "FindingRejectApi",
    "PostProcessingRunDetailApi",
    "PostProcessingRunPlotApi",
    "PostProcessingScriptsApi",
    "ReportAmendApi",
    "ReportDetailApi",
    "ReportFinalizeApi",
    "ReportPdfApi",
    "SegmentationMeasurementsApi",
    "SeriesLidcReadsApi",
    "SeriesLuna16AnnotationsApi",
    "ReportLungRadsConfirmApi",
    "StudyFindingComparisonApi",
    "StudyLungRadsApi",
    "StudyFindingsApi",
    "StudyPostProcessingRunsApi",
    "StudyReportsApi",
]
