"""Plain factories for voucher tests (also used by tests/tenancy.py)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from accounts.demo import demo_uscc
from accounts.models import CompanyProfile, Organization, Shareholder
from core.timeutils import utcnow
from vouchers import services
from vouchers.models import Application, ApplicationStatus, Grant, Program

_seq = itertools.count(1)


def profile(
    organization: Organization,
    *,
    province: str = "11",
    city: str = "北京市",
    industry: str = "software",
    size_class: str = "small",
    founded_on: Any = None,
    legal_representative: str | None = None,
    shareholders: list[tuple[str, str, str]] | None = None,
    uscc_value: str | None = None,
) -> CompanyProfile:
    body = f"91110108MA{next(_seq):07d}"[:17]
    record = CompanyProfile.objects.create(
        organization=organization,
        legal_name=organization.name,
        uscc=uscc_value or demo_uscc(body),
        registered_province=province,
        registered_city=city,
        industry=industry,
        size_class=size_class,
        founded_on=founded_on,
        legal_representative=legal_representative or f"代表{next(_seq)}",
    )
    for name, holder_uscc, pct in shareholders or []:
        Shareholder.objects.create(profile=record, name=name, uscc=holder_uscc, share_pct=Decimal(pct))
    return record


NOW = datetime(2026, 6, 15, 4, 0, tzinfo=UTC)


def program(issuer: Organization, **overrides: Any) -> Program:
    fields: dict[str, Any] = {
        "name": f"测试算力券 {next(_seq)}",
        "legal_basis": "《测试实施方案》",
        "document_number": "测经信发〔2026〕1号",
        "voucher_type": "compute",
        "fiscal_year": 2026,
        "budget_minor": 100_000_000,
        "valid_from": datetime(2026, 1, 1, tzinfo=UTC) - timedelta(hours=8),
        "valid_until": datetime(2028, 1, 1, tzinfo=UTC) - timedelta(hours=8),
        "ratio_domestic": Decimal("0.30"),
        "ratio_other": Decimal("0.20"),
        "settlement_mode": "reimburse_buyer",
    }
    fields.update(overrides)
    return services.program_create(issuer=issuer, **fields)


def application(program_: Program, buyer: Organization, *, requested_minor: int = 1_000_000, **kw: Any) -> Application:
    return Application.objects.create(
        program=program_,
        buyer=buyer,
        requested_minor=requested_minor,
        purpose="大模型微调",
        submitted_at=kw.pop("submitted_at", utcnow()),
        status=kw.pop("status", ApplicationStatus.SUBMITTED),
        **kw,
    )


def grant(program_: Program, buyer: Organization, *, amount_minor: int, expires_at: datetime | None = None) -> Grant:
    """An approved grant through the real service (commits the programme's budget)."""
    app = application(program_, buyer, requested_minor=amount_minor)
    return services.application_approve(
        issuer=program_.issuer,
        application=app,
        amount_minor=amount_minor,
        expires_at=expires_at or datetime(2027, 6, 30, tzinfo=UTC),
        at=NOW if (expires_at is None or expires_at > NOW) else expires_at - timedelta(days=1),
    )
