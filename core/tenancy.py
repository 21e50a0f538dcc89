"""Marks the few views that anyone may see without logging in.

Every other URL is tenant-scoped, and the tenancy matrix (tests/test_tenancy_matrix.py) proves for each one
that anonymous users, other organisations and other organisations' API keys get nothing: the matrix walks the
URL conf, so a new URL is covered without editing the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


def public(view: ViewFunc) -> ViewFunc:
    """Declare a view public (login pages, the public catalog, verification pages, the API schema)."""
    view.suanli_public = True  # type: ignore[attr-defined]
    return view


def is_public(view: Callable[..., Any]) -> bool:
    return bool(getattr(view, "suanli_public", False))
