"""Command-line failure paths: each refuses clearly and leaves nothing half-made."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import translation

from federation.models import FederatedTask

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    """These tests read the messages in English (the portal's default language is Chinese)."""
    with translation.override("en"):
        yield


def test_federated_run_refuses_a_folder_that_is_not_an_msd_dataset(tmp_path, federation_settings):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="not an MSD dataset"):
        call_command("federated_run", "--data", str(tmp_path / "empty"), "--rounds", "1")
    assert not FederatedTask.objects.exists()


def test_federated_run_refuses_secure_aggregation_with_rtifed_and_explains(hippocampus_split, federation_settings):
    dirs = list(map(str, hippocampus_split.hospitals))
    with pytest.raises(CommandError, match="Shapley reputation needs each client's update"):
        call_command("federated_run", "--data", *dirs, "--rounds", "1", "--strategy", "rtifed",
                     "--validation", str(hippocampus_split.held_out), "--secure-aggregation")
    assert not FederatedTask.objects.exists()


def test_federated_run_needs_a_validation_set_for_rtifed_and_sane_privacy(hippocampus_split, federation_settings):
    dirs = list(map(str, hippocampus_split.hospitals))
    with pytest.raises(CommandError, match="--validation"):
        call_command("federated_run", "--data", *dirs, "--rounds", "1", "--strategy", "rtifed")
    with pytest.raises(CommandError, match="clipping norm"):
        call_command("federated_run", "--data", *dirs, "--rounds", "1", "--dp-clipping-norm", "1", "--dp-epsilon", "0")
    with pytest.raises(CommandError):
        call_command("federated_run", "--data", *dirs, "--rounds", "51")
    assert not FederatedTask.objects.exists()


def test_verify_ledger_of_an_unknown_task():
    with pytest.raises(CommandError, match="no federated task 999"):
        call_command("verify_ledger", "999")
