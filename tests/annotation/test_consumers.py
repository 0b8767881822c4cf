"""The study page's websocket: members receive progress; others are refused."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from annotation import events, services
from annotation.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)


def _communicator(user, study_id: int) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/studies/{study_id}/")
    communicator.scope["user"] = user
    return communicator


def test_study_member_receives_inference_progress(doctor, small_ct_study, ct_lung_model):
    from asgiref.sync import async_to_sync

    run = services.inference_run_create(user=doctor, series=small_ct_study.series.get(), model=ct_lung_model)

    async def scenario():
        communicator = _communicator(doctor, small_ct_study.pk)
        connected, _ = await communicator.connect()
        assert connected
        await database_sync_to_async(events.send_inference_progress)(run, small_ct_study.pk)
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message

    message = async_to_sync(scenario)()
    assert message["type"] == "inference.progress"
    assert message["run"]["id"] == run.pk and message["run"]["status"] == "queued"


@pytest.mark.parametrize("who", ["other_doctor", "anonymous"])
def test_non_members_cannot_join_a_study(who, other_doctor, small_ct_study):
    from asgiref.sync import async_to_sync
    from django.contrib.auth.models import AnonymousUser

    user = other_doctor if who == "other_doctor" else AnonymousUser()

    async def scenario():
        communicator = _communicator(user, small_ct_study.pk)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(scenario)()
    assert not connected
    assert code == (4404 if who == "other_doctor" else 4401)
