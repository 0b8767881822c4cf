"""Session fixtures: the real services the integration tests talk to.

PostgreSQL and Redis come from ``DATABASE_URL`` / ``REDIS_URL`` when set (CI sets both); otherwise
SQLite and the embedded Redis. SeaweedFS (S3) and FalkorDB (graph over Bolt) are started from their
pip packages on the test ports of ``portal.settings.test`` unless ``S3_ENDPOINT_URL`` /
``NEO4J_URI`` select external services. Real data is read from ``../shared/data``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from portal import embedded

REPO_DIR = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("YIXIN_SHARED_DATA", REPO_DIR.parent / "shared" / "data"))


def shared_data(*parts: str) -> Path:
    """Return a path under ../shared/data, skipping the test with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (../shared/data is needed for this test)")
    return path


@pytest.fixture(scope="session")
def embedded_services():
    """Start SeaweedFS and the embedded Redis/FalkorDB for the session (each only if not external)."""
    from django.conf import settings

    workdir = Path(tempfile.mkdtemp(prefix="yixin-services-"))
    started: list[embedded.EmbeddedProcess] = []
    try:
        if not os.environ.get("S3_ENDPOINT_URL") and not embedded.port_open(settings.EMBEDDED_S3_PORT):
            started.append(
                embedded.EmbeddedProcess(
                    embedded.seaweedfs_command(s3_port=settings.EMBEDDED_S3_PORT, data_dir=workdir / "s3"),
                    log_path=workdir / "seaweedfs.log",
                    ready_port=settings.EMBEDDED_S3_PORT,
                ).start()
            )
        if not embedded.port_open(settings.EMBEDDED_BOLT_PORT) and (
            not os.environ.get("NEO4J_URI") or not os.environ.get("REDIS_URL")
        ):
            started.append(
                embedded.EmbeddedProcess(
                    embedded.redis_command(
                        port=settings.EMBEDDED_REDIS_PORT,
                        bolt_port=settings.EMBEDDED_BOLT_PORT,
                        data_dir=workdir / "redis",
                        persist=False,
                    ),
                    log_path=workdir / "redis.log",
                    ready_port=settings.EMBEDDED_BOLT_PORT,
                ).start()
            )
        embedded.wait_for_s3(settings.S3_ENDPOINT_URL)
        from portal.storage import storage_ensure_bucket

        storage_ensure_bucket()
        yield settings
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _services_for_db_tests(request):
    """Give every test that uses the database the real object storage and Redis as well."""
    if "django_db" in {m.name for m in request.node.iter_markers()} or "db" in request.fixturenames:
        request.getfixturevalue("embedded_services")


# --- people and studies shared by the integration tests ---------------------------------------

@pytest.fixture
def hospital():
    from tests.factories import HospitalFactory

    return HospitalFactory()


@pytest.fixture
def doctor(hospital):
    from portal.models import Role
    from tests.factories import UserFactory

    return UserFactory(role=Role.DOCTOR, hospital=hospital)


@pytest.fixture
def annotator(hospital):
    from portal.models import Role
    from tests.factories import UserFactory

    return UserFactory(role=Role.ANNOTATOR, hospital=hospital)


@pytest.fixture
def other_doctor():
    from portal.models import Role
    from tests.factories import HospitalFactory, UserFactory

    return UserFactory(role=Role.DOCTOR, hospital=HospitalFactory())


@pytest.fixture
def patient_user(hospital):
    from portal.models import Role
    from tests.factories import UserFactory

    return UserFactory(role=Role.PATIENT, hospital=hospital)


@pytest.fixture
def small_ct_path() -> Path:
    return shared_data("totalsegmentator_example", "example_ct_sm.nii.gz")


@pytest.fixture
def small_ct_study(hospital, doctor, patient_user, small_ct_path):
    """A small real CT (NIfTI, 30 slices) imported for ``hospital`` and linked to ``patient_user``."""
    from annotation import services
    from annotation.models import Patient

    result = services.study_import(user=doctor, hospital=hospital, patient_mrn="MRN-1", paths=[small_ct_path], modality="CT")
    patient = Patient.objects.get(hospital=hospital, mrn="MRN-1")
    patient.user = patient_user
    patient.save()
    return result.studies[0]


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """Give each test its own channel-layer instance: channels_redis binds its receive lock to the
    event loop of the test that used it, and each async_to_sync test runs its own loop."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def ct_lung_model(db):
    """The built-in classical CT lung model, registered again if a transactional test flushed the rows
    that migration 0002 created."""
    from importlib import import_module

    from django.apps import apps

    from annotation.selectors import segmentation_model_by_name

    import_module("annotation.migrations.0002_builtin_lung_model").register(apps, None)
    return segmentation_model_by_name(name="ct-lung")
