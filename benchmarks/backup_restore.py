"""Time ``backup`` and ``restore`` of a portal against the plain copies they are made of, in the same run.

Builds a portal on a private SQLite, SeaweedFS and FalkorDB (started here): the LIDC-IDRI-0001 chest CT
imported from ../shared/data (133 DICOM slices stored as originals plus the canonical NIfTI volume)
and the first ``--kg-records`` CMeKG triples imported into the graph. Then, part by part:

- objects: our export (stream, hash, content-addressed files, index) against boto3 ``download_file``
  of the same objects; our restore against ``upload_file`` of them;
- database: our export against ``manage.py dumpdata --format jsonl`` (the same serialiser);
- graph: our export (keyset-paged Cypher), and our restore against the original import of the same
  triples (``batch_write``);
- the manifest: hashing every file, and the check a restore makes before writing.

Ratios are ours / baseline (1.0 = as fast as the plain copy). Timed once each (a cold, real run).

Run: ``python benchmarks/backup_restore.py [--kg-records 50000]`` (ports from BACKUP_BENCH_S3_PORT,
BACKUP_BENCH_REDIS_PORT, BACKUP_BENCH_BOLT_PORT; defaults 28541, 26541, 27741).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("YIXIN_SHARED_DATA", REPO.parent / "shared" / "data"))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kg-records", type=int, default=50000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings.test",
        "YIXIN_VAR_DIR": str(workdir / "var"),
        "YIXIN_S3_PORT": os.environ.get("BACKUP_BENCH_S3_PORT", "28541"),
        "YIXIN_REDIS_PORT": os.environ.get("BACKUP_BENCH_REDIS_PORT", "26541"),
        "YIXIN_BOLT_PORT": os.environ.get("BACKUP_BENCH_BOLT_PORT", "27741"),
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "FEDERATION_DIR": str(workdir / "federation"),
    })
    for name in ("S3_ENDPOINT_URL", "NEO4J_URI", "REDIS_URL"):
        os.environ.pop(name, None)
    from portal import embedded

    s3_port, redis_port, bolt_port = (int(os.environ[f"YIXIN_{n}_PORT"]) for n in ("S3", "REDIS", "BOLT"))
    processes = [
        embedded.EmbeddedProcess(embedded.seaweedfs_command(s3_port=s3_port, data_dir=workdir / "s3"),
                                 log_path=workdir / "s3.log", ready_port=s3_port).start(),
        embedded.EmbeddedProcess(embedded.redis_command(port=redis_port, bolt_port=bolt_port,
                                                        data_dir=workdir / "redis", persist=False),
                                 log_path=workdir / "redis.log", ready_port=bolt_port).start(),
    ]
    try:
        return run(workdir, args.kg_records)
    finally:
        for process in reversed(processes):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: Path, kg_records: int) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from annotation import services as annotation_services
    from knowledge_graph.backup import graph_backup_export, graph_backup_restore
    from knowledge_graph.connection import graph_client
    from knowledge_graph.graph import store
    from knowledge_graph.importers import batch_write, cmekg_parse
    from knowledge_graph.importers.cmekg import vocabulary_read
    from portal import embedded
    from portal.backup import database, objects
    from portal.backup.manifest import manifest_verify, manifest_write
    from portal.services import hospital_create, user_create
    from portal.storage import s3_client, storage_ensure_bucket

    embedded.wait_for_s3(settings.S3_ENDPOINT_URL)
    call_command("migrate", verbosity=0)
    storage_ensure_bucket()
    hospital = hospital_create(code="bench", name="基准医院")
    doctor = user_create(username="bench-doctor", password="bench-password-1", role="doctor", hospital=hospital)
    lidc = SHARED / "lidc_idri_0001_ct_nodules" / "dicom"
    if not lidc.is_dir():
        print(f"real data missing: {lidc}")
        return 1
    import_s, _ = timed(lambda: annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="BENCH-1",
                                                                  paths=[lidc]))
    vocabulary = vocabulary_read(SHARED / "zh_medical_kg" / "qasystem_dict")
    batch = cmekg_parse(SHARED / "zh_medical_kg" / "cmekg_triples.jsonl.gz", vocabulary=vocabulary, limit=kg_records)
    client = graph_client()
    store.graph_clear(client)
    kg_import_s, _ = timed(lambda: batch_write(client, batch, source="bench"))
    print(f"portal: LIDC-IDRI-0001 imported in {import_s:.1f} s; {kg_records:,} CMeKG triples imported in "
          f"{kg_import_s:.1f} s")

    # -- objects ---------------------------------------------------------------------------
    s3 = s3_client()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET)
            for o in page.get("Contents", [])]
    plain = workdir / "plain"
    plain.mkdir()
    base_s, _ = timed(lambda: [s3.download_file(settings.S3_BUCKET, k, str(plain / f"{i}"))
                               for i, k in enumerate(keys)])
    backup = workdir / "backup"
    backup.mkdir()
    ours_s, counts = timed(lambda: objects.objects_export(backup))
    mb = counts["bytes"] / 1e6
    print(f"objects export: {counts['objects']} objects, {mb:.1f} MB: ours {ours_s:.2f} s ({mb / ours_s:.0f} MB/s), "
          f"download_file {base_s:.2f} s → ratio {ours_s / base_s:.2f}")

    # -- database ----------------------------------------------------------------------------
    ours_db_s, rows = timed(lambda: database.database_export(backup))
    base_db_s, _ = timed(lambda: call_command("dumpdata", format="jsonl", output=str(workdir / "dumpdata.jsonl"),
                                              natural_foreign=True, verbosity=0))
    print(f"database export: {sum(rows.values()):,} rows: ours {ours_db_s:.2f} s, dumpdata {base_db_s:.2f} s → "
          f"ratio {ours_db_s / base_db_s:.2f}")

    # -- graph -------------------------------------------------------------------------------
    (backup / "graph").mkdir()
    graph_s, graph_counts = timed(lambda: graph_backup_export(backup / "graph"))
    print(f"graph export: {graph_counts['nodes']:,} nodes, {graph_counts['relationships']:,} relationships in "
          f"{graph_s:.1f} s ({(graph_counts['nodes'] + graph_counts['relationships']) / graph_s:,.0f} elements/s)")

    # -- manifest ----------------------------------------------------------------------------
    manifest_s, _ = timed(lambda: manifest_write(backup, created_at="bench", database={}, counts={}))
    verify_s, _ = timed(lambda: manifest_verify(backup))
    print(f"manifest: hashing every file {manifest_s:.2f} s; verifying before a restore {verify_s:.2f} s")

    # -- restore -----------------------------------------------------------------------------
    for key in keys:
        s3.delete_object(Bucket=settings.S3_BUCKET, Key=key)
    base_up_s, _ = timed(lambda: [s3.upload_file(str(plain / f"{i}"), settings.S3_BUCKET, k)
                                  for i, k in enumerate(keys)])
    for key in keys:
        s3.delete_object(Bucket=settings.S3_BUCKET, Key=key)
    ours_up_s, _ = timed(lambda: objects.objects_restore(backup))
    print(f"objects restore: ours {ours_up_s:.2f} s, upload_file {base_up_s:.2f} s → ratio {ours_up_s / base_up_s:.2f}")
    store.graph_clear(client)
    graph_restore_s, restored = timed(lambda: graph_backup_restore(backup / "graph"))
    assert restored == graph_counts, (restored, graph_counts)
    print(f"graph restore: {graph_restore_s:.1f} s, the original import of the same triples {kg_import_s:.1f} s → "
          f"ratio {graph_restore_s / kg_import_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
