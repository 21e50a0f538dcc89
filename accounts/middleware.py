"""Puts the user's current organisation and membership on every portal request, and their time zone.

The current organisation is chosen in the session (switcher in the navigation); it is always one the user
is a member of, so views never see an organisation the user does not belong to.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts.selectors import membership_for_user

SESSION_KEY = "current_organization"


class CurrentOrganizationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.membership = None  # type: ignore[attr-defined]
        request.organization = None  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        zone_name = settings.PORTAL_TIME_ZONE
        if user is not None and user.is_authenticated:
            zone_name = user.time_zone or zone_name
            membership = membership_for_user(user, request.session.get(SESSION_KEY))
            if membership is not None:
                request.membership = membership  # type: ignore[attr-defined]
                request.organization = membership.organization  # type: ignore[attr-defined]
        if request.path.startswith("/api/"):
            timezone.activate(UTC)  # the API speaks UTC (RFC 3339 with Z); only people get local time
        else:
            try:
                timezone.activate(ZoneInfo(zone_name))
            except (ZoneInfoNotFoundError, ValueError):  # ValueError: not even a zone name ("../x")
                timezone.activate(ZoneInfo(settings.PORTAL_TIME_ZONE))
        return self.get_response(request)
