"""Web pages of the followup app (mounted under /followup/)."""

from django.urls import path

from . import views

app_name = "followup"

urlpatterns = [
    path("", views.index, name="index"),
    path("me/", views.me, name="me"),
    path("me/reports/", views.my_reports, name="my-reports"),
    path("me/studies/", views.my_studies, name="my-studies"),
    path("me/plan/", views.my_plan, name="my-plan"),
    path("me/questionnaires/", views.my_questionnaires, name="my-questionnaires"),
    path("me/questionnaires/<int:assignment_id>/", views.my_questionnaire, name="my-questionnaire"),
    path("occurrences/<int:occurrence_id>/done/", views.occurrence_done, name="occurrence-done"),
    path("conversations/", views.conversations, name="conversations"),
    path("conversations/start/", views.conversation_start, name="conversation-start"),
    path("conversations/<int:conversation_id>/", views.conversation, name="conversation"),
    path("patients/<int:patient_id>/", views.patient_followup, name="patient"),
    path("questionnaires/", views.questionnaires, name="questionnaires"),
    path("questionnaires/new/", views.questionnaire_builder, name="questionnaire-builder"),
    path("questionnaires/<int:questionnaire_id>/cohort/", views.questionnaire_cohort, name="questionnaire-cohort"),
]
