"""``python manage.py kg_load_starter``: load the starter graph that ships with the product (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from knowledge_graph import services
from knowledge_graph.graph import GraphError


class Command(BaseCommand):
    help = "Load the starter medical knowledge graph (about 100 common diseases). Safe to run again."

    def handle(self, *args, **options):
        try:
            summary = services.starter_load()
        except GraphError as exc:
            raise CommandError(f"the knowledge graph failed: {exc}") from exc
        finally:
            services.graph_clients_close()
        for line in summary.lines():
            self.stdout.write(line)
