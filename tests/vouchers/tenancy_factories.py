"""Tenancy-matrix factories for the vouchers URLs (registered in tests/tenancy.py)."""

from __future__ import annotations

from collections.abc import Callable

from django.core.files.base import ContentFile

from accounts.models import Organization
from core.timeutils import utcnow
from tests.vouchers import factories
from vouchers.models import Attachment, Redemption

MakeOrg = Callable[..., Organization]


def _program(make_org: MakeOrg) -> tuple[Organization, str]:
    issuer = make_org("issuer")
    return issuer, str(factories.program(issuer).public_id)


def _application(make_org: MakeOrg):
    issuer = make_org("issuer")
    buyer = make_org("buyer")
    return factories.application(factories.program(issuer), buyer)


def _review(make_org: MakeOrg) -> tuple[Organization, str]:
    application = _application(make_org)
    return application.program.issuer, str(application.public_id)


def _buyer_application(make_org: MakeOrg) -> tuple[Organization, str]:
    application = _application(make_org)
    return application.buyer, str(application.public_id)


def _grant(make_org: MakeOrg):
    issuer = make_org("issuer")
    buyer = make_org("buyer")
    return issuer, factories.grant(factories.program(issuer), buyer, amount_minor=100_000)


def _grant_id(make_org: MakeOrg) -> tuple[Organization, str]:
    issuer, grant = _grant(make_org)
    return issuer, str(grant.public_id)


def _redemption(make_org: MakeOrg) -> tuple[Organization, str]:
    issuer, grant = _grant(make_org)
    redemption = Redemption.objects.create(
        grant=grant,
        program=grant.program,
        buyer=grant.buyer,
        invoice_reference="INV-MATRIX",
        currency="CNY",
        eligible_minor=100_000,
        amount_minor=30_000,
        year=2026,
        reserved_at=utcnow(),
        settlement_mode=grant.program.settlement_mode,
    )
    return issuer, str(redemption.public_id)


def _attachment(make_org: MakeOrg) -> tuple[Organization, str]:
    application = _application(make_org)
    attachment = Attachment(
        application=application, original_name="合同.pdf", content_type="application/pdf", size_bytes=9
    )
    attachment.file.save("matrix.pdf", ContentFile(b"%PDF-1.4\n"), save=True)
    return application.buyer, str(attachment.public_id)


VOUCHER_FACTORIES = {
    "program_id": _program,
    "review_id": _review,
    "application_id": _buyer_application,
    "grant_id": _grant_id,
    "redemption_id": _redemption,
    "attachment_id": _attachment,
}
