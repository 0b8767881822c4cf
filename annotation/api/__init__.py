"""REST API of the annotation app: one APIView per operation; selectors scope, services write.

One module per section, as in Zulip's ``zerver/actions/``: :mod:`.studies` (studies, volumes, models,
one-click runs) and the workbench's :mod:`.versions`, :mod:`.export_import`, :mod:`.label_sets`,
:mod:`.review`, :mod:`.active_learning` and :mod:`.training`; payloads and schema components shared between them live in
:mod:`.common`. URLconfs and other apps import from ``annotation.api``.
"""

from drf_spectacular.utils import extend_schema_serializer
from rest_framework.views import APIView

from .active_learning import ActiveLearningApi
from .common import ErrorSerializer, VersionSerializer, segmentation_payload, version_payload
from .export_import import (
    DatasetImportApi,
    SegmentationExportApi,
    SegmentationImportApi,
    SegmentationModelBundleApi,
    StudiesExportApi,
)
from .label_sets import (
    LabelInputSerializer,
    LabelSearchApi,
    LabelSetDetailApi,
    LabelSetListApi,
    LabelUpsertApi,
    SeriesLabelSetSegmentationApi,
    label_set_payload,
)
from .review import MyAssignmentsApi, SegmentationReviewApi, StudyAssignmentsApi, StudyReviewApi, comment_payload
from .studies import (
    InferenceRunCancelApi,
    InferenceRunCreateApi,
    InferenceRunDetailApi,
    RunListSerializer,
    RunSerializer,
    SegmentationLabelmapApi,
    SegmentationModelListApi,
    SegmentationUncertaintyApi,
    SeriesVolumeApi,
    StudyDetailApi,
    StudyImportApi,
    StudyListApi,
    StudyListSerializer,
    StudySerializer,
    model_payload,
    series_payload,
    study_payload,
)
from .training import TrainingRunCancelApi, TrainingRunCreateApi, TrainingRunDetailApi, TrainingRunSerializer
from .versions import (
    LabelTableField,
    SegmentationCompareApi,
    SegmentationCompareChangesApi,
    SegmentationMakeCurrentApi,
    SegmentationRefineApi,
    SegmentationVersionsApi,
    SeriesSegmentationCreateApi,
)

__all__ = [
    "TrainingRunCancelApi",
    "TrainingRunCreateApi",
    "TrainingRunDetailApi",
    "TrainingRunSerializer",
    "ActiveLearningApi",
    "DatasetImportApi",
    "ErrorSerializer",
    "InferenceRunCancelApi",
    "InferenceRunCreateApi",
    "InferenceRunDetailApi",
    "LabelInputSerializer",
    "LabelSearchApi",
    "LabelSetDetailApi",
    "LabelSetListApi",
    "LabelTableField",
    "LabelUpsertApi",
    "MyAssignmentsApi",
    "RunListSerializer",
    "RunSerializer",
    "SegmentationCompareApi",
    "SegmentationCompareChangesApi",
    "SegmentationExportApi",
    "SegmentationImportApi",
    "SegmentationLabelmapApi",
    "SegmentationUncertaintyApi",
    "SegmentationMakeCurrentApi",
    "SegmentationModelBundleApi",
    "SegmentationModelListApi",
    "SegmentationRefineApi",
    "SegmentationReviewApi",
    "SegmentationVersionsApi",
    "SeriesLabelSetSegmentationApi",
    "SeriesSegmentationCreateApi",
    "SeriesVolumeApi",
    "StudiesExportApi",
    "StudyAssignmentsApi",
    "StudyDetailApi",
    "StudyImportApi",
    "StudyListApi",
    "StudyListSerializer",
    "StudyReviewApi",
    "StudySerializer",
    "VersionSerializer",
    "comment_payload",
    "label_set_payload",
    "model_payload",
    "segmentation_payload",
    "series_payload",
    "study_payload",
    "version_payload",
]

# drf-spectacular names request components after the serializer class; every view's nested
# "InputSerializer" would become the same "InputRequest" component, so give each its own name.
for _view in list(globals().values()):
    if isinstance(_view, type) and issubclass(_view, APIView) and "InputSerializer" in _view.__dict__:
        extend_schema_serializer(component_name=f"{_view.__name__.removesuffix('Api')}Input")(_view.InputSerializer)
