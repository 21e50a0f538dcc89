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

    status_code: int = status.HTTP_400_BAD_REQUEST

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
    status_code: int = status.HTTP_409_CONFLICT


_NON_FIELD_KEYS = ("non_field_errors", "__all__")


def _field_path(field: str | None, key: Any) -> str | None:
    """``profile.uscc``, ``shareholders[1].name``, ``scopes[2]``, ``[3].record_id`` (an item of a list body)."""
    if isinstance(key, int):
        return f"{field or ''}[{key}]"
    if key in _NON_FIELD_KEYS:
        return field
    return f"{field}.{key}" if field else str(key)


def _flatten_drf_detail(detail: Any, field: str | None = None) -> list[FieldError]:
    if isinstance(detail, Mapping):
        # Serializers key by field name; list serializers and ListField key by the item's index.
        out: list[FieldError] = []
        for key, value in detail.items():
            out.extend(_flatten_drf_detail(value, _field_path(field, key)))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            # A list of objects (the older list format of list serializers): keep each item's position.
            nested = _field_path(field, index) if isinstance(value, Mapping | list) else field
            out.extend(_flatten_drf_detail(value, nested))
        return out
    code = getattr(detail, "code", None) or "invalid"
    return [FieldError(code=str(code), message=force_str(detail), field=field)]


def field_errors_from_django(error: DjangoValidationError, *, prefix: str = "") -> list[FieldError]:
    """A Django ValidationError (from ``full_clean()`` or a validator) as field errors, one per message.

    ``prefix`` places the fields of a nested object: ``shareholders[0].`` gives ``shareholders[0].name``.
    """
    if hasattr(error, "error_dict"):
        return [
            FieldError(
                code=e.code or "invalid",
                message=" ".join(e.messages),
                field=(prefix.rstrip(".") or None) if f == "__all__" else f"{prefix}{f}",
            )
            for f, errs in error.error_dict.items()
            for e in errs
        ]
    return [
        FieldError(code=e.code or "invalid", message=" ".join(e.messages), field=prefix.rstrip(".") or None)
        for e in error.error_list
    ]


def error_response(errors: list[FieldError], status_code: int, headers: dict[str, str] | None = None) -> Response:
    return Response({"errors": [e.as_dict() for e in errors]}, status=status_code, headers=headers)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error in one envelope."""
    # Imported here: rest_framework.views imports the API settings, which import this module.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, ApplicationError):
        set_rollback()  # with ATOMIC_REQUESTS, what the view wrote before refusing must not commit
        return error_response(exc.errors, exc.status_code)
    if isinstance(exc, DjangoValidationError):
        set_rollback()
        return error_response(field_errors_from_django(exc), status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

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
