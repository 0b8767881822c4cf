"""Writes of the diagnosis app, one module per domain: :mod:`.reports` (measuring segmentations,
drafting, signing and amending reports) and :mod:`.findings` (findings: detected, read, imported or
placed by hand, and the doctor's decisions on them)."""

from .findings import (
    finding_accept,
    finding_create,
    finding_edit,
    finding_payload,
    finding_reject,
    findings_from_detection,
)
from .reports import (
    measurement_payload,
    report_amend,
    report_content,
    report_create_draft,
    report_finalize,
    report_pdf_bytes,
    report_render_pdf,
    report_update,
    segmentation_measure,
)

__all__ = [
    "finding_accept",
    "finding_create",
    "finding_edit",
    "finding_payload",
    "finding_reject",
    "findings_from_detection",
    "measurement_payload",
    "report_amend",
    "report_content",
    "report_create_draft",
    "report_finalize",
    "report_pdf_bytes",
    "report_render_pdf",
    "report_update",
    "segmentation_measure",
]
