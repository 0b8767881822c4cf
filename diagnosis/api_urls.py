from django.urls import path

from . import api

urlpatterns = [
    path("segmentations/<int:segmentation_id>/measurements/", api.SegmentationMeasurementsApi.as_view(),
         name="segmentation-measurements"),
    path("studies/<int:study_id>/reports/", api.StudyReportsApi.as_view(), name="study-reports"),
    path("reports/<int:report_id>/", api.ReportDetailApi.as_view(), name="report-detail-api"),
    path("reports/<int:report_id>/finalize/", api.ReportFinalizeApi.as_view(), name="report-finalize"),
    path("reports/<int:report_id>/amend/", api.ReportAmendApi.as_view(), name="report-amend"),
    path("reports/<int:report_id>/pdf/", api.ReportPdfApi.as_view(), name="report-pdf"),
    path("reports/<int:report_id>/pacs/", api.ReportPacsSendsApi.as_view(), name="report-pacs-sends"),
    path("reports/<int:report_id>/pacs/resend/", api.ReportPacsResendApi.as_view(), name="report-pacs-resend-api"),
    path("studies/<int:study_id>/findings/", api.StudyFindingsApi.as_view(), name="study-findings"),
    path("studies/<int:study_id>/findings/comparison/", api.StudyFindingComparisonApi.as_view(),
         name="study-finding-comparison"),
    path("studies/<int:study_id>/lung-rads/", api.StudyLungRadsApi.as_view(), name="study-lung-rads"),
    path("reports/<int:report_id>/lung-rads/", api.ReportLungRadsConfirmApi.as_view(), name="report-lung-rads"),
    path("findings/<int:finding_id>/", api.FindingDetailApi.as_view(), name="finding-detail"),
    path("findings/<int:finding_id>/accept/", api.FindingAcceptApi.as_view(), name="finding-accept"),
    path("findings/<int:finding_id>/reject/", api.FindingRejectApi.as_view(), name="finding-reject"),
    path("series/<int:series_id>/reads/lidc/", api.SeriesLidcReadsApi.as_view(), name="series-lidc-reads"),
    path("series/<int:series_id>/reads/luna16/", api.SeriesLuna16AnnotationsApi.as_view(), name="series-luna16-annotations"),
]
