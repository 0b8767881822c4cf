"""``python manage.py kg_import FILE --format cmekg|qasystem|vocab``: import into the knowledge graph."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from knowledge_graph import services
from knowledge_graph.graph import GraphError
from knowledge_graph.importers import FORMATS, batch_rows


class Command(BaseCommand):
    help = "Import CMeKG triples, a QASystemOnMedicalKG medical.json file or entity vocabularies (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the file (for --format vocab: the folder of disease.txt, symptom.txt …)")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, required=True)
        parser.add_argument(
            "--vocab",
            dest="vocab",
            default=None,
            help="CMeKG only: a folder of vocabularies that type the entities and add their names",
        )
        parser.add_argument("--limit", type=int, default=None, help="read only the first N records")
        parser.add_argument("--clear", action="store_true", help="delete the whole graph database first")
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, path, fmt, vocab, limit, clear, **options):
        as_json, no_progress = options["json"], options["no_progress"]
        from tqdm import tqdm

        bar = None

        def on_parsed(batch):
            nonlocal bar
            if not no_progress:
                bar = tqdm(total=batch_rows(batch), unit="row", desc="writing", file=sys.stderr, mininterval=0.5)

        def progress(stage, rows):
            if bar is not None:
                bar.set_description(stage, refresh=False)
                bar.update(rows)

        try:
            if clear:
                self.stderr.write(f"deleted {services.graph_reset()} nodes")
            summary = services.graph_import(
                path=Path(path),
                fmt=fmt,
                vocabulary_dir=Path(vocab) if vocab else None,
                limit=limit,
                progress=progress,
                on_parsed=on_parsed,
            )
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except GraphError as exc:
            raise CommandError(f"the knowledge graph failed: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
            services.graph_clients_close()
        if as_json:
            self.stdout.write(_json(summary.as_dict()))
        else:
            for line in summary.lines():
                self.stdout.write(line)


def _json(data) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)
