"""``manage.py backup`` / ``restore``: a whole portal backed up, restored into an empty one, compared.

The source portal holds a real imported CT (``../shared/data``), a segmentation, a signed report, a
chat conversation, a federated task with its keys and signed ledger, and the starter knowledge graph.
The empty target is the same services emptied: the database flushed (as a fresh ``migrate`` leaves it,
with the built-in models registered again), a second bucket, the graph cleared, another federation
folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from portal.storage import s3_client, storage_ensure_bucket
from tests.conftest import REPO_DIR, shared_data

# Committed transactions: PostgreSQL refuses to TRUNCATE (flush, restore) tables with deferred foreign-key
# checks pending in the same transaction, which a test wrapped in one transaction would have.
pytestmark = pytest.mark.django_db(transaction=True)


# --- the source portal -------------------------------------------------------------------------

def _segmentation(study):
    from annotation import services as annotation_services
    from annotation.models import Segmentation

    series = study.series.get()
    label_map = np.zeros(tuple(series.shape), dtype=np.uint8)
    label_map[10:20, 30:50, 30:50] = 1
    return annotation_services.segmentation_create(
        series=series, label_map=label_map, name="lesion", source=Segmentation.Source.MANUAL,
        label_table=[{"index": 1, "name": "lesion", "name_zh": "病灶", "color": "#ff0000"}],
    )


def _signed_report(doctor, study, segmentation):
    from diagnosis import services as diagnosis_services

    report = diagnosis_services.report_create_draft(user=doctor, study=study, segmentation=segmentation)
    report = diagnosis_services.report_update(user=doctor, report=report, impression="右肺下叶结节，建议随访。")
    return diagnosis_services.report_finalize(user=doctor, report=report)


def _chat(doctor, patient_user, study):
    from annotation.models import Patient
    from followup import services as followup_services

    patient = Patient.objects.get(pk=study.patient_id)
    conversation = followup_services.conversation_create(actor=doctor, patient=patient, staff=[doctor])
    followup_services.message_send(sender=doctor, conversation=conversation, body="您好，报告已出，请按时复查。")
    followup_services.message_send(sender=patient_user, conversation=conversation, body="好的，谢谢医生！")
    return conversation


def _federated_task(tmp_path):
    """A task of two hippocampus hospitals with keys on disk and one ingested round (no Flower run):
    each hospital signs its update statement with its own key, as its ClientApp would."""
    from federation import services as federation_services
    from federation.fl import ledger as fl_ledger
    from federation.fl.data import split_non_iid
    from federation.fl.local import arrays_sha256

    split = split_non_iid(shared_data("msd_task04_hippocampus"), tmp_path / "split", sizes=[2, 2], held_out=0)
    task = federation_services.task_create_local(
        data_dirs=[Path(d) for d in split.hospitals], rounds=2, local_epochs=1, strategy="fedavg",
    )
    paths = federation_services.task_keys_ensure(task=task)
    weights = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(5, dtype=np.float32)]
    weights_path = tmp_path / "round-0001.npz"
    np.savez(weights_path, *weights)
    clients = {}
    for i, participant in enumerate(task.participants.order_by("client_id")):
        statement = {"update_sha256": hashlib.sha256(f"update-{i}".encode()).hexdigest(), "num_examples": 2 + i,
                     "metrics": {"train_loss": 0.5 - 0.1 * i}}
        signing_key = fl_ledger.load_private_key(paths.signing_key(participant.client_id).read_bytes())
        signature = fl_ledger.sign_bytes(signing_key, fl_ledger.client_statement(
            task_id=task.pk, round_number=1, kind=fl_ledger.KIND_CLIENT_UPDATE, client=participant.client_id,
            update_sha256=statement["update_sha256"], num_examples=statement["num_examples"],
            metrics=statement["metrics"],
        ))
        clients[participant.client_id] = {
            "status": "answered", "sha256": statement["update_sha256"], "num_examples": statement["num_examples"],
            "metrics": statement["metrics"], "signature": signature,
        }
    record = {"round_number": 1, "global_sha256": arrays_sha256(weights), "num_examples": 5,
              "metrics": {"dice": 0.61}, "clients": clients}
    coordinator_key = fl_ledger.load_private_key(paths.coordinator_signing_key.read_bytes())
    federation_services.round_ingest(task=task, record=record, weights_path=weights_path,
                                     coordinator_key=coordinator_key)
    return task


@pytest.fixture(autouse=True)
def _own_bucket(settings):
    """Give each test a bucket of its own before any object is stored: a backup copies its whole bucket,
    and the session's bucket holds what every earlier test stored (gigabytes late in a full run)."""
    bucket = f"yixin-backup-{uuid.uuid4().hex[:12]}"
    settings.S3_BUCKET = bucket
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"], "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": bucket}}}
    storage_ensure_bucket()


