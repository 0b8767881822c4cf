"""Training in the portal (issue 18): a tiny network trained for two epochs on CPU on a training
dataset of real hippocampus MRIs, split by patient, with per-epoch progress on the row, a checkpoint
in the real object storage, the model registered with its provenance and run through the one-click
path; cancelling, a loss that becomes NaN, a resume after a lost worker, refusals and permissions."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from annotation import events, services, tasks
from annotation.ml.networks import ARCHITECTURES
from annotation.ml.training import split_by_patient
from annotation.models import InferenceRun, SegmentationModel, TrainingRun
from portal.api_errors import ServiceError
from portal.models import Role
from tests.annotation.test_run_recovery import broker  # noqa: F401 - fixture
from tests.annotation.test_training_datasets import _annotate, _original, approved, label_set  # noqa: F401 - fixtures
from tests.conftest import shared_data
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

# A network and patch small enough for two epochs on two CPU threads in seconds.
TINY = {
    "epochs": 2, "learning_rate": 1e-3, "patch_size": [16, 16, 16], "augmentation": True, "seed": 0,
    "batch_size": 2, "val_fraction": 0.34, "patience": None,
    "network_config": {"channels": [4, 8], "strides": [2], "num_res_units": 0},
}
EXTRA_CASE = "hippocampus_008"


@pytest.fixture
def dataset(approved, hippocampus_studies, hospital, label_set, annotator, doctor):  # noqa: F811
    """The three approved hippocampus cases plus a fourth MRI of the first patient (AL-0): four cases,
    three patients."""
    imported = services.study_import(user=doctor, hospital=hospital, patient_mrn="AL-0",
                                     paths=[shared_data("msd_task04_hippocampus", "imagesTr", f"{EXTRA_CASE}.nii.gz")],
                                     modality="MR")
    version = _annotate(imported.series[0], label_set, annotator,
                        _original("labelsTr", EXTRA_CASE).array.astype(np.uint8))
    services.segmentation_review(user=doctor, segmentation=version, decision="approve")
    return services.training_dataset_build(hospital=hospital, name="hippo-train", label_set=label_set, user=annotator)


@pytest.fixture
def sent(monkeypatch):
    """Record every training-run event (the real sender still runs)."""
    calls = []
    original = events.send_training_progress

    def spy(run):
        calls.append(json.loads(json.dumps(events.training_run_payload(run))))
        original(run)

    monkeypatch.setattr(events, "send_training_progress", spy)
    return calls


def _start(user, dataset, **overrides):
    return services.training_run_start(user=user, dataset=dataset, architecture="unet",
                                       settings={**TINY, **overrides}, enqueue=False)


def _manifest_patients(dataset) -> dict[str, str]:
    with default_storage.open(f"{dataset.storage_prefix}/manifest.json", "rb") as fh:
        return {e["case"]: e["patient"] for e in json.loads(fh.read())["cases"]}


def test_trains_splits_by_patient_registers_the_model_and_it_segments_through_one_click(
        dataset, doctor, hospital, hippocampus_studies, sent):
    run = _start(doctor, dataset)

    assert tasks.training_run_task(run.pk) == "succeeded"  # the Celery task's body, in this process

    run.refresh_from_db()
    assert (run.status, run.attempts, run.device, run.error_message) == ("succeeded", 1, "cpu", "")
    assert [e["epoch"] for e in run.progress] == [1, 2]
    for epoch in run.progress:
        assert math.isfinite(epoch["loss"]) and epoch["loss"] > 0
        assert set(epoch["val_dice_per_label"]) == {"1", "2"} and 0 <= epoch["mean_dice"] <= 1
    # By patient: the manifest names each case's pseudonym (no MRN); no patient is on both sides.
    patients = _manifest_patients(dataset)
    assert len(patients) == 4 and len(set(patients.values())) == 3
    assert not any(p.mrn in json.dumps(patients) for p in [s.study.patient for s in hippocampus_studies])
    train, val = run.split["train_cases"], run.split["val_cases"]
    assert sorted(train + val) == sorted(patients) and val
    assert not {patients[c] for c in train} & {patients[c] for c in val}
    assert (run.split["train_patients"], run.split["val_patients"]) == (2, 1)
    # The last epoch's resumable state is in storage.
    assert run.checkpoint_key and default_storage.exists(run.checkpoint_key)
    # Registered for the dataset's hospital with where it came from.
    model = run.segmentation_model
    assert (model.name, model.hospital, model.modality, model.architecture) == ("hippo-train-unet", hospital, "MR", "unet")
    assert [(e["index"], e["name"]) for e in model.label_table] == [(1, "前部"), (2, "posterior")]
    provenance = model.provenance
    assert provenance["dataset"] == {"id": dataset.pk, "name": "hippo-train", "version": 1,
                                     "manifest_sha256": dataset.manifest_sha256}
    assert provenance["split"] == run.split and provenance["settings"]["epochs"] == 2
    assert provenance["settings"]["augmentation"] is True and provenance["device"] == "cpu"
    assert set(provenance["val_dice_per_label"]) == {"1", "2"} and provenance["trained_at"]
    assert model.validation_metrics["dice_per_label"] == provenance["val_dice_per_label"]
    # Every epoch and the end were announced to the run's page.
    assert [len(e["epochs"]) for e in sent if e["status"] == "running"][-2:] == [1, 2]
    assert sent[-1]["status"] == "succeeded" and sent[-1]["segmentation_model"]["id"] == model.pk

    # The one-click path runs it on a case.
    inference = services.inference_run_create(user=doctor, series=hippocampus_studies[1], model=model, enqueue=False)
    inference = services.inference_run_execute(run_id=inference.pk)
    assert inference.status == InferenceRun.Status.SUCCEEDED, inference.error_message
    assert inference.segmentation.model == model

    # The API and the page show it.
    body = api_client(doctor).get(reverse("training-run-detail", args=[run.pk])).json()
    assert body["status"] == "succeeded" and [e["epoch"] for e in body["epochs"]] == [1, 2]
    assert body["segmentation_model"]["bundle_url"].endswith(f"/{model.pk}/bundle.zip")
    page = Client()
    page.force_login(doctor)
    html = page.get(reverse("annotation:training-run", args=[run.pk])).content.decode()
    assert 'id="training-run-config"' in html and "build/training_run.js" in html and str(model) in html


def test_a_lost_worker_is_resumed_by_the_sweeper_from_the_last_checkpoint(dataset, doctor, broker, monkeypatch,  # noqa: F811
                                                                         sent):
    run = _start(doctor, dataset)

    class WorkerDied(BaseException):
        """Stands in for the worker process dying: nothing of the service's own handling runs."""

    original = events.send_training_progress

    def die_after_first_epoch(r):
        original(r)
        if r.status == "running" and len(r.progress) == 1:
            raise WorkerDied

    monkeypatch.setattr(events, "send_training_progress", die_after_first_epoch)
    with pytest.raises(WorkerDied):
        services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "running" and len(run.progress) == 1 and default_storage.exists(run.checkpoint_key)
    first_checkpoint = run.checkpoint_key
    epoch_1 = run.progress[0]

    # Not stale yet: left alone. Then its heartbeat is an hour old: queued again and handed to the broker.
    assert services.training_runs_sweep(stale_after_s=600).requeued == []
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    swept = services.training_runs_sweep(stale_after_s=600)
    assert (swept.requeued, swept.republished) == ([run.pk], [run.pk])
    run.refresh_from_db()
    assert run.status == "queued" and "no heartbeat" in run.error_message and run.published_at
    assert broker["client"].llen("celery") == 1

    monkeypatch.setattr(events, "send_training_progress", original)
    assert tasks.training_run_task(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.attempts == 2 and [e["epoch"] for e in run.progress] == [1, 2]
    assert run.progress[0] == epoch_1  # epoch 1 was not trained again
    assert run.checkpoint_key != first_checkpoint and not default_storage.exists(first_checkpoint)
    assert run.segmentation_model.provenance["epochs_run"] == 2


def test_cancel_stops_a_running_run_after_its_epoch_and_a_queued_one_at_once(dataset, doctor, annotator,
                                                                              monkeypatch):
    run = _start(doctor, dataset)
    original = events.send_training_progress

    def cancel_during_first_epoch(r):
        original(r)
        if r.status == "running" and len(r.progress) == 1:
            services.training_run_cancel(user=doctor, run=r)

    monkeypatch.setattr(events, "send_training_progress", cancel_during_first_epoch)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == "cancelled" and len(run.progress) == 1 and run.segmentation_model is None
    with pytest.raises(ServiceError) as caught:
        services.training_run_cancel(user=doctor, run=run)
    assert caught.value.code == "run_finished"

    queued = _start(doctor, dataset)
    with pytest.raises(ServiceError) as caught:
        services.training_run_cancel(user=annotator, run=queued)
    assert caught.value.status_code == 403
    response = api_client(doctor).post(reverse("training-run-cancel", args=[queued.pk]))
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert services.training_run_execute(run_id=queued.pk).status == "cancelled"
    assert not SegmentationModel.objects.filter(name="hippo-train-unet").exists()


def test_a_nan_loss_fails_the_run_with_a_clear_error(dataset, doctor, monkeypatch):
    from monai.losses import DiceCELoss

    monkeypatch.setattr(DiceCELoss, "forward", lambda self, input, target: input.sum() * float("nan"))
    run = _start(doctor, dataset)

    run = services.training_run_execute(run_id=run.pk)

    assert run.status == "failed" and run.progress == [] and run.segmentation_model is None
    # In the portal's language (Simplified Chinese by default), naming where it happened.
    assert run.error_message == gettext(
        "The training loss became NaN (not a number) at epoch %(epoch)s, step %(step)s, so the run was stopped. "
        "Try a lower learning rate.") % {"epoch": 1, "step": 1}
    assert "NaN" in run.error_message
    assert not SegmentationModel.objects.filter(name="hippo-train-unet").exists()


def test_a_lost_worker_process_requeues_the_run_once_then_fails_it(dataset, doctor):
    run = _start(doctor, dataset)
    assert services.training_run_lost(run_id=run.pk, reason="gone").status == "queued"  # not started: left alone

    TrainingRun.objects.filter(pk=run.pk).update(status="running", attempts=1, heartbeat_at=timezone.now())
    lost = services.training_run_lost(run_id=run.pk, reason="the worker process running it was lost")
    assert lost.status == "queued" and "resuming from the last checkpoint" in lost.error_message

    TrainingRun.objects.filter(pk=run.pk).update(status="running", attempts=2, heartbeat_at=timezone.now())
    lost = services.training_run_lost(run_id=run.pk, reason="the worker process running it was lost")
    assert lost.status == "failed" and "gave up after 2 attempts" in lost.error_message


def test_a_dataset_version_without_patients_in_its_manifest_fails_clearly(dataset, doctor):
    import hashlib

    from django.core.files.base import ContentFile

    key = f"{dataset.storage_prefix}/manifest.json"
    with default_storage.open(key, "rb") as fh:
        manifest = json.loads(fh.read())
    del manifest["cases"]  # as built before the manifest recorded patients
    data = json.dumps(manifest).encode()
    default_storage.delete(key)
    default_storage.save(key, ContentFile(data))
    type(dataset).objects.filter(pk=dataset.pk).update(manifest_sha256=hashlib.sha256(data).hexdigest())
    dataset.refresh_from_db()

    run = services.training_run_execute(run_id=_start(doctor, dataset).pk)

    assert run.status == "failed" and run.progress == [] and run.split == {}
    assert run.error_message == gettext(
        "This dataset version does not record which patient each case belongs to, so it cannot be split by "
        "patient; build a new version of the dataset first.")


def test_labels_the_dataset_does_not_hold_are_refused(dataset, doctor, annotator, label_set):  # noqa: F811
    services.label_upsert(user=annotator, label_set=label_set, index=3, name="tail", color="#0000ff")

    with pytest.raises(ServiceError) as caught:
        _start(doctor, dataset)

    assert caught.value.code == "labels_mismatch" and "[1, 2]" in str(caught.value)
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"learning_rate": 0}, {"learning_rate": 5.0}, {"patch_size": [15, 16, 16]},
                                 {"augmentation": "yes"}, {"momentum": 0.9}, {"patience": 0}])
