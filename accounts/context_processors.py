from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.selectors import membership_list_for_user


def portal(request: HttpRequest) -> dict[str, Any]:
    """Navigation data for the base layout: the current organisation and the others the user can switch to."""
    user = getattr(request, "user", None)
    memberships = list(membership_list_for_user(user)) if user is not None and user.is_authenticated else []
    membership = getattr(request, "membership", None)
    return {
        "current_membership": membership,
        "current_organization": getattr(request, "organization", None),
        "all_memberships": memberships,
        "portal_time_zone": settings.PORTAL_TIME_ZONE,
    }
