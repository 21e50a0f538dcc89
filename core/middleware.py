"""Refuse NUL characters in query parameters before any view reads them.

PostgreSQL text cannot hold NUL (0x00): a view that filters on a raw query parameter (``?vendor=a%00b``) would
fail with a database error, a 500. Found by the API fuzzer (tests/test_api_fuzz.py). Request bodies need no
such guard: serializer and form fields already refuse NUL (Django's ProhibitNullCharactersValidator).
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.validators import ProhibitNullCharactersValidator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from core.errors import FieldError


class RejectNullCharactersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "%00" in request.META.get("QUERY_STRING", ""):
            for name, values in request.GET.lists():
                if "\x00" in name or any("\x00" in value for value in values):
                    return self._refuse(request, None if "\x00" in name else name)
        return self.get_response(request)

    @staticmethod
    def _refuse(request: HttpRequest, field: str | None) -> HttpResponse:
        validator = ProhibitNullCharactersValidator
        if request.path.startswith("/api/"):
            error = FieldError(code=validator.code, message=validator.message, field=field)
            return JsonResponse({"errors": [error.as_dict()]}, status=400, json_dumps_params={"ensure_ascii": False})
        return HttpResponseBadRequest(str(validator.message))


class PermissionsPolicyMiddleware:
    """``Permissions-Policy: settings.PERMISSIONS_POLICY`` on every response (browser features the portal never
    uses are off for it and for any frame). Django's SecurityMiddleware sends the other security headers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        from django.conf import settings

        self.get_response = get_response
        self.policy = ", ".join(f"{feature}={allow}" for feature, allow in settings.PERMISSIONS_POLICY.items())

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Permissions-Policy", self.policy)
        return response
