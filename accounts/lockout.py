"""Login lockout (django-axes): who is counted, and what a locked-out login sees.

settings.AXES_* configure the policy: AXES_FAILURE_LIMIT failures for one e-mail address from one IP address
lock that pair for AXES_COOLOFF_TIME; a successful login resets the count. Both the portal's login and the staff
admin's go through ``authenticate()``, so both are watched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import ngettext

from accounts.forms import EmailLoginForm

LOCKOUT_STATUS = 429


def login_username(request: HttpRequest, credentials: Mapping[str, Any] | None = None) -> str:
    """The e-mail address an attempt is counted against, in one case: ``Ops@x.cn`` and ``ops@x.cn`` are one user."""
    # Django's login-failed signal names the field as the form does ("username"); the backends pass the user
    # model's USERNAME_FIELD ("email"). Both must count against one address.
    given = {str(key): value for key, value in (credentials or {}).items()}
    value = given.get("username") or given.get("email") or request.POST.get("username", "")
    return str(value).strip().lower()


def lockout_minutes() -> int:
    return max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))


def lockout_message() -> str:
    minutes = lockout_minutes()
    return ngettext(
        "Too many failed log-in attempts. For your security, logging in to this account from your network is "
        "blocked for %(minutes)d minute. Try again later or reset your password.",
        "Too many failed log-in attempts. For your security, logging in to this account from your network is "
        "blocked for %(minutes)d minutes. Try again later or reset your password.",
        minutes,
    ) % {"minutes": minutes}


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Mapping[str, Any] | None = None
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the login form again, the address kept, the lock explained above it (429).

    Used for the admin's login too: the form posts back to the URL it came from, with the same field names.
    """
    form = EmailLoginForm(request, initial={"username": login_username(request, credentials)})
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    response = render(
        request,
        "accounts/login.html",
        {"form": form, "next": next_url, "lockout_message": lockout_message()},
        status=LOCKOUT_STATUS,
    )
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response