def test_invalid_settings_are_refused(dataset, doctor, bad):
    with pytest.raises(ServiceError) as caught:
        services.training_run_start(user=doctor, dataset=dataset, architecture="unet", settings=bad, enqueue=False)
    assert caught.value.code == "invalid_settings"


def test_permissions_doctors_and_admins_train_staff_read_other_hospitals_get_404(
        dataset, doctor, annotator, other_doctor, patient_user, hospital):
    admin = UserFactory(role=Role.HOSPITAL_ADMIN, hospital=hospital)
    for user in (annotator, other_doctor):
        with pytest.raises(ServiceError) as caught:
            _start(user, dataset)
        assert (caught.value.code, caught.value.status_code) == ("not_allowed", 403)
    with pytest.raises(ServiceError):
        services.training_run_start(user=doctor, dataset=dataset, architecture="resnet", settings={}, enqueue=False)
    run = _start(admin, dataset)

    detail = reverse("training-run-detail", args=[run.pk])
    assert api_client(annotator).get(detail).status_code == 200
    assert api_client(other_doctor).get(detail).status_code == 404
    assert api_client(patient_user).get(detail).status_code == 404
    create = reverse("training-run-create")
    assert api_client(annotator).post(create, {"dataset_id": dataset.pk, "architecture": "unet"},
                                      format="json").status_code == 403
    assert api_client(other_doctor).post(create, {"dataset_id": dataset.pk, "architecture": "unet"},
                                         format="json").status_code == 404
    made = api_client(doctor).post(create, {"dataset_id": dataset.pk, "architecture": "unet", "settings": TINY},
                                   format="json")
    assert made.status_code == 201 and made.json()["status"] == "queued"
    assert api_client(other_doctor).post(reverse("training-run-cancel", args=[run.pk])).status_code == 404

    # Pages: the datasets page offers "Train" to doctors, not to annotators; the form starts a run.
    def client(user):
        c = Client()
        c.force_login(user)
        return c

    listing = reverse("annotation:training-datasets")
    assert "training-run-form" in client(doctor).get(listing).content.decode()
    assert "training-run-form" not in client(annotator).get(listing).content.decode()
    start = reverse("annotation:training-run-start", args=[dataset.pk])
    form = {"architecture": "segresnet", "epochs": "3", "learning_rate": "0.01", "augmentation": "on"}
    response = client(doctor).post(start, form)
    started = TrainingRun.objects.get(architecture="segresnet")
    assert response.status_code == 302 and response.url == reverse("annotation:training-run", args=[started.pk])
    assert (started.settings["epochs"], started.settings["learning_rate"], started.settings["augmentation"]) == (3, 0.01, True)
    assert client(annotator).post(start, form).status_code == 403
    assert client(other_doctor).post(start, form).status_code == 404
    page = reverse("annotation:training-run", args=[run.pk])
    assert client(annotator).get(page).status_code == 200
    assert client(other_doctor).get(page).status_code == 404