@pytest.fixture(autouse=True)
def _graph_left_empty():
    """Leave the graph empty, and tell the knowledge-graph tests that their starter graph must be loaded
    again (they load it once per session otherwise)."""
    yield
    from knowledge_graph import services as kg_services
    from tests.knowledge_graph import conftest as kg_conftest

    kg_services.graph_reset()
    kg_conftest._loaded["starter"] = False


@pytest.fixture
def source_portal(settings, tmp_path, doctor, patient_user, small_ct_study):
    from knowledge_graph import services as kg_services

    settings.FEDERATION_DIR = tmp_path / "federation-source"
    settings.FEDERATION_DATASETS_ROOT = tmp_path / "datasets"
    kg_services.graph_reset()
    kg_services.starter_load()
    segmentation = _segmentation(small_ct_study)
    report = _signed_report(doctor, small_ct_study, segmentation)
    conversation = _chat(doctor, patient_user, small_ct_study)
    task = _federated_task(tmp_path)
    return {"study": small_ct_study, "segmentation": segmentation, "report": report,
            "conversation": conversation, "task": task}


def build_source_portal(workdir: Path) -> None:
    """Build the same portal outside pytest (``manage.py shell`` of another database engine): a doctor
    and a patient, the small real CT, a segmentation, a signed report, a chat and a federated task."""
    from annotation import services as annotation_services
    from annotation.models import Patient
    from knowledge_graph import services as kg_services
    from portal.models import Role
    from portal.storage import storage_ensure_bucket
    from tests.factories import HospitalFactory, UserFactory

    storage_ensure_bucket()
    kg_services.graph_reset()
    kg_services.starter_load()
    hospital = HospitalFactory()
    doctor = UserFactory(role=Role.DOCTOR, hospital=hospital)
    patient_user = UserFactory(role=Role.PATIENT, hospital=hospital)
    ct = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    study = annotation_services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-1", paths=[ct],
                                             modality="CT").studies[0]
    Patient.objects.filter(pk=study.patient_id).update(user=patient_user)
    segmentation = _segmentation(study)
    _signed_report(doctor, study, segmentation)
    _chat(doctor, patient_user, study)
    _federated_task(workdir)


# --- what is compared --------------------------------------------------------------------------

def _bucket_hashes() -> dict[str, str]:
    client = s3_client()
    hashes = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=django_settings.S3_BUCKET):
        for obj in page.get("Contents", []):
            body = client.get_object(Bucket=django_settings.S3_BUCKET, Key=obj["Key"])["Body"].read()
            hashes[obj["Key"]] = hashlib.sha256(body).hexdigest()
    return hashes


def _folder_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _row_counts() -> dict[str, int]:
    from portal.backup.database import database_counts

    return database_counts()


def _graph_state() -> dict:
    from knowledge_graph.connection import graph_client
    from knowledge_graph.graph import store

    client = graph_client()
    names = client.read("MATCH (n:Disease) RETURN n.name AS name ORDER BY name LIMIT 1")
    return {"counts": store.graph_counts(client),
            "first_disease": store.entity_properties(client, "Disease", names[0]["name"]) if names else None,
            "edges": sorted(map(json.dumps, client.read(
                "MATCH (a)-[r]->(b) RETURN a.name AS a, type(r) AS t, r.predicate AS p, b.name AS b")))}


