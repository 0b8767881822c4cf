"""REST API of the knowledge-graph assistant (mounted at /api/kg/)."""

from django.urls import path

from . import api

app_name = "knowledge_graph_api"
urlpatterns = [
    path("ask/", api.AskApi.as_view(), name="ask"),
    path("entities/", api.EntitySearchApi.as_view(), name="entity-search"),
    path("entities/<str:label>/<path:name>/", api.EntityDetailApi.as_view(), name="entity-detail"),
    path("panel/<str:label>/<path:name>/", api.EntityPanelApi.as_view(), name="entity-panel"),
    path("mentions/", api.EntityMentionsApi.as_view(), name="mentions"),
    path("synonyms/", api.SynonymListApi.as_view(), name="synonym-list"),
    path("synonyms/create/", api.SynonymCreateApi.as_view(), name="synonym-create"),
]
