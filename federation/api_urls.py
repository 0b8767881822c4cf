"""REST API routes of the federation app (mounted under /api/federation/)."""

from django.urls import path

from . import api

urlpatterns = [
    path("tasks/", api.TaskListCreateApi.as_view(), name="federation-task-list"),
    path("tasks/<int:task_id>/", api.TaskDetailApi.as_view(), name="federation-task-detail"),
    path("tasks/<int:task_id>/start/", api.TaskStartApi.as_view(), name="federation-task-start"),
    path("tasks/<int:task_id>/resume/", api.TaskStartApi.as_view(), name="federation-task-resume"),
    path("tasks/<int:task_id>/pause/", api.TaskPauseApi.as_view(), name="federation-task-pause"),
    path("tasks/<int:task_id>/cancel/", api.TaskCancelApi.as_view(), name="federation-task-cancel"),
    path("tasks/<int:task_id>/register-model/", api.TaskRegisterModelApi.as_view(), name="federation-task-register-model"),
    path("tasks/<int:task_id>/ledger/", api.TaskLedgerApi.as_view(), name="federation-task-ledger"),
    path("enrol/", api.SiteEnrolApi.as_view(), name="federation-site-enrol"),
    path("invitations/", api.InvitationListApi.as_view(), name="federation-invitation-list"),
    path("invitations/<int:participant_id>/respond/", api.InvitationRespondApi.as_view(), name="federation-invitation-respond"),
]
