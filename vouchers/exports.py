"""Redemption reports for the issuer: one table, written as CSV or XLSX (openpyxl)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Font

from core.money import from_minor
from vouchers import rules, selectors
from vouchers.models import Program


def redemption_rows(program: Program) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: one row per subsidised invoice line, with its metered evidence."""
    header = [
        _("Redemption"),
        _("Invoice"),
        _("Buyer"),
        _("Buyer USCC"),
        _("Reserved at (Asia/Shanghai)"),
        _("Provider"),
        _("Chip origin"),
        _("Product"),
        _("Line amount"),
        _("Ratio"),
        _("Subsidy"),
        _("Released"),
        _("Currency"),
        _("Settlement"),
        _("Settlement status"),
        _("Fiscal reference"),
        _("Accelerator-hours"),
        _("Tokens"),
        _("Evidence"),
    ]
    rows: list[list[Any]] = []
    redemptions = selectors.redemption_list_for_issuer(program.issuer, program=program).select_related(
        "buyer__company_profile"
    )
    for redemption in redemptions.order_by("reserved_at", "id"):
        profile = getattr(redemption.buyer, "company_profile", None)
        for index, line in enumerate(redemption.lines.all()):
            evidence = line.evidence or {}
            seconds = evidence.get("accelerator_seconds")
            tokens = (evidence.get("tokens_in") or 0) + (evidence.get("tokens_out") or 0)
            rows.append(
                [
                    str(redemption.public_id),
                    redemption.invoice_reference,
                    redemption.buyer.name,
                    profile.uscc if profile else "",
                    redemption.reserved_at.astimezone(rules.FISCAL_ZONE).strftime("%Y-%m-%d %H:%M"),
                    line.provider.name,
                    _("domestic") if line.chip_domestic else _("other"),
                    line.get_product_display(),
                    from_minor(line.amount_minor, redemption.currency),
                    line.ratio.normalize(),
                    from_minor(line.subsidy_minor, redemption.currency),
                    from_minor(redemption.released_minor, redemption.currency) if index == 0 else 0,
                    redemption.currency,
                    redemption.get_settlement_mode_display(),
                    redemption.get_settlement_status_display(),
                    redemption.fiscal_reference,
                    round(seconds / 3600, 3) if isinstance(seconds, int | float) else "",
                    tokens or "",
                    ", ".join(f"{k}={v}" for k, v in sorted(evidence.items()) if k not in ("accelerator_seconds",)),
                ]
            )
    return header, rows


def to_xlsx(header: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = (title or "redemptions")[:31]
    sheet.append([str(h) for h in header])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(list(row))  # Decimal amounts stay numbers in Excel
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
