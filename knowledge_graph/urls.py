"""Pages of the knowledge-graph assistant (mounted at /kg/)."""

app_name = "knowledge_graph"
urlpatterns: list = []
