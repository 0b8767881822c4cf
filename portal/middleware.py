"""Request context for the audit log: who and from where, available to services."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    ip_address: str | None
    user_agent: str
    channel: str


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "yixin_request_context", default=None
)


def current_request_context() -> RequestContext | None:
    """Return the context of the request being served, or None outside a request."""
    return _current.get()


def set_request_context(context: RequestContext | None) -> contextvars.Token:
    return _current.set(context)


class AuditContextMiddleware:
    """Record the client address and agent of each request for audit rows written by services."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        channel = "api" if request.path.startswith("/api/") else "web"
        token = _current.set(
            RequestContext(
                ip_address=request.META.get("REMOTE_ADDR") or None,
                user_agent=request.META.get("HTTP_USER_AGENT", "")[:256],
                channel=channel,
            )
        )
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)
