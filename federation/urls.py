"""Web pages of the federation app."""

from django.urls import path

from . import views

app_name = "federation"

urlpatterns = [
    path("", views.task_list, name="task-list"),
    path("tasks/<int:task_id>/", views.task_detail, name="task-detail"),
]
