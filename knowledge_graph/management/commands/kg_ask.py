"""``python manage.py kg_ask "问题" [--json]``: answer one question from the knowledge graph."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from knowledge_graph import services
from knowledge_graph.graph import GraphError
from knowledge_graph.models import QuestionLog


class Command(BaseCommand):
    help = "Answer a Chinese medical question: question type, recognised entities, answer text and facts."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
        parser.add_argument(
            "--context", default=None, help="the JSON context printed by a previous --json answer (for a follow-up)"
        )

    def handle(self, *args, question, **options):
        context = None
        if options["context"]:
            try:
                context = json.loads(options["context"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--context is not JSON: {exc}") from exc
        try:
            answer = services.kg_answer(question, context=context, channel=QuestionLog.Channel.CLI)
            tokens = services.qa_pipeline().recognizer.tokens(answer.question)
        except GraphError as exc:
            raise CommandError(f"the knowledge graph failed: {exc}") from exc
        finally:
            services.graph_clients_close()
        if options["json"]:
            data = answer.as_dict()
            data["tokens"] = tokens
            self.stdout.write(json.dumps(data, ensure_ascii=False, indent=2))
            return
        self.stdout.write(f"question type: {', '.join(answer.question_types) or '-'}")
        self.stdout.write("entities: " + ("、".join(f"{e.name}({e.label}, {e.via})" for e in answer.entities) or "-"))
        self.stdout.write(answer.text)
        for fact in answer.facts:
            self.stdout.write(f"  fact: {fact.subject} -[{fact.relation}]-> {fact.object}")
