"""REST API, pages and websocket of federated tasks: success, permissions (other hospital, patient) and
validation failures. The hospitals' datasets are real hippocampus folders."""

import os

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import reverse

from federation import services
from federation.models import FederatedTask, Participant
from portal.models import Role
from tests.factories import HospitalFactory, UserFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db

LABELS = [{"index": 1, "name": "Anterior", "color": "#ff0000"}, {"index": 2, "name": "Posterior", "color": "#00ff00"}]


@pytest.fixture
def partner():
    return HospitalFactory()


@pytest.fixture
def partner_doctor(partner):
    return UserFactory(role=Role.DOCTOR, hospital=partner)


@pytest.fixture
def datasets(federation_settings, hippocampus_split, hospital, partner):
    """Each hospital holds one dataset named "hippo" in its own dataset folder."""
    for h, source in ((hospital, hippocampus_split.hospitals[0]), (partner, hippocampus_split.hospitals[1])):
        root = services.dataset_root(h)
        root.mkdir(parents=True, exist_ok=True)
        os.symlink(source, root / "hippo")
    return federation_settings


def _create(client, **extra):
    body = {"name": "海马体联邦", "label_table": LABELS, "rounds": 3, "local_epochs": 1, "min_clients": 2, **extra}
    return client.post(reverse("federation-task-list"), body, format="json")


def test_annotator_creates_a_task_and_invites_a_hospital(annotator, partner, hospital):
    response = _create(api_client(annotator), invite=[partner.code])
    assert response.status_code == 201, response.json()
    task = FederatedTask.objects.get(pk=response.json()["id"])
    assert task.owner_hospital == hospital and task.status == "draft"
    assert {p.hospital_id: p.status for p in task.participants.all()} == {hospital.pk: "accepted", partner.pk: "invited"}


@pytest.mark.parametrize(
    "extra,code",
    [
        ({"rounds": 0}, "invalid_input"),
        ({"rounds": 51}, "invalid_input"),
        ({"local_epochs": 11}, "invalid_input"),
        ({"strategy": "rtifed", "secure_aggregation": True}, "secagg_excludes_reputation"),
        ({"secure_aggregation": True}, "secagg_min_clients"),  # min_clients 2: a client could read the other's update
        ({"differential_privacy": True}, "dp_parameters"),
        ({"differential_privacy": True, "dp_clipping_norm": 1.0, "dp_epsilon": 0.0, "dp_delta": 1e-5}, "dp_parameters"),
        ({"differential_privacy": True, "dp_clipping_norm": 1.0, "dp_epsilon": 2.0, "dp_delta": 2.0}, "invalid_input"),
        ({"invite": ["no-such-hospital"]}, "unknown_hospital"),
        ({"label_table": [{"index": 0, "name": "background"}]}, "invalid_input"),
        ({"label_table": [{"index": 1, "name": "x", "color": "red;background:url(http://127.0.0.1:9/x)"}]}, "invalid_input"),
    ],
)
def test_task_creation_rejects_bad_input(doctor, extra, code):
    response = _create(api_client(doctor), **extra)
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == code
    assert not FederatedTask.objects.exists()


def test_privacy_parameters_are_kept_and_shown(doctor, client):
    response = _create(api_client(doctor), differential_privacy=True, dp_clipping_norm=0.5, dp_epsilon=8.0, dp_delta=1e-5)
    assert response.status_code == 201, response.json()
    task = FederatedTask.objects.get(pk=response.json()["id"])
    assert (task.dp_clipping_norm, task.dp_epsilon, task.dp_delta) == (0.5, 8.0, 1e-5)
    client.force_login(doctor)
    page = client.get(reverse("federation:task-detail", args=[task.pk])).content.decode()
    assert "0.5" in page and "8.0" in page and "LocalDpMod" in page


def test_patient_cannot_create_or_read_tasks(patient_user, doctor, client):
    _create(api_client(doctor))
    api = api_client(patient_user)
    assert _create(api).status_code == 403
    assert api.get(reverse("federation-task-list")).status_code == 403
    client.force_login(patient_user)
    assert client.get(reverse("federation:task-list")).status_code == 404


