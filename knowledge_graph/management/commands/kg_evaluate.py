"""``python manage.py kg_evaluate``: accuracy of question classification and entity recognition."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from knowledge_graph import services
from knowledge_graph.graph import GraphError
from knowledge_graph.qa.evaluation import evaluate, evaluation_read

DEFAULT_SET = Path(services.__file__).resolve().parent / "data" / "evaluation.tsv"


class Command(BaseCommand):
    help = "Run the evaluation set against the configured graph and print classification and recognition accuracy."

    def add_arguments(self, parser):
        parser.add_argument("--file", default=str(DEFAULT_SET), help="evaluation set (TSV)")
        parser.add_argument("--json", action="store_true", help="print the scores as JSON")
        parser.add_argument("--errors", type=int, default=15, help="how many mistakes to list")
        parser.add_argument(
            "--min-accuracy",
            type=float,
            default=None,
            help="exit with an error when classification accuracy is below this (0–1)",
        )

    def handle(self, *args, **options):
        try:
            items = evaluation_read(Path(options["file"]))
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        try:
            warm_s = services.kg_warm()
            result = evaluate(services.qa_pipeline(), items)
        except GraphError as exc:
            raise CommandError(f"the knowledge graph failed: {exc}") from exc
        finally:
            services.graph_clients_close()
        summary = result.summary()
        summary["engine_build_s"] = round(warm_s, 2)
        if options["json"]:
            summary["errors"] = result.errors
            self.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2))
        else:
            self.stdout.write(f"questions: {summary['questions']}")
            self.stdout.write(f"question classification accuracy: {summary['classification_accuracy']:.1%}")
            self.stdout.write(
                f"entity recognition accuracy (exact set): {summary['entity_accuracy']:.1%}  "
                f"precision {summary['entity_precision']:.1%}  recall {summary['entity_recall']:.1%}"
            )
            self.stdout.write(
                f"answer fact recall: {summary['fact_recall']:.1%}  answered: {summary['answered_rate']:.1%}"
            )
            self.stdout.write(
                f"latency: p50 {summary['latency_ms_p50']} ms, p95 {summary['latency_ms_p95']} ms "
                f"(engine built in {summary['engine_build_s']} s)"
            )
            for error in result.errors[: options["errors"]]:
                self.stdout.write(
                    f"  line {error['line']}: {error['question']}  types {error['expected_types']} → "
                    f"{error['predicted_types']}  entities {error['expected_entities']} → {error['predicted_entities']}"
                    + (f"  missing {error['missing_facts']}" if error["missing_facts"] else "")
                )
        if options["min_accuracy"] is not None and result.classification_accuracy < options["min_accuracy"]:
            raise CommandError(
                f"classification accuracy {result.classification_accuracy:.1%} is below {options['min_accuracy']:.1%}"
            )
