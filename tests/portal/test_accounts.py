import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import identify_hasher, make_password
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from portal.models import AuditLog, Role
from portal.services import user_create
from tests.factories import PASSWORD, HospitalFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_production_hashes_passwords_with_argon2(settings):
    from portal.settings import base

    assert base.PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")
    settings.PASSWORD_HASHERS = base.PASSWORD_HASHERS  # override_settings: clears the hasher cache
    encoded = make_password("s3cret-pass")
    assert identify_hasher(encoded).algorithm == "argon2"


def test_staff_role_needs_a_hospital():
    with pytest.raises(ValidationError):
        user_create(username="nohospital", password=PASSWORD, role=Role.DOCTOR, hospital=None)


def test_platform_admin_belongs_to_no_hospital():
    with pytest.raises(ValidationError):
        user_create(username="admin2", password=PASSWORD, role=Role.PLATFORM_ADMIN, hospital=HospitalFactory())


def test_jwt_token_authenticates_the_api():
    user = UserFactory()
    client = APIClient()
    response = client.post(reverse("token-obtain"), {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.data['access']}")
    me = client.get(reverse("me"))
    assert me.status_code == 200
    assert me.data["username"] == user.username and me.data["role"] == "doctor"


def test_wrong_password_gets_no_token():
    user = UserFactory()
    response = APIClient().post(reverse("token-obtain"), {"username": user.username, "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"]


def test_api_requires_authentication():
    response = APIClient().get(reverse("study-list-api"))
    assert response.status_code == 401


def test_web_login_writes_an_audit_row(client):
    user = UserFactory()
    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD}, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    row = AuditLog.objects.get(actor=user, action=AuditLog.Action.LOGIN)
    assert row.ip_address == "10.1.2.3" and row.channel == "web"


def test_login_page_is_chinese_first(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert "医心相印" in response.content.decode()


def test_openapi_schema_is_served(client):
    user = UserFactory()
    client.force_login(user)
    response = client.get(reverse("schema"), HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.content.decode()
    assert "/api/studies/import/" in body and "/api/series/{series_id}/inference-runs/" in body
    assert client.get(reverse("docs")).status_code == 200


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"S3_ENDPOINT_URL": "https://minio.example:9000"}, "S3_BUCKET"),
        ({"NEO4J_URI": "bolt://neo4j.example:7687"}, "NEO4J_USER"),
    ],
)
def test_selecting_a_production_service_requires_its_credentials(env, missing, tmp_path):
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "NEO4J_"))}
    clean.update(env, YIXIN_VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", "import portal.settings.base"], env=clean, capture_output=True, text=True,
        cwd=django_settings.BASE_DIR,
    )
    assert result.returncode != 0
    assert f"{missing} must be set" in result.stderr