def test_other_hospital_sees_nothing(doctor, other_doctor, client, django_assert_max_num_queries):
    task_id = _create(api_client(doctor)).json()["id"]
    api = api_client(other_doctor)
    with django_assert_max_num_queries(6):
        assert api.get(reverse("federation-task-list")).json()["results"] == []
    for name in ("federation-task-detail", "federation-task-ledger"):
        assert api.get(reverse(name, args=[task_id])).status_code == 404
    for name in ("federation-task-start", "federation-task-pause", "federation-task-cancel", "federation-task-register-model"):
        assert api.post(reverse(name, args=[task_id]), {}, format="json").status_code == 404
    client.force_login(other_doctor)
    assert client.get(reverse("federation:task-detail", args=[task_id])).status_code == 404


def test_invited_hospital_accepts_with_its_dataset_and_only_counts_leave(doctor, partner_doctor, partner, datasets):
    task_id = _create(api_client(doctor), invite=[partner.code]).json()["id"]
    participant = Participant.objects.get(task_id=task_id, hospital=partner)
    api = api_client(partner_doctor)
    listing = api.get(reverse("federation-invitation-list")).json()
    assert [i["id"] for i in listing["results"]] == [participant.pk] and listing["datasets"] == ["hippo"]
    url = reverse("federation-invitation-respond", args=[participant.pk])

    assert api.post(url, {"accept": True, "datasets": []}, format="json").json()["error"]["code"] == "dataset_required"
    assert api.post(url, {"accept": True, "datasets": ["../etc"]}, format="json").json()["error"]["code"] == "unknown_dataset"
    response = api.post(url, {"accept": True, "datasets": ["hippo"]}, format="json")
    assert response.status_code == 200, response.json()
    stats = response.json()["label_statistics"]
    assert stats["cases"] == 4 and set(stats["voxels"]) == {"0", "1", "2"}
    # The task page shows the partner's dataset by name only, never a path on its node.
    detail = api.get(reverse("federation-task-detail", args=[task_id])).json()
    partner_row = next(p for p in detail["participants"] if p["client_id"] == partner.code)
    assert partner_row["datasets"] == ["hippo"] and "/" not in str(partner_row["datasets"])


def test_only_the_invited_hospital_answers_its_invitation(doctor, other_doctor, partner, datasets):
    task_id = _create(api_client(doctor), invite=[partner.code]).json()["id"]
    participant = Participant.objects.get(task_id=task_id, hospital=partner)
    url = reverse("federation-invitation-respond", args=[participant.pk])
    assert api_client(other_doctor).post(url, {"accept": True, "datasets": ["hippo"]}, format="json").status_code == 404
    # The owner cannot answer for the partner either.
    assert api_client(doctor).post(url, {"accept": False}, format="json").status_code == 404


def test_start_pause_resume_cancel(doctor, partner_doctor, partner, hospital, datasets):
    api = api_client(doctor)
    task_id = _create(api, invite=[partner.code]).json()["id"]
    start = reverse("federation-task-start", args=[task_id])
    # The owner has not chosen a dataset and the partner has not answered: too few clients.
    response = api.post(start)
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_few_clients"

    Participant.objects.filter(task_id=task_id, hospital=hospital).update(datasets=["hippo"])
    partner_participant = Participant.objects.get(task_id=task_id, hospital=partner)
    api_client(partner_doctor).post(reverse("federation-invitation-respond", args=[partner_participant.pk]),
                                    {"accept": True, "datasets": ["hippo"]}, format="json")
    # The partner may look but not steer.
    assert api_client(partner_doctor).post(start).status_code == 403
    assert api.post(start).json()["status"] == "queued"
    assert api.post(start).status_code == 409
    assert api.post(reverse("federation-task-pause", args=[task_id])).json()["status"] == "paused"
    assert api.post(reverse("federation-task-resume", args=[task_id])).json()["status"] == "queued"
    assert api.post(reverse("federation-task-cancel", args=[task_id])).json()["status"] == "cancelled"
    response = api.post(reverse("federation-task-cancel", args=[task_id]))
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    # Invitations are closed once a task has started.
    response = api_client(partner_doctor).post(
        reverse("federation-invitation-respond", args=[partner_participant.pk]), {"accept": False}, format="json")
    assert response.json()["error"]["code"] == "task_started"


