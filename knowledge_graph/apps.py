from django.apps import AppConfig


class KnowledgeGraphConfig(AppConfig):
    name = "knowledge_graph"
    default_auto_field = "django.db.models.BigAutoField"
