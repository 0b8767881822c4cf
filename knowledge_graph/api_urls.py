"""REST API of the knowledge-graph assistant (mounted at /api/kg/)."""

app_name = "knowledge_graph_api"
urlpatterns: list = []