def test_register_model_needs_a_completed_round(doctor):
    api = api_client(doctor)
    task_id = _create(api).json()["id"]
    response = api.post(reverse("federation-task-register-model", args=[task_id]), {"deploy": True}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_round"
    ledger = api.get(reverse("federation-task-ledger", args=[task_id])).json()
    assert ledger == {"check": {"ok": True, "entries": 0}, "entries": []}


def test_pages_render_for_staff(doctor, client):
    task_id = _create(api_client(doctor)).json()["id"]
    client.force_login(doctor)
    listing = client.get(reverse("federation:task-list"))
    assert listing.status_code == 200 and "海马体联邦" in listing.content.decode()
    page = client.get(reverse("federation:task-detail", args=[task_id])).content.decode()
    assert 'id="federation-config"' in page and "build/federation.js" in page


@pytest.mark.django_db(transaction=True)
def test_websocket_relays_round_events_to_visible_users_only(doctor, other_doctor):
    from asgiref.sync import async_to_sync
    from channels.db import database_sync_to_async
    from channels.routing import URLRouter

    from federation import events
    from federation.routing import websocket_urlpatterns

    task = services.task_create(user=doctor, name="t", label_table=LABELS, rounds=1, local_epochs=1)
    path = f"/ws/federation/tasks/{task.pk}/"

    async def scenario():
        stranger = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        stranger.scope["user"] = other_doctor
        refused = await stranger.connect()
        await stranger.disconnect()
        member = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        member.scope["user"] = doctor
        connected, _ = await member.connect()
        assert connected
        await database_sync_to_async(events.send_task_event)(task.pk, "round", {"round_number": 1})
        message = await member.receive_json_from(timeout=5)
        await member.disconnect()
        return refused, message

    (connected, code), message = async_to_sync(scenario)()
    assert not connected and code == 4404
    assert message == {"type": "federation.round", "payload": {"round_number": 1}}


def test_a_secure_aggregation_task_with_three_clients_per_round_is_created(doctor, client):
    response = _create(api_client(doctor), secure_aggregation=True, min_clients=3)
    assert response.status_code == 201, response.json()
    task = FederatedTask.objects.get(pk=response.json()["id"])
    assert task.secure_aggregation and task.min_clients == 3 and task.strategy == "fedavg"
    # The task page says what secure aggregation gives, in Chinese.
    client.force_login(doctor)
    page = client.get(reverse("federation:task-detail", args=[task.pk])).content.decode()
    assert "安全聚合: 开启 (Flower SecAgg+：各医院的更新经掩码后上传，协调方只能看到它们的总和；不计算信誉)" in page


def test_a_hospital_contributes_several_of_its_datasets(doctor, partner_doctor, partner, datasets, hippocampus_split):
    os.symlink(hippocampus_split.hospitals[2], services.dataset_root(partner) / "hippo-2025")  # 3 more cases
    task_id = _create(api_client(doctor), invite=[partner.code]).json()["id"]
    participant = Participant.objects.get(task_id=task_id, hospital=partner)
    url = reverse("federation-invitation-respond", args=[participant.pk])
    api = api_client(partner_doctor)

    twice = api.post(url, {"accept": True, "datasets": ["hippo", "hippo"]}, format="json")
    assert twice.status_code == 400 and twice.json()["error"]["code"] == "dataset_required"
    response = api.post(url, {"accept": True, "datasets": ["hippo", "hippo-2025"]}, format="json")
    assert response.status_code == 200, response.json()
    # The statistics are those of both sets added up: 4 + 3 cases, voxel counts summed per label.
    from federation.fl.data import label_statistics

    one, two = label_statistics(hippocampus_split.hospitals[1]), label_statistics(hippocampus_split.hospitals[2])
    stats = response.json()["label_statistics"]
    assert stats["cases"] == 7
    assert stats["voxels"] == {k: one["voxels"][k] + two["voxels"][k] for k in one["voxels"]}
    participant.refresh_from_db()
    assert services.participant_data_dirs(participant) == [services.dataset_root(partner) / "hippo",
                                                             services.dataset_root(partner) / "hippo-2025"]
