"""Tenancy-matrix factories for the green URLs (registered in tests/tenancy.py)."""

from __future__ import annotations

from collections.abc import Callable

from accounts.models import Organization

MakeOrg = Callable[..., Organization]


def _lot(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.green.factories import make_lot
    from tests.marketplace.factories import make_site

    organization = make_org("provider")
    return organization, str(make_lot(make_site(organization)).public_id)


def _statement(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.green.factories import make_statement

    organization = make_org("buyer")
    return organization, str(make_statement(organization).public_id)


GREEN_FACTORIES = {"lot_id": _lot, "statement_id": _statement}