def _empty_target(settings, tmp_path) -> None:
    """Turn the services into an empty portal: flushed database (plus the rows migrations create), a
    new bucket, a cleared graph and a new federation folder."""
    from knowledge_graph import services as kg_services

    call_command("flush", interactive=False, verbosity=0)
    import_module("annotation.migrations.0002_builtin_lung_model").register(apps, None)
    import_module("annotation.migrations.0005_model_kind_and_nodule_detector").register_nodule_detector(apps, None)
    bucket = f"yixin-restore-{uuid.uuid4().hex[:12]}"
    settings.S3_BUCKET = bucket
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"], "OPTIONS": {**settings.STORAGES["default"]["OPTIONS"], "bucket_name": bucket}}}
    storage_ensure_bucket()
    kg_services.graph_reset()
    settings.FEDERATION_DIR = tmp_path / "federation-target"


# --- tests ---------------------------------------------------------------------------------------

def test_backup_restored_into_an_empty_portal_holds_everything(settings, tmp_path, source_portal):
    from annotation.models import Series
    from annotation.storage import series_volume_load
    from diagnosis.models import Report
    from federation import services as federation_services
    from federation.models import FederatedTask, LedgerEntry
    from followup.models import Message

    study = source_portal["study"]
    volume_before = series_volume_load(study.series.get())
    rows_before = _row_counts()
    objects_before = _bucket_hashes()
    graph_before = _graph_state()
    federation_before = _folder_hashes(settings.FEDERATION_DIR)
    messages_before = list(Message.objects.order_by("pk").values_list("body", flat=True))
    assert rows_before["federation.ledgerentry"] == 3 and rows_before["followup.message"] == 2
    assert graph_before["counts"]["nodes"]["Disease"] > 0 and federation_before

    call_command("backup", out=str(tmp_path / "backup"), verbosity=0)

    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["portal"]["git_commit"]
    assert manifest["counts"]["database"] == rows_before
    assert manifest["counts"]["objects"]["objects"] == len(objects_before)

    _empty_target(settings, tmp_path)
    assert not Series.objects.exists() and not _bucket_hashes()

    call_command("restore", source=str(tmp_path / "backup"), verbosity=0)

    # Every row, object, graph element and federation file is back, byte for byte.
    rows_after = _row_counts()
    assert rows_after == {**rows_before, "portal.auditlog": rows_before["portal.auditlog"] + 1}  # + the restore's own
    assert _bucket_hashes() == objects_before
    assert _graph_state() == graph_before
    assert _folder_hashes(settings.FEDERATION_DIR) == federation_before
    assert list(Message.objects.order_by("pk").values_list("body", flat=True)) == messages_before
    # The study's volume loads from the new bucket, identical.
    volume_after = series_volume_load(Series.objects.get(study_id=study.pk))
    np.testing.assert_array_equal(volume_after.array, volume_before.array)
    assert volume_after.geometry == volume_before.geometry
    # The signed report's PDF still matches its stored hash; the ledger still verifies with the restored keys.
    report = Report.objects.get(pk=source_portal["report"].pk)
    with report.pdf_file.open("rb") as pdf:
        assert hashlib.sha256(pdf.read()).hexdigest() == report.pdf_sha256
    task = FederatedTask.objects.get(pk=source_portal["task"].pk)
    entries = LedgerEntry.objects.filter(task=task).count()
    assert federation_services.ledger_verify(task=task) == {"ok": True, "entries": entries}
    assert (settings.FEDERATION_DIR / f"task-{task.pk}" / "pki" / "coordinator-signing.pem").stat().st_mode & 0o077 == 0
    # The sequences continue after the restored ids (PostgreSQL): new rows get new primary keys.
    from portal.services import hospital_create

    assert hospital_create(code="hafter", name="恢复后新建医院").pk > source_portal["study"].hospital_id


