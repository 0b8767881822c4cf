"""Pages of the knowledge-graph assistant (mounted at /kg/)."""

from django.urls import path

from . import views

app_name = "knowledge_graph"
urlpatterns = [
    path("", views.index, name="index"),
    path("search/", views.search, name="search"),
    path("entity/<str:label>/<path:name>/", views.entity, name="entity"),
    path("synonyms/add/", views.synonym_add, name="synonym-add"),
]
