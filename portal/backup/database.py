"""The database part of a backup: Django's own serialisation, one JSON object per line.

Why Django's serialisation rather than ``pg_dump``: the embedded stack runs on SQLite and production on
PostgreSQL, and a hospital moving from one to the other needs a backup that loads into both; JSON
Lines with natural foreign keys to content types and permissions does, keeps every primary key (the
federation ledger signs task ids, object keys name study ids), and needs no client binary of the
server's exact version. Rows are written model by model through ``QuerySet.iterator()`` and read back
line by line, so neither side holds a table in memory. The price is speed on very large databases,
where ``pg_dump`` would be faster; the schema must also match (the manifest records the applied
migrations and restore refuses a backup of another schema).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.apps import apps
from django.core import serializers
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.recorder import MigrationRecorder

from .parts import backup_seed_rows

FILE_NAME = "database.jsonl"

# Content types and permissions are created by ``migrate`` from the code itself and referenced by
# natural key; sessions are short-lived log-ins, not portal state.
_SKIPPED = {"contenttypes.contenttype", "auth.permission", "sessions.session"}


def _models() -> list:
    """Return the concrete models to back up, ordered so that natural-key dependencies come first."""
    app_list = {}
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed or model._meta.label_lower in _SKIPPED:
            continue
        app_list.setdefault(model._meta.app_config, []).append(model)
    return serializers.sort_dependencies(app_list.items(), allow_cycles=True)


def database_counts() -> dict[str, int]:
    """Return the number of rows of every backed-up model, ``{"app_label.modelname": n}``."""
    return {model._meta.label_lower: model._base_manager.count() for model in _models()}


def database_data_rows() -> int:
    """Return the number of rows that hold data: all backed-up rows but the seed rows migrations create."""
    seeds = backup_seed_rows()
    total = 0
    for model in _models():
        queryset = model._base_manager.all()
        lookup = seeds.get(model._meta.label_lower)
        if lookup is not None:
            queryset = queryset.exclude(**lookup)
        total += queryset.count()
    return total


def database_migrations() -> dict[str, list[str]]:
    """Return the applied migrations per app, ``{"app_label": [name, …]}`` (sorted)."""
    applied: dict[str, list[str]] = {}
    for app_label, name in MigrationRecorder(connections[DEFAULT_DB_ALIAS]).applied_migrations():
        applied.setdefault(app_label, []).append(name)
    return {app: sorted(names) for app, names in sorted(applied.items())}


def _counted(iterator, counter: list[int]):
    for row in iterator:
        counter[0] += 1
        yield row


def database_export(folder: Path) -> dict[str, int]:
    """Write every backed-up row to ``folder/database.jsonl`` and return the rows written per model.

    All rows are read in one transaction: a consistent snapshot (PostgreSQL: ``REPEATABLE READ``; SQLite,
    whose transactions here begin ``IMMEDIATE``: writers wait, up to the 30 s busy timeout, until the
    rows are written).
    """
    connection = connections[DEFAULT_DB_ALIAS]
    counts: dict[str, int] = {}
    outermost = not connection.in_atomic_block
    with transaction.atomic(), open(folder / FILE_NAME, "w", encoding="utf-8") as stream:
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for model in _models():
            written = [0]
            queryset = model._base_manager.order_by(model._meta.pk.name)
            serializers.serialize(
                "jsonl", _counted(queryset.iterator(chunk_size=2000), written), stream=stream,
                use_natural_foreign_keys=True, use_natural_primary_keys=False,
            )
            counts[model._meta.label_lower] = written[0]
    return counts


def database_file_models(folder: Path):
    """Yield the model label (``"app_label.modelname"``) of every row in ``folder/database.jsonl``, in order.

    Raises
    ------
    ValueError
        A line that is not a JSON object naming its model.
    """
    with open(folder / FILE_NAME, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                model = json.loads(line)["model"]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{FILE_NAME} line {number} is not a serialised row") from None
            yield str(model).lower()


def _tables_to_clear(connection) -> list[str]:
    keep = {apps.get_model(label)._meta.db_table for label in ("contenttypes.contenttype", "auth.permission")}
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    return [t for t in tables if t not in keep]


def database_clear() -> None:
    """Delete every row (content types and permissions stay: ``migrate`` owns them). No signals are sent."""
    connection = connections[DEFAULT_DB_ALIAS]
    statements = connection.ops.sql_flush(no_style(), _tables_to_clear(connection), reset_sequences=True)
    with transaction.atomic():
        connection.ops.execute_sql_flush(statements)


def database_restore(folder: Path) -> dict[str, int]:
    """Empty the database and load ``folder/database.jsonl`` into it, all in one transaction.

    The seed rows of a freshly migrated target are replaced by the backup's. ``loaddata`` resets the
    PostgreSQL sequences after loading, and checks every foreign key before the commit.

    Returns
    -------
    dict
        Rows per model after the load.
    """
    with transaction.atomic():
        database_clear()
        call_command("loaddata", str(folder / FILE_NAME), verbosity=0)
    return database_counts()
