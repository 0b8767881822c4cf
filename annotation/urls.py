from django.urls import path

from . import views, views_models

app_name = "annotation"
urlpatterns = [
    path("", views.study_list, name="study-list"),
    path("upload/", views.study_upload, name="study-upload"),
    path("export/", views.studies_export, name="studies-export"),
    path("next/", views.next_studies, name="next-studies"),
    path("labels/", views.label_sets, name="label-sets"),
    path("datasets/", views.training_datasets, name="training-datasets"),
    path("datasets/<int:dataset_id>/train/", views.training_run_start, name="training-run-start"),
    path("datasets/<int:dataset_id>/download/", views.training_dataset_download, name="training-dataset-download"),
    path("training-runs/<int:run_id>/", views.training_run_detail, name="training-run"),
    path("models/", views_models.model_list, name="model-list"),
    path("models/import/", views_models.model_import, name="model-import"),
    path("models/review-threshold/", views_models.review_threshold_set, name="review-threshold"),
    path("models/<int:model_id>/", views_models.model_card, name="model-card"),
    path("models/<int:model_id>/export.onnx", views_models.model_export_onnx, name="model-export-onnx"),
    path("<int:study_id>/", views.study_detail, name="study-detail"),
]
