"""REST API routes of the federation app (mounted under /api/federation/)."""

urlpatterns: list = []
