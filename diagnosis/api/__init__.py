"""REST API of the diagnosis app, one module per section: :mod:`.reports` (measurements and reports),
:mod:`.findings` (findings and the doctor's decisions on them), :mod:`.postprocessing` (doctors'
scripts run in the sandbox), :mod:`.longitudinal` (a study compared with its prior), :mod:`.recist`
(RECIST 1.1 lesions and response), :mod:`.similar` (similar cases), :mod:`.pacs`
(deliveries of signed reports to the PACS) and :mod:`.pacs_priors` (a patient's priors in the PACS)."""

from .findings import (
    FindingAcceptApi,
    FindingDetailApi,
    FindingRejectApi,
    ReportLungRadsConfirmApi,
    StudyFindingComparisonApi,
    StudyLungRadsApi,
    StudyFindingsApi,
)
from .longitudinal import (
    FindingMatchUnlinkApi,
    StudyComparisonApi,
    StudyComparisonLinkApi,
    StudyComparisonPriorVolumeApi,
    StudyGrowthApi,
)
from .pacs import ReportPacsResendApi, ReportPacsSendsApi
from .pacs_priors import PatientPacsRetrievesApi, PatientPacsStudiesApi
from .postprocessing import (
    PostProcessingRunDetailApi,
    PostProcessingRunPlotApi,
    PostProcessingScriptsApi,
    StudyPostProcessingRunsApi,
)
from .reads import SeriesLidcReadsApi, SeriesLuna16AnnotationsApi
from .recist import StudyRecistApi
from .similar import StudySimilarCasesApi
from .reports import (
    ReportAmendApi,
    ReportDetailApi,
    ReportFinalizeApi,
    ReportPdfApi,
    SegmentationMeasurementsApi,
    StudyReportsApi,
)

__all__ = [
    "PatientPacsRetrievesApi",
    "PatientPacsStudiesApi",
    "StudyRecistApi",
    "StudySimilarCasesApi",
    "FindingMatchUnlinkApi",
    "StudyComparisonApi",
    "StudyComparisonLinkApi",
    "StudyComparisonPriorVolumeApi",
    "StudyGrowthApi",
    "FindingAcceptApi",
    "FindingDetailApi",
    "FindingRejectApi",
    "PostProcessingRunDetailApi",
    "PostProcessingRunPlotApi",
    "PostProcessingScriptsApi",
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
    "StudyPostProcessingRunsApi",
    "StudyReportsApi",
]
