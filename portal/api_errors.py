"""One error shape for the whole API: ``{"error": {"code", "message", "filename"?, "fields"?}}``.

Messages speak the request's language. A message is an English msgid with named ``%(name)s`` parameters,
translated when the response is rendered: ``ServiceError(_("Series %(uid)s was already imported."),
params={"uid": uid})`` in the Django apps (``_`` is ``gettext_lazy``), and ``N_("...")`` (a no-op marker)
with ``params=`` in the plain-Python packages, whose errors keep ``template`` and ``params`` so that this
module translates them (``error_message``). ``str(exc)`` stays English, for logs.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import translation
from django.utils.functional import Promise, lazy
from django.utils.translation import gettext
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def message_translate(template: str | Promise, params: dict[str, Any] | None = None) -> str:
    """Return ``template`` (an English msgid, plain or lazy) in the active language, filled with ``params``."""
    text = str(template) if isinstance(template, Promise) else gettext(template)
    return text % params if params else text


def message_english(template: str | Promise, params: dict[str, Any] | None = None) -> str:
    """Return ``template`` filled with ``params`` in English, the msgid language (for logs and ``str(exc)``)."""
    with translation.override("en"):
        return message_translate(template, params)


def error_message(exc: BaseException) -> str:
    """Return the message of ``exc`` for people, in the active language.

    Errors that carry ``template`` and ``params`` (``ServiceError`` and the plain-Python packages' errors)
    are translated; others fall back to their ``message`` attribute or ``str(exc)``.
    """
    template = getattr(exc, "template", None)
    if template is not None:
        text = message_translate(template, getattr(exc, "params", None))
        prefix = getattr(exc, "path", "")
        return f"{prefix}: {text}" if prefix else text
    return str(getattr(exc, "message", None) or exc)


# The message of an error as a lazy string: a parameter of another message that is translated with it.
error_message_lazy = lazy(error_message, str)


class ServiceError(Exception):
    """A business rule refused the request. Rendered as a 4xx with a stable code.

    ``message`` is an English msgid (marked with ``gettext_lazy``/``gettext_noop``, or the ``template`` of a
    plain-Python package's error) with named ``%(name)s`` parameters filled from ``params``; the API renders
    it in the request's language, ``str(exc)`` in English.
    """

    def __init__(self, message: str | Promise, *, params: dict[str, Any] | None = None,
                 code: str = "invalid_request", status_code: int = 400):
        self.template = message
        self.params = dict(params) if params else {}
        self.code = code
        self.status_code = status_code
        self.path = ""
        super().__init__(message_english(message, self.params))

    @classmethod
    def from_error(cls, exc: BaseException, *, code: str | None = None, status_code: int = 400) -> ServiceError:
        """Wrap a plain-Python package's error (``template``, ``params``, ``code``) keeping it translatable."""
        template = getattr(exc, "template", None)
        params = dict(getattr(exc, "params", None) or {})
        if template is None:
            template, params = "%(detail)s", {"detail": str(exc)}
        error = cls(template, params=params, code=code or getattr(exc, "code", "invalid_input"),
                    status_code=status_code)
        # A questionnaire definition's error says where (``items[3].options``); the path is not translated.
        error.path = getattr(exc, "path", "")
        return error

    @property
    def message(self) -> str:
        """The message in the active language."""
        return error_message(self)


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
        body = {"code": exc.code, "message": error_message(exc)}
        if exc.filename:
            body["filename"] = exc.filename
        return Response({"error": body}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ServiceError):
        return Response({"error": {"code": exc.code, "message": error_message(exc)}}, status=exc.status_code)
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
