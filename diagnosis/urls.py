from django.urls import path

from . import views

app_name = "diagnosis"
urlpatterns = [
    path("new/<int:study_id>/", views.report_create, name="report-create"),
    path("<int:report_id>/", views.report_detail, name="report-detail"),
    path("<int:report_id>/amend/", views.report_amend, name="report-amend"),
    path("<int:report_id>/lung-rads/", views.report_lung_rads_confirm, name="report-lung-rads-confirm"),
    path("<int:report_id>/pacs/resend/", views.report_results_resend, name="report-pacs-resend"),
    path("<int:report_id>/pdf/", views.report_pdf, name="report-pdf"),
    path("compare/<int:study_id>/<int:prior_id>/", views.study_compare_start, name="study-compare"),
    path("compare/<int:study_id>/<int:prior_id>/view/", views.study_compare_view, name="study-compare-view"),
    path("recist/<int:study_id>/", views.study_recist_set, name="study-recist-set"),
    path("similarity-weights/", views.similarity_weights_edit, name="similarity-weights"),
    path("postprocessing/<int:study_id>/run/", views.postprocessing_run_start, name="postprocessing-run-start"),
]
