from django.urls import path

from . import views

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
    path("<int:study_id>/", views.study_detail, name="study-detail"),
]