def test_tampered_backup_is_refused_naming_the_file_and_nothing_is_written(settings, tmp_path, source_portal):
    from knowledge_graph.connection import graph_client
    from knowledge_graph.graph import store

    call_command("backup", out=str(tmp_path / "backup"), verbosity=0)
    _empty_target(settings, tmp_path)
    manifest_path = tmp_path / "backup" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["database.jsonl"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(CommandError, match="database.jsonl"):
        call_command("restore", source=str(tmp_path / "backup"), verbosity=0)

    from portal.backup import portal_contents

    assert portal_contents() == {"database": 0, "objects": 0, "graph": 0, "federation": 0}
    assert sum(store.graph_counts(graph_client())["nodes"].values()) == 0


def test_truncated_object_file_is_refused_naming_it(settings, tmp_path, source_portal):
    call_command("backup", out=str(tmp_path / "backup"), verbosity=0)
    _empty_target(settings, tmp_path)
    victim = min((tmp_path / "backup" / "objects").iterdir())
    victim.write_bytes(victim.read_bytes()[:100])

    with pytest.raises(CommandError, match=f"objects/{victim.name}"):
        call_command("restore", source=str(tmp_path / "backup"), verbosity=0)

    from portal.backup import portal_contents

    assert portal_contents() == {"database": 0, "objects": 0, "graph": 0, "federation": 0}


def test_restore_onto_a_portal_with_data_is_refused_without_force(settings, tmp_path, source_portal):
    from annotation.models import Study

    call_command("backup", out=str(tmp_path / "backup"), verbosity=0)
    objects_before = _bucket_hashes()
    studies_before = Study.objects.count()

    with pytest.raises(CommandError, match="not empty"):
        call_command("restore", source=str(tmp_path / "backup"), verbosity=0)

    assert Study.objects.count() == studies_before and _bucket_hashes() == objects_before

    # With --force the portal is replaced by the backup's state (a study added since is gone).
    from annotation import services as annotation_services

    ct = shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    annotation_services.study_import(user=source_portal["report"].signed_by, hospital=source_portal["study"].hospital,
                                     patient_mrn="MRN-2", paths=[ct], modality="CT")
    call_command("restore", source=str(tmp_path / "backup"), force=True, verbosity=0)
    assert Study.objects.count() == studies_before
    assert _bucket_hashes() == objects_before


def test_backup_refuses_a_directory_that_holds_files(tmp_path, source_portal):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "notes.txt").write_text("keep me")

    with pytest.raises(CommandError, match="not an empty directory"):
        call_command("backup", out=str(tmp_path / "backup"), verbosity=0)

    assert [p.name for p in (tmp_path / "backup").iterdir()] == ["notes.txt"]


def test_backup_to_s3_and_restore_from_it(settings, tmp_path, source_portal):
    objects_before = _bucket_hashes()
    rows_before = _row_counts()
    location = f"s3://yixin-backups-{uuid.uuid4().hex[:12]}/nightly/1"

    call_command("backup", out=location, verbosity=0)
    with pytest.raises(CommandError, match="already holds a backup"):
        call_command("backup", out=location, verbosity=0)
    _empty_target(settings, tmp_path)
    call_command("restore", source=location, verbosity=0)

    assert _bucket_hashes() == objects_before
    assert _row_counts() == {**rows_before, "portal.auditlog": rows_before["portal.auditlog"] + 1}


def test_backup_into_the_portals_own_bucket_is_refused(db):
    with pytest.raises(CommandError, match="own bucket"):
        call_command("backup", out=f"s3://{django_settings.S3_BUCKET}/backups", verbosity=0)


def test_restore_from_a_folder_without_manifest_is_refused(db, tmp_path):
    (tmp_path / "not-a-backup").mkdir()
    (tmp_path / "not-a-backup" / "database.jsonl").write_text("")

    with pytest.raises(CommandError, match="no manifest.json"):
        call_command("restore", source=str(tmp_path / "not-a-backup"), verbosity=0)


# --- refusals of a small portal's backup: each before anything is written --------------------------

@pytest.fixture
def small_backup(settings, tmp_path, doctor):
    """A backup of a portal holding a hospital and a doctor; returns its folder."""
    settings.FEDERATION_DIR = tmp_path / "federation"
    call_command("backup", out=str(tmp_path / "small"), verbosity=0)
    return tmp_path / "small"


def _edit_manifest(folder: Path, edit) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _refused(folder: Path, match: str) -> None:
    from portal.models import AuditLog, User

    before = (User.objects.count(), AuditLog.objects.count())
    with pytest.raises(CommandError, match=match):
        call_command("restore", source=str(folder), force=True, verbosity=0)
    assert (User.objects.count(), AuditLog.objects.count()) == before


def test_restore_refuses_a_backup_with_a_missing_file(small_backup):
    (small_backup / "objects.jsonl").unlink()
    _refused(small_backup, "objects.jsonl is missing")


