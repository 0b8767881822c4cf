"""Who may open a websocket through the portal's whole ASGI stack (portal.asgi.application).

Browsers always send an Origin header: it must name one of the portal's hosts, or a page of another
site could act with the user's cookie. A mobile app sends no Origin: it is accepted only with a valid
JWT offered as a subprotocol, and a cookie it may carry is ignored.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)


def _connect(path: str, *, headers=(), subprotocols=None):
    from portal.asgi import application

    async def scenario():
        communicator = WebsocketCommunicator(application, path, headers=list(headers), subprotocols=subprotocols)
        connected, detail = await communicator.connect(timeout=10)
        await communicator.disconnect()
        return connected, detail

    return async_to_sync(scenario)()


def _token(user) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


def _session_cookie(client, user) -> tuple[bytes, bytes]:
    client.force_login(user)
    return b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()


def test_an_app_without_origin_joins_with_a_valid_token(patient_user, conversation):
    path = f"/ws/followup/conversations/{conversation.pk}/"
    assert _connect(path, subprotocols=["yixin.jwt", _token(patient_user)]) == (True, "yixin.jwt")
    assert _connect("/ws/followup/inbox/", subprotocols=["yixin.jwt", _token(patient_user)]) == (True, "yixin.jwt")


def test_without_origin_a_bad_token_or_a_cookie_alone_is_refused(client, patient_user, conversation):
    path = f"/ws/followup/conversations/{conversation.pk}/"
    assert _connect(path, subprotocols=["yixin.jwt", _token(patient_user)[:-4] + "AAAA"]) == (False, 4401)
    # A cookie without Origin is no browser: the session is not used.
    assert _connect(path, headers=[_session_cookie(client, patient_user)]) == (False, 4401)


def test_a_browser_from_the_portal_joins_with_its_session(client, patient_user, conversation):
    path = f"/ws/followup/conversations/{conversation.pk}/"
    headers = [(b"origin", b"http://127.0.0.1:8000"), _session_cookie(client, patient_user)]
    assert _connect(path, headers=headers)[0] is True


def test_a_page_of_another_site_is_refused_even_with_a_token(client, patient_user, conversation):
    path = f"/ws/followup/conversations/{conversation.pk}/"
    evil = (b"origin", b"https://evil.example")
    assert _connect(path, headers=[evil, _session_cookie(client, patient_user)])[0] is False
    assert _connect(path, headers=[evil], subprotocols=["yixin.jwt", _token(patient_user)])[0] is False
