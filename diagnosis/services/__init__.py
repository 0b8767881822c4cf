"""Writes of the diagnosis app, one module per domain: :mod:`.reports` (measuring segmentations,
drafting, signing and amending reports), :mod:`.findings` (findings: detected, read, imported or
placed by hand, and the doctor's decisions on them), :mod:`.reads` (radiologists' reads imported
from LIDC-IDRI XML and LUNA16 annotations.csv), :mod:`.lung_rads` (the doctor's confirmation of a
Lung-RADS category), :mod:`.postprocessing` (doctors' scripts run in the sandbox),
:mod:`.longitudinal` (a study compared with its prior: registration, finding matches and the doctor's
re-linking), :mod:`.similarity` (similar cases: the hospital's weights and the audited read), :mod:`.recist`
(the doctor's RECIST 1.1 target and non-target lesions), :mod:`.pacs` (the signed report's SEG, SR and
PDF sent to the hospital's PACS) and :mod:`.pacs_priors` (a patient's priors found in and retrieved from
the hospital's PACS)."""

from .findings import (
    finding_accept,
    finding_create,
    finding_edit,
    finding_payload,
    finding_reject,
    findings_from_detection,
)
from .longitudinal import finding_match_link, finding_match_unlink, study_compare, study_compare_request
from .lung_rads import LUNG_RADS_CATEGORIES, report_lung_rads_confirm
from .pacs import (
    report_result_instances,
    report_result_objects_build,
    report_result_objects_store,
    report_results_queue,
    report_results_resend,
    result_send_execute,
)
from .pacs_priors import (
    PacsStudy,
    pacs_priors_find,
    pacs_query_source,
    pacs_retrieve_execute,
    pacs_study_retrieve,
)
from .postprocessing import (
    postprocessing_run_create,
    postprocessing_run_execute,
    postprocessing_run_lost,
    postprocessing_run_payload,
    postprocessing_runs_sweep,
    postprocessing_script_set_active,
    postprocessing_script_upload,
    postprocessing_script_upload_allowed,
)
from .reads import ReadsImport, lidc_reads_import, luna16_annotations_import, reads_import_payload
from .recist import recist_non_target_set, recist_selection_set
from .similarity import similar_cases_read, similarity_weights_may_edit, similarity_weights_set
from .reports import (
    measurement_payload,
    report_accepted_findings,
    report_finding_key_images,
    report_key_images,
    report_amend,
    report_study_label,
    report_content,
    report_create_draft,
    report_finalize,
    report_pdf_bytes,
    report_render_pdf,
    report_update,
    segmentation_measure,
)

__all__ = [
    "PacsStudy",
    "pacs_priors_find",
    "pacs_query_source",
    "pacs_retrieve_execute",
    "pacs_study_retrieve",
    "recist_non_target_set",
    "recist_selection_set",
    "similar_cases_read",
    "similarity_weights_may_edit",
    "similarity_weights_set",
    "finding_match_link",
    "finding_match_unlink",
    "study_compare",
    "study_compare_request",
    "finding_accept",
    "finding_create",
    "finding_edit",
    "finding_payload",
    "finding_reject",
    "lidc_reads_import",
    "postprocessing_run_create",
    "postprocessing_run_execute",
    "postprocessing_run_lost",
    "postprocessing_run_payload",
    "postprocessing_runs_sweep",
    "postprocessing_script_set_active",
    "postprocessing_script_upload",
    "postprocessing_script_upload_allowed",
    "luna16_annotations_import",
    "ReadsImport",
    "reads_import_payload",
    "findings_from_detection",
    "measurement_payload",
    "report_accepted_findings",
    "report_amend",
    "report_result_objects_build",
    "report_results_queue",
    "report_result_instances",
    "report_result_objects_store",
    "report_results_resend",
    "result_send_execute",
    "report_finding_key_images",
    "report_key_images",
    "report_study_label",
    "report_content",
    "report_create_draft",
    "report_finalize",
    "report_lung_rads_confirm",
    "LUNG_RADS_CATEGORIES",
    "report_pdf_bytes",
    "report_render_pdf",
    "report_update",
    "segmentation_measure",
]