def test_restore_refuses_a_file_the_manifest_does_not_list(small_backup):
    (small_backup / "graph" / "extra.jsonl").write_text("{}\n")
    _refused(small_backup, "graph/extra.jsonl is not listed")


def test_restore_refuses_another_format_version(small_backup):
    _edit_manifest(small_backup, lambda m: m.update(format_version=99))
    _refused(small_backup, "format version 99 is not supported")


def test_restore_refuses_counts_that_the_files_do_not_hold(small_backup):
    _edit_manifest(small_backup, lambda m: m["counts"]["database"].update({"portal.user": 5}))
    _refused(small_backup, "database.jsonl does not hold the rows the manifest counts \\(portal.user\\)")


def test_restore_refuses_a_backup_of_another_schema(small_backup):
    _edit_manifest(small_backup, lambda m: m["database"]["migrations"]["annotation"].append("0099_future"))
    _refused(small_backup, "other database migrations .* annotation")


def test_restore_refuses_a_part_this_portal_does_not_know(small_backup):
    _edit_manifest(small_backup, lambda m: m["counts"].update(pacs={"files": 0}))
    _refused(small_backup, "parts this portal does not know: pacs")


def test_restore_refuses_a_directory_that_does_not_exist(db, tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("restore", source=str(tmp_path / "nowhere"), verbosity=0)


def test_a_backup_made_on_sqlite_restores_into_postgresql(settings, tmp_path):
    """The source portal runs on SQLite in other processes; the backup is restored into this PostgreSQL."""
    from django.db import connection

    from annotation.models import Series
    from annotation.storage import series_volume_load
    from federation import services as federation_services
    from federation.models import FederatedTask

    if connection.vendor != "postgresql":
        pytest.skip("runs when the tests use PostgreSQL (DATABASE_URL): it restores a backup made on SQLite into it")
    shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")
    shared_data("msd_task04_hippocampus")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings.test",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'source.sqlite3'}", "YIXIN_VAR_DIR": str(tmp_path / "source-var"),
           "S3_BUCKET": f"yixin-source-{uuid.uuid4().hex[:12]}", "FEDERATION_DIR": str(tmp_path / "source-federation"),
           "FEDERATION_DATASETS_ROOT": str(tmp_path / "source-datasets")}
    # The source portal's processes use the session's embedded services, so they need its credentials.
    from django.conf import settings as django_settings

    from portal.embedded.credentials import CREDENTIALS_FILE

    (tmp_path / "source-var").mkdir(parents=True, exist_ok=True)
    credentials = Path(django_settings.VAR_DIR) / CREDENTIALS_FILE
    if credentials.exists():
        shutil.copy2(credentials, tmp_path / "source-var" / CREDENTIALS_FILE)
    build = f"from pathlib import Path; from tests.portal.test_backup_restore import build_source_portal; " \
            f"build_source_portal(Path({str(tmp_path / 'source-work')!r}))"
    for command in (["migrate", "-v0"], ["shell", "-c", build], ["backup", "--out", str(tmp_path / "backup")]):
        done = subprocess.run([sys.executable, "manage.py", *command], cwd=REPO_DIR, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{command[0]}: {done.stderr[-3000:]}"
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["database"]["vendor"] == "sqlite"
    _empty_target(settings, tmp_path)

    call_command("restore", source=str(tmp_path / "backup"), verbosity=0)

    series = Series.objects.get()
    assert series_volume_load(series).array.shape == tuple(series.shape)
    task = FederatedTask.objects.get()
    assert federation_services.ledger_verify(task=task)["ok"]
    from portal.services import hospital_create

    assert hospital_create(code="hafter", name="恢复后新建医院").pk > series.study.hospital_id


def test_a_failed_backup_leaves_no_folder_behind(db, settings, tmp_path):
    from knowledge_graph.connection import graph_client

    settings.FEDERATION_DIR = tmp_path / "federation"
    graph_client().write("CREATE (:Alien {name: 'x'})")  # a label the schema does not know: cannot be restored

    with pytest.raises(CommandError, match="Alien"):
        call_command("backup", out=str(tmp_path / "backups" / "tonight"), verbosity=0)

    assert list((tmp_path / "backups").iterdir()) == []