def test_split_by_patient_keeps_each_patient_on_one_side():
    cases = {f"c{n}": f"p{n % 5}" for n in range(17)}
    for seed in range(5):
        train, val = split_by_patient(cases, val_fraction=0.2, seed=seed)
        assert sorted(train + val) == sorted(cases)
        assert not {cases[c] for c in train} & {cases[c] for c in val}
        assert len({cases[c] for c in val}) == 1
    assert split_by_patient(cases, seed=3) == split_by_patient(cases, seed=3)
    with pytest.raises(ValueError):
        split_by_patient({"a": "p", "b": "p"})


def test_the_architectures_are_the_network_registrys():
    assert set(TrainingRun.Architecture.values) == set(ARCHITECTURES)


@pytest.mark.django_db(transaction=True)
def test_the_run_page_socket_relays_progress_to_its_hospital_only(dataset, doctor, annotator, other_doctor):
    from asgiref.sync import async_to_sync
    from channels.db import database_sync_to_async
    from channels.routing import URLRouter
    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import AnonymousUser

    from annotation.routing import websocket_urlpatterns

    run = _start(doctor, dataset)

    async def scenario(user):
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/training-runs/{run.pk}/")
        communicator.scope["user"] = user
        connected, code = await communicator.connect()
        message = None
        if connected:
            await database_sync_to_async(events.send_training_progress)(run)
            message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return connected, code, message

    connected, _code, message = async_to_sync(scenario)(annotator)
    assert connected and message["type"] == "training.progress"
    assert message["run"]["id"] == run.pk and message["run"]["status"] == "queued"
    assert async_to_sync(scenario)(other_doctor)[:2] == (False, 4404)
    assert async_to_sync(scenario)(AnonymousUser())[:2] == (False, 4401)
