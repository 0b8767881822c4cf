"""REST API routes of the followup app (mounted under /api/followup/)."""

from django.urls import path

from . import api

app_name = "followup-api"

urlpatterns = [
    path("conversations/", api.ConversationListApi.as_view(), name="conversations"),
    path("conversations/<int:conversation_id>/", api.ConversationDetailApi.as_view(), name="conversation"),
    path("conversations/<int:conversation_id>/members/", api.ConversationMembersApi.as_view(), name="conversation-members"),
    path("conversations/<int:conversation_id>/messages/", api.MessageListApi.as_view(), name="messages"),
    path("conversations/<int:conversation_id>/assistant/", api.AssistantAskApi.as_view(), name="assistant"),
    path("conversations/<int:conversation_id>/read/", api.ConversationReadApi.as_view(), name="conversation-read"),
    path("conversations/<int:conversation_id>/attachments/", api.AttachmentUploadApi.as_view(), name="attachments"),
    path("attachments/<int:attachment_id>/", api.AttachmentDownloadApi.as_view(), name="attachment"),
    path("notifications/", api.NotificationListApi.as_view(), name="notifications"),
    path("notifications/<int:notification_id>/read/", api.NotificationReadApi.as_view(), name="notification-read"),
    path("me/contact/", api.ContactPreferenceApi.as_view(), name="my-contact"),
    path("me/reports/", api.MyReportListApi.as_view(), name="my-reports"),
    path("me/reports/<int:report_id>/", api.MyReportDetailApi.as_view(), name="my-report"),
    path("me/reports/<int:report_id>/pdf/", api.MyReportPdfApi.as_view(), name="my-report-pdf"),
    path("me/studies/", api.MyStudyListApi.as_view(), name="my-studies"),
    path("me/studies/<int:study_id>/key-images/<str:plane>.png", api.MyStudyKeyImageApi.as_view(),
         name="my-study-key-image"),
    path("me/plan/", api.MyPlanApi.as_view(), name="my-plan"),
    path("me/questionnaires/", api.MyQuestionnaireListApi.as_view(), name="my-questionnaires"),
    path("occurrences/<int:occurrence_id>/complete/", api.OccurrenceCompleteApi.as_view(), name="occurrence-complete"),
    path("assignments/<int:assignment_id>/", api.AssignmentDetailApi.as_view(), name="assignment"),
    path("assignments/<int:assignment_id>/submit/", api.AssignmentSubmitApi.as_view(), name="assignment-submit"),
    path("assignments/<int:assignment_id>/fhir/", api.AssignmentFhirApi.as_view(), name="assignment-fhir"),
    path("questionnaires/", api.QuestionnaireListApi.as_view(), name="questionnaires"),
    path("questionnaires/import-fhir/", api.QuestionnaireFhirImportApi.as_view(), name="questionnaire-import"),
    path("questionnaires/<int:questionnaire_id>/", api.QuestionnaireDetailApi.as_view(), name="questionnaire"),
    path("questionnaires/<int:questionnaire_id>/fhir/", api.QuestionnaireFhirApi.as_view(), name="questionnaire-fhir"),
    path("questionnaires/<int:questionnaire_id>/assign/", api.QuestionnaireAssignApi.as_view(), name="questionnaire-assign"),
    path("questionnaires/<int:questionnaire_id>/cohort/", api.QuestionnaireCohortApi.as_view(), name="questionnaire-cohort"),
    path("questionnaires/<int:questionnaire_id>/results.csv", api.QuestionnaireCsvApi.as_view(), name="questionnaire-csv"),
    path("groups/", api.GroupListApi.as_view(), name="groups"),
    path("patients/", api.StaffPatientListApi.as_view(), name="patients"),
    path("patients/<int:patient_id>/results/", api.PatientResultsApi.as_view(), name="patient-results"),
    path("patients/<int:patient_id>/plans/", api.PatientPlansApi.as_view(), name="patient-plans"),
    path("plans/<int:plan_id>/items/", api.PlanItemsApi.as_view(), name="plan-items"),
    path("attention/", api.AttentionApi.as_view(), name="attention"),
]
