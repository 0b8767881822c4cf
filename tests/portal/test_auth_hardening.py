"""Brute force and stolen tokens: lock-out of the login pages and the token endpoint (django-axes),
throttling of the token endpoints, and revocation of refresh tokens (simplejwt's blacklist)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from portal.models import AuditLog, Role
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _random_ip() -> str:
    # Throttle counters live in Redis for a minute: a fresh address per run keeps runs independent.
    import random

    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def _web_login(client, username, password, ip="10.9.8.7"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_fifty_wrong_passwords_lock_the_login_page_and_refuse_the_right_one(client, settings):
    user = UserFactory()
    statuses = [_web_login(client, user.username, f"wrong-{n}").status_code for n in range(50)]

    assert statuses[0] == 200  # the form again, with its error
    assert statuses[-1] == 429  # locked out
    assert statuses.count(200) == settings.AXES_FAILURE_LIMIT - 1
    right = _web_login(client, user.username, PASSWORD)
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    locked = AuditLog.objects.filter(action=AuditLog.Action.LOCKOUT, target_type="account", target_id=str(user.pk))
    assert locked.count() >= 1
    assert locked.first().ip_address == "10.9.8.7"


def test_the_admin_login_is_locked_out_too(client, settings):
    admin = UserFactory(role=Role.PLATFORM_ADMIN)
    for n in range(settings.AXES_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": admin.username, "password": f"x{n}"}, REMOTE_ADDR="10.0.0.5")
    response = client.post("/admin/login/", {"username": admin.username, "password": PASSWORD}, REMOTE_ADDR="10.0.0.5")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_unlocking_lets_the_right_password_in_and_is_audited(client, settings):
    from axes.utils import reset

    user = UserFactory()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _web_login(client, user.username, f"wrong-{n}")
    assert _web_login(client, user.username, PASSWORD).status_code == 429

    assert reset(username=user.username) == 1
    assert AuditLog.objects.filter(action=AuditLog.Action.UNLOCK, target_type="account", target_id=str(user.pk)).exists()
    assert _web_login(client, user.username, PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_the_lock_ends_after_the_cool_off(client, settings):
    from datetime import timedelta

    from axes.models import AccessAttempt
    from django.utils import timezone

    user = UserFactory()
    for n in range(settings.AXES_FAILURE_LIMIT):
        _web_login(client, user.username, f"wrong-{n}")
    assert _web_login(client, user.username, PASSWORD).status_code == 429
    # Age the attempt past the cool-off instead of sleeping.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    assert _web_login(client, user.username, PASSWORD).status_code == 302
    assert AuditLog.objects.filter(action=AuditLog.Action.UNLOCK, target_id=str(user.pk)).exists()


def test_token_endpoint_failures_count_toward_the_lock_out(settings):
    user = UserFactory()
    api = APIClient(REMOTE_ADDR=_random_ip())
    url = reverse("token-obtain")
    codes = [api.post(url, {"username": user.username, "password": f"no-{n}"}, format="json").status_code
             for n in range(settings.AXES_FAILURE_LIMIT)]
    # The failure that reaches the limit is already refused as a lock-out.
    assert codes[:-1] == [401] * (settings.AXES_FAILURE_LIMIT - 1) and codes[-1] == 429

    refused = api.post(url, {"username": user.username, "password": PASSWORD}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "account_locked"
    assert "access" not in refused.json()
    assert AuditLog.objects.filter(action=AuditLog.Action.LOCKOUT, target_id=str(user.pk)).exists()


def test_token_endpoints_are_throttled_per_client(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                          "auth": "3/minute"}}
    api = APIClient(REMOTE_ADDR=_random_ip())
    # Different user names: the throttle, not the per-account lock-out, must stop a password spray.
    codes = [api.post(reverse("token-obtain"), {"username": f"nobody{n}", "password": "x"}, format="json").status_code
             for n in range(5)]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]
    refresh = api.post(reverse("token-refresh"), {"refresh": "not-a-token"}, format="json")
    assert refresh.status_code == 429
    assert refresh.json()["error"]["code"] == "throttled"
    # Another client is not affected.
    other = APIClient(REMOTE_ADDR=_random_ip()).post(reverse("token-obtain"), {"username": "nobody", "password": "x"},
                                                    format="json")
    assert other.status_code == 401


# --- refresh tokens: rotation and revocation ----------------------------------------------------

def _tokens(user) -> dict:
    response = APIClient().post(reverse("token-obtain"), {"username": user.username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()


def _refresh(token: str):
    return APIClient().post(reverse("token-refresh"), {"refresh": token}, format="json")


def test_an_old_refresh_token_is_refused_after_rotation():
    user = UserFactory()
    first = _tokens(user)["refresh"]
    rotated = _refresh(first)
    assert rotated.status_code == 200 and rotated.json()["refresh"] != first

    again = _refresh(first)
    assert again.status_code == 401
    assert _refresh(rotated.json()["refresh"]).status_code == 200


def test_changing_the_password_revokes_every_token_of_the_user():
    user = UserFactory()
    other = UserFactory()
    tokens = [_tokens(user), _tokens(user)]
    others = _tokens(other)

    user.set_password("a-new-long-password-2025")
    user.save()

    for pair in tokens:
        assert _refresh(pair["refresh"]).status_code == 401
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
        assert api.get(reverse("me")).status_code == 401
    assert _refresh(others["refresh"]).status_code == 200
    assert AuditLog.objects.filter(target_type="user_tokens", target_id=str(user.pk)).exists()


def test_deactivating_a_user_revokes_their_tokens():
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    user = UserFactory()
    pair = _tokens(user)
    user.is_active = False
    user.save()

    assert BlacklistedToken.objects.filter(token__user=user).count() == 1
    user.is_active = True
    user.save()
    assert _refresh(pair["refresh"]).status_code == 401


def test_saving_other_fields_revokes_nothing():
    user = UserFactory()
    pair = _tokens(user)
    user.display_name = "王医生"
    user.save()
    assert _refresh(pair["refresh"]).status_code == 200
