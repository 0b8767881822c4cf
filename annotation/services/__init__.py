"""Writes of the annotation app, one module per domain: importing studies, the model registry,
one-click inference runs, segmentation versions and refinements, export and import, label sets,
review, active learning, training datasets and training runs.

Stored objects get fresh keys, so nothing already stored is ever overwritten; when an import or a
run fails, the objects it wrote are deleted again and the database transaction rolls back. Loading
stored volumes and label maps lives below this package, in ``annotation.storage``, and is
re-exported here for callers that load through ``services``.
"""

from ..storage import segmentation_labelmap_load, series_geometry, series_volume_load, stored_file_to_path
from .active_learning import uncertainty_rank_start, uncertainty_score_compute
from .dicom_network import (
    dicom_completion_start,
    dicom_listener_build,
    dicom_peer_create,
    dicom_received_series_import,
    dicom_routing_apply,
    dicom_spool,
    dicom_spool_failed_purge,
)
from .export_import import (
    EXPORT_FORMATS,
    SEG_SOP_CLASS_UID,
    DatasetImportResult,
    dataset_import,
    segmentation_export,
    segmentation_export_json,
    segmentation_import,
    segmentation_layers,
    segmentation_model_export_bundle,
    studies_export_zip,
)
from .imports import ImportResult, patient_get_or_create, study_import
from .inference import (
    inference_run_cancel,
    inference_run_create,
    inference_run_execute,
    inference_run_publish,
    inference_run_wait,
)
from .label_sets import label_set_create, label_set_update, label_upsert, segmentation_create_from_label_set
from .model_routing import organ_default_model_set
from .model_exchange import (
    EXPORT_MODEL_FORMATS,
    IMPORT_BACKENDS,
    segmentation_model_export_file,
    segmentation_model_import,
)
from .pseudonyms import patient_date_offset, patient_deidentifier, patient_pseudonym_get_or_create
from .research_export import study_export_deidentified
from .registry import segmentation_model_register, segmentation_model_weights_path, segmenter_for_model
from .review import review_comment_add, segmentation_review, study_assign
from .run_recovery import SweepResult, inference_run_lost, runs_sweep
from .training_datasets import training_dataset_build, training_dataset_materialise
from .training_runs import (
    TrainingSweepResult,
    training_run_cancel,
    training_run_execute,
    training_run_lost,
    training_run_publish,
    training_run_start,
    training_runs_sweep,
)
from .versions import (
    label_table_validate,
    labelmap_nifti_bytes,
    segmentation_change_map_nifti,
    segmentation_create,
    segmentation_create_blank,
    segmentation_make_current,
    segmentation_refine,
    segmentation_save_diff,
)

__all__ = [
    "EXPORT_FORMATS", "EXPORT_MODEL_FORMATS", "IMPORT_BACKENDS", "SEG_SOP_CLASS_UID", "DatasetImportResult", "ImportResult", "SweepResult",
    "dicom_completion_start", "dicom_listener_build", "dicom_peer_create", "dicom_received_series_import",
    "dicom_routing_apply", "dicom_spool", "dicom_spool_failed_purge", "patient_date_offset", "patient_deidentifier", "patient_pseudonym_get_or_create",
    "study_export_deidentified",
    "dataset_import", "inference_run_cancel", "inference_run_create", "inference_run_execute", "inference_run_lost",
    "inference_run_publish", "inference_run_wait", "runs_sweep",
    "label_set_create", "label_set_update", "label_table_validate", "label_upsert", "labelmap_nifti_bytes",
    "patient_get_or_create", "review_comment_add", "segmentation_change_map_nifti", "segmentation_create",
    "segmentation_create_blank", "segmentation_create_from_label_set", "segmentation_export",
    "segmentation_export_json", "segmentation_import", "segmentation_labelmap_load", "segmentation_layers",
    "segmentation_make_current", "segmentation_model_export_bundle", "segmentation_model_export_file",
    "organ_default_model_set", "segmentation_model_import", "segmentation_model_register",
    "segmentation_model_weights_path", "segmentation_refine", "segmentation_review", "segmentation_save_diff",
    "segmenter_for_model", "series_geometry", "series_volume_load", "stored_file_to_path", "studies_export_zip",
    "study_assign", "study_import", "training_dataset_build", "training_dataset_materialise",
    "TrainingSweepResult", "training_run_cancel", "training_run_execute", "training_run_lost", "training_run_publish",
    "training_run_start", "training_runs_sweep",
    "uncertainty_rank_start", "uncertainty_score_compute",
]
