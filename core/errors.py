"""Errors that reach users: a machine-readable code, the field it concerns, a translated message.

Services raise ``ApplicationError`` (or ``ValidationFailed`` for several fields). The REST API renders
every error, ours or DRF's, as ``{"errors": [{"field": ..., "code": ..., "message": ...}]}``; the message
is in the request's language (zh-hans by default, ``Accept-Language: en`` for English).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.encoding import force_str
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response

NON_FIELD = None


@dataclass(frozen=True)
class FieldError:
    code: str
    message: Any  # str or lazy translation
    field: str | None = NON_FIELD

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "code": self.code, "message": force_str(self.message)}


class ApplicationError(Exception):
    """A business rule refused the request. Nothing was written (services raise before or roll back)."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, code: str, message: Any, *, field: str | None = NON_FIELD, status_code: int | None = None):
        super().__init__(force_str(message))
        self.errors = [FieldError(code=code, message=message, field=field)]
        if status_code is not None:
            self.status_code = status_code

    @property
    def code(self) -> str:
        return self.errors[0].code


class ValidationFailed(ApplicationError):
    """Several field errors at once (a form or a request body with more than one mistake)."""

    def __init__(self, errors: Iterable[FieldError], *, status_code: int | None = None):
        error_list = list(errors)
        if not error_list:
            raise ValueError("ValidationFailed needs at least one error")
        first = error_list[0]
        super().__init__(first.code, first.message, field=first.field, status_code=status_code)
        self.errors = error_list


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT


def _flatten_drf_detail(detail: Any, field: str | None = None) -> list[FieldError]:
    if isinstance(detail, Mapping):
        out: list[FieldError] = []
        for key, value in detail.items():
            name = None if key in ("non_field_errors", "__all__") else str(key)
            nested = f"{field}.{name}" if field and name else (name or field)
            out.extend(_flatten_drf_detail(value, nested))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            # A list of dicts is a list of nested objects: keep their position in the field path.
            nested = f"{field}[{index}]" if isinstance(value, Mapping) and field else field
            out.extend(_flatten_drf_detail(value, nested))
        return out
    code = getattr(detail, "code", None) or "invalid"
    return [FieldError(code=str(code), message=force_str(detail), field=field)]


def _django_validation_errors(error: DjangoValidationError) -> list[FieldError]:
    if hasattr(error, "error_dict"):
        return [
            FieldError(code=e.code or "invalid", message=" ".join(e.messages), field=None if f == "__all__" else f)
            for f, errs in error.error_dict.items()
            for e in errs
        ]
    return [FieldError(code=e.code or "invalid", message=" ".join(e.messages)) for e in error.error_list]


def error_response(errors: list[FieldError], status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response({"errors": [e.as_dict() for e in errors]}, status=status_code, headers=headers)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error in one envelope."""
    if isinstance(exc, ApplicationError):
        return error_response(exc.errors, exc.status_code)
    if isinstance(exc, DjangoValidationError):
        return error_response(_django_validation_errors(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    # Imported here: rest_framework.views imports the API settings, which import this module.
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real server error: let Django log it and answer 500
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten_drf_detail(exc.detail)
    else:
        detail = exc.detail
        code = getattr(detail, "code", None) or exc.default_code
        errors = [FieldError(code=str(code), message=force_str(detail))]
    response.data = {"errors": [e.as_dict() for e in errors]}
    return response


# Messages shared by several apps.
MSG_NOT_FOUND = _("Not found.")
MSG_REQUIRED = _("This field is required.")
