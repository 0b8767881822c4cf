"""One error shape for the whole API: ``{"error": {"code", "message", "filename"?, "fields"?}}``."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ServiceError(Exception):
    """A business rule refused the request. Rendered as a 4xx with a stable code."""

    def __init__(self, message: str, *, code: str = "invalid_request", status_code: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code


# The error body's schema component, shared by every app's API documentation.
ErrorSerializer = inline_serializer("Error", {"error": inline_serializer("ErrorBody", {
    "code": serializers.CharField(help_text="A stable machine-readable code, e.g. invalid_input, not_found."),
    "message": serializers.CharField(),
    "filename": serializers.CharField(required=False, help_text="The uploaded file that was refused."),
    "fields": serializers.DictField(required=False, help_text="Per-field messages of a validation failure."),
})})


# Exception types of the apps' plain-Python packages that mean "this input is bad": each carries
# ``code``, ``message`` and ``filename`` and renders as a 400. The apps register their own types from
# ``AppConfig.ready`` (annotation: ``ImagingError``), so portal imports none of them.
_INPUT_ERROR_TYPES: list[type[Exception]] = []


def input_error_register(exc_type: type[Exception]) -> None:
    """Render ``exc_type`` (with ``code``, ``message`` and ``filename`` attributes) as a 400 in the API."""
    if exc_type not in _INPUT_ERROR_TYPES:
        _INPUT_ERROR_TYPES.append(exc_type)


def exception_handler(exc, context):
    if _INPUT_ERROR_TYPES and isinstance(exc, tuple(_INPUT_ERROR_TYPES)):
        body = {"code": exc.code, "message": exc.message}
        if exc.filename:
            body["filename"] = exc.filename
        return Response({"error": body}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ServiceError):
        return Response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        message = "; ".join(
            f"{field}: {' '.join(map(str, errs)) if isinstance(errs, list) else errs}"
            for field, errs in (data.items() if isinstance(data, dict) else [("input", data)])
        )
        response.data = {"error": {"code": "invalid_input", "message": message, "fields": data}}
    else:
        detail = data.get("detail", data) if isinstance(data, dict) else data
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = {"error": {"code": str(code), "message": str(detail)}}
    return response
