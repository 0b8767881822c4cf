"""Websocket consumer of the study page: authenticate, join the study's group, relay events."""

from portal.consumers import VisibleObjectConsumer

from . import events


class StudyConsumer(VisibleObjectConsumer):
    """Push inference progress to a study page. Close codes: 4401 not signed in, 4404 not visible."""

    url_kwarg = "study_id"

    def group_name(self, object_id: int) -> str:
        return events.study_group(object_id)

    def is_visible(self, user, object_id: int) -> bool:
        from .selectors import study_visible_queryset

        return study_visible_queryset(user).filter(pk=object_id).exists()

    async def inference_progress(self, event):
        await self.send_json({"type": "inference.progress", "run": event["run"]})


class TrainingRunConsumer(VisibleObjectConsumer):
    """Push a training run's per-epoch progress to its page. Close codes: 4401 not signed in, 4404 not visible."""

    url_kwarg = "run_id"

    def group_name(self, object_id: int) -> str:
        return events.training_run_group(object_id)

    def is_visible(self, user, object_id: int) -> bool:
        from .selectors import training_run_visible_queryset

        return training_run_visible_queryset(user).filter(pk=object_id).exists()

    async def training_progress(self, event):
        await self.send_json({"type": "training.progress", "run": event["run"]})
