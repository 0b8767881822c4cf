"""The "new federated task" form on the federated training page: shown to a hospital's doctors and
annotators with every option and the other hospitals to invite; patients get a 404 as before."""

import pytest
from django.urls import reverse

from federation import services
from federation.models import FederatedTask
from tests.factories import HospitalFactory
from tests.helpers import api_client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["doctor", "annotator"])
def test_staff_see_the_form_with_options_and_other_hospitals(role, request, client, hospital):
    user = request.getfixturevalue(role)
    partner = HospitalFactory(name="协作医院甲")
    client.force_login(user)

    page = client.get(reverse("federation:task-list"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert 'id="task-create-form"' in page and "新建联邦任务" in page
    assert f'data-api-url="{reverse("federation-task-list")}"' in page
    for value in ("unet", "segresnet", "dynunet", "fedavg", "fedprox", "rtifed"):
        assert f'<option value="{value}">' in page
    for field in ("task-secure-aggregation", "task-dp", "task-dp-clipping-norm", "task-dp-epsilon", "task-dp-delta",
                  "task-rounds", "task-local-epochs", "task-min-clients", "task-dataset", "task-validation-dataset"):
        assert f'id="{field}"' in page
    assert "安全聚合（SecAgg+）与 RTIFed 信誉机制互斥" in page
    # The other hospitals are offered, the user's own is not.
    assert f'name="invite" value="{partner.code}"' in page and partner.name in page
    assert f'name="invite" value="{hospital.code}"' not in page


def test_the_form_offers_the_hospitals_own_datasets(doctor, client, federation_settings, hospital):
    for name in ("hippo", "hippo-val"):
        (services.dataset_root(hospital) / name).mkdir(parents=True)
        (services.dataset_root(hospital) / name / "dataset.json").write_text("{}")
    client.force_login(doctor)

    page = client.get(reverse("federation:task-list")).content.decode()

    assert page.count('<option value="hippo">') == 2 and page.count('<option value="hippo-val">') == 2


def test_patient_gets_404(patient_user, client):
    client.force_login(patient_user)
    assert client.get(reverse("federation:task-list")).status_code == 404


# --- what the form sends that the API did not take before: the owner's own datasets ---------------

LABELS = [{"index": 1, "name": "海马体前部"}, {"index": 2, "name": "海马体后部"}]


@pytest.fixture
def own_datasets(federation_settings, hippocampus_split, hospital):
    """The owner hospital holds a training dataset "hippo" and a held-out set "hippo-val"."""
    root = services.dataset_root(hospital)
    root.mkdir(parents=True)
    (root / "hippo").symlink_to(hippocampus_split.hospitals[0])
    (root / "hippo-val").symlink_to(hippocampus_split.held_out)
    return root


def _create(user, **extra):
    body = {"name": "海马体联邦", "label_table": LABELS, "rounds": 2, "local_epochs": 1, "min_clients": 1, **extra}
    return api_client(user).post(reverse("federation-task-list"), body, format="json")


def test_owner_trains_on_its_dataset_and_rtifed_validates_on_its_held_out_set(doctor, hospital, own_datasets):
    response = _create(doctor, strategy="rtifed", datasets=["hippo"], validation_dataset="hippo-val")

    assert response.status_code == 201, response.json()
    task = FederatedTask.objects.get(pk=response.json()["id"])
    assert task.validation_dir == str(own_datasets / "hippo-val")
    owner = task.participants.get(hospital=hospital)
    assert owner.status == "accepted" and owner.datasets == ["hippo"] and owner.label_statistics["cases"] == 5


@pytest.mark.parametrize(
    "extra,code",
    [
        ({"datasets": ["../hippo"]}, "unknown_dataset"),
        ({"datasets": ["hippo", "hippo"]}, "dataset_required"),
        ({"validation_dataset": "/etc"}, "unknown_dataset"),
        ({"datasets": ["hippo"], "validation_dataset": "hippo"}, "invalid_input"),
        ({"strategy": "rtifed"}, "validation_required"),
    ],
)
def test_owner_datasets_are_names_of_its_own_datasets(doctor, own_datasets, extra, code):
    response = _create(doctor, **extra)

    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert not FederatedTask.objects.exists()
