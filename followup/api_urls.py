"""REST API routes of the followup app (mounted under /api/followup/)."""

urlpatterns: list = []
