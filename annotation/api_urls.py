from django.urls import path

from . import api

urlpatterns = [
    path("studies/", api.StudyListApi.as_view(), name="study-list-api"),
    path("studies/import/", api.StudyImportApi.as_view(), name="study-import"),
    path("studies/<int:study_id>/", api.StudyDetailApi.as_view(), name="study-detail-api"),
    path("series/<int:series_id>/volume.nii.gz", api.SeriesVolumeApi.as_view(), name="series-volume"),
    path("series/<int:series_id>/inference-runs/", api.InferenceRunCreateApi.as_view(), name="series-inference-runs"),
    path("segmentations/<int:segmentation_id>/labelmap.nii.gz", api.SegmentationLabelmapApi.as_view(),
         name="segmentation-labelmap"),
    path("segmentation-models/", api.SegmentationModelListApi.as_view(), name="segmentation-model-list"),
    path("inference-runs/<int:run_id>/", api.InferenceRunDetailApi.as_view(), name="inference-run-detail"),
    path("inference-runs/<int:run_id>/cancel/", api.InferenceRunCancelApi.as_view(), name="inference-run-cancel"),
]
