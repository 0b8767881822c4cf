"""Session fixtures: the real services the integration tests talk to.

PostgreSQL and Redis come from ``DATABASE_URL`` / ``REDIS_URL`` when set (CI sets both); otherwise
SQLite and the embedded Redis. SeaweedFS (S3) and FalkorDB (graph over Bolt, behind its gate) are
started with ``python -m portal.embedded`` on the test ports of ``portal.settings.test`` unless
``S3_ENDPOINT_URL`` / ``NEO4J_URI`` select external services; they use the generated credentials of
the test ``YIXIN_VAR_DIR``. Real data is read from ``../shared/data``.
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


def embedded_service_start(name: str, *, port: int, var_dir: Path, workdir: Path) -> embedded.EmbeddedProcess:
    """Start embedded service ``name`` (``redis``, ``graph`` or ``s3``) on ``port`` with the credentials of
    ``var_dir`` and its data under ``workdir``; return it once its port accepts connections."""
    return embedded.EmbeddedProcess(
        embedded.service_command(name, var_dir=var_dir, port=port, data_dir=workdir / name, persist=False),
        log_path=workdir / f"{name}.log",
        ready_port=port,
    ).start(timeout_s=120)


@pytest.fixture(scope="session")
def embedded_services():
    """Start the embedded broker Redis, graph and SeaweedFS for the session (each unless external).

    ``REDIS_URL``, ``NEO4J_URI`` and ``S3_ENDPOINT_URL`` each select an external service instead; CI sets
    ``REDIS_URL`` and still gets the embedded graph and S3. A service whose port is already open (a
    stack left by the same settings) is used as it is. The bucket is created here, as at start-up.
    """
    from django.conf import settings

    workdir = Path(tempfile.mkdtemp(prefix="yixin-services-"))
    started: list[embedded.EmbeddedProcess] = []
    wanted = [
        ("s3", "S3_ENDPOINT_URL", settings.EMBEDDED_S3_PORT),
        ("redis", "REDIS_URL", settings.EMBEDDED_REDIS_PORT),
        ("graph", "NEO4J_URI", settings.EMBEDDED_BOLT_PORT),
    ]
    try:
        for name, variable, port in wanted:
            if not os.environ.get(variable) and not embedded.port_open(port):
                started.append(embedded_service_start(name, port=port, var_dir=Path(settings.VAR_DIR), workdir=workdir))
        from portal.storage import storage_ensure_bucket

        storage_ensure_bucket(timeout_s=60)
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
    """The built-in classical CT lung model, registered again (with its names in each language, migration
    0023) if a transactional test flushed the rows that migration 0002 created."""
    from importlib import import_module

    from django.apps import apps

    from annotation.selectors import segmentation_model_by_name

    import_module("annotation.migrations.0002_builtin_lung_model").register(apps, None)
    import_module("annotation.migrations.0024_model_display_name_zh").split_builtin_names(apps, None)
    return segmentation_model_by_name(name="ct-lung")
