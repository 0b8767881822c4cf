"""Template context for the navigation bar: the follow-up unread count (computed only when shown)."""

from django.utils.functional import SimpleLazyObject


def followup_unread(request):
    """Add ``followup_unread``: unread messages plus unread notifications of the signed-in user."""

    def count() -> int:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return 0
        from . import selectors

        return selectors.unread_total(user=user) + selectors.notification_unread_count(user=user)

    return {"followup_unread": SimpleLazyObject(count)}
