"""A model registered from a federated task belongs to the hospitals that took part in it: the owner and
the clients that accepted. Other hospitals neither list nor run it (404)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import SegmentationModel
from federation import services
from federation.fl import ledger as fl_ledger
from federation.fl.flower_app import _save_arrays
from federation.fl.local import arrays_sha256, initial_arrays
from federation.models import Participant
from federation.services.paths import task_spec
from federation.services.tasks_invitations import task_keys_ensure
from portal.models import Role
from tests.factories import UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def registered(hippocampus_split, federation_settings, tmp_path):
    """A two-hospital task with one stored round (the network's real initial weights), registered and deployed."""
    task = services.task_create_local(data_dirs=hippocampus_split.hospitals[:2], rounds=1, local_epochs=1,
                                      strategy="fedavg")
    paths = task_keys_ensure(task=task)
    spec = task_spec(task)
    arrays = initial_arrays(spec)
    weights = tmp_path / "round-1.npz"
    _save_arrays(weights, arrays)
    record = {"round_number": 1, "global_sha256": arrays_sha256(arrays), "num_examples": 0, "clients": {},
              "metrics": {"val_dice": 0.0}}
    coordinator_key = fl_ledger.load_private_key(paths.coordinator_signing_key.read_bytes())
    services.round_ingest(task=task, record=record, weights_path=weights, coordinator_key=coordinator_key)
    model = services.model_register(task=task, round_number=1, name="hippo-scope", deploy=True)
    return task, model


def test_registered_model_belongs_to_the_task_hospitals(registered):
    task, model = registered
    accepted = set(Participant.objects.filter(task=task, status=Participant.Status.ACCEPTED)
                   .values_list("hospital_id", flat=True))

    assert model.hospital_id == task.owner_hospital_id
    assert set(model.shared_with.values_list("pk", flat=True)) == accepted - {task.owner_hospital_id}
    assert len(accepted) == 2 and model.is_active


def test_participants_list_the_model_and_other_hospitals_do_not(registered, doctor, small_ct_study):
    task, model = registered
    client_hospital = model.shared_with.get()
    owner_doctor = UserFactory(role=Role.DOCTOR, hospital=task.owner_hospital)
    client_doctor = UserFactory(role=Role.DOCTOR, hospital=client_hospital)
    listed = {}
    for who, user in {"owner": owner_doctor, "client": client_doctor, "outsider": doctor}.items():
        response = api_client(user).get(reverse("segmentation-model-list"))
        assert response.status_code == 200
        listed[who] = {m["id"] for m in response.json()["results"]}

    assert model.pk in listed["owner"] and model.pk in listed["client"]
    assert model.pk not in listed["outsider"]
    # The shipped models (no hospital, shared with none) stay offered to everyone.
    shipped = set(SegmentationModel.objects.filter(hospital__isnull=True, shared_with__isnull=True, is_active=True)
                  .values_list("pk", flat=True))
    assert shipped and shipped <= listed["outsider"]


def test_another_hospital_cannot_run_or_download_the_model(registered, doctor, small_ct_study):
    _, model = registered
    series = small_ct_study.series.get()
    client = api_client(doctor)

    run = client.post(reverse("series-inference-runs", args=[series.pk]), {"model": model.pk}, format="json")
    bundle = client.get(reverse("segmentation-model-bundle", args=[model.pk]))

    assert run.status_code == 404 and "model" in run.json()["error"]["message"]
    assert bundle.status_code == 404
    assert not series.inference_runs.exists()


def test_the_migration_scopes_models_registered_before(registered):
    """federation/0002 gives a model registered for every hospital (before issue 12) its task's hospitals."""
    import importlib

    from django.apps import apps

    task, model = registered
    SegmentationModel.objects.filter(pk=model.pk).update(hospital=None)
    model.shared_with.clear()
    shipped = SegmentationModel.objects.filter(hospital__isnull=True).exclude(pk=model.pk).values_list("pk", "hospital_id")
    shipped_before = set(shipped)
    migration = importlib.import_module("federation.migrations.0002_scope_registered_models_to_task_hospitals")

    migration.scope_federated_models(apps, None)

    model.refresh_from_db()
    assert model.hospital_id == task.owner_hospital_id
    assert set(model.shared_with.values_list("pk", flat=True)) == set(
        Participant.objects.filter(task=task, status="accepted").exclude(hospital=task.owner_hospital)
        .values_list("hospital_id", flat=True))
    assert set(shipped) == shipped_before  # models not from a task stay for every hospital
