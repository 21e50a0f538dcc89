"""Portal view guards: a logged-in member of the current organisation, of the right kind and role."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.models import Role

View = Callable[..., HttpResponse]


def member_required(
    view: View | None = None, *, kinds: Iterable[str] | None = None, min_role: str = Role.VIEWER
) -> Any:
    """Requires login and a membership; ``kinds`` limits the organisation kinds, ``min_role`` the role.

    Anonymous users go to the login page; a user without any organisation goes to the dashboard (which
    explains); a wrong kind or too low a role is a 403.
    """
    allowed_kinds = set(kinds) if kinds else None

    def decorator(func: View) -> View:
        @wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = getattr(request, "membership", None)
            if membership is None:
                return redirect("accounts:dashboard")
            if allowed_kinds is not None and membership.organization.kind not in allowed_kinds:
                raise PermissionDenied
            if not membership.has_role(min_role):
                raise PermissionDenied
            return func(request, *args, **kwargs)

        return wrapper

    return decorator(view) if view is not None else decorator
