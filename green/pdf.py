"""The statement PDF: the frozen content rendered by WeasyPrint, with a QR code (segno) to the public verify page.

Chinese text needs a CJK font: the template asks for "Noto Sans CJK SC" (Debian's fonts-noto-cjk), which
fontconfig resolves on any machine where it is installed."""

from __future__ import annotations

import segno
from django.template.loader import render_to_string

from green.models import Statement, StatementStatus


def qr_svg_data_uri(url: str) -> str:
    return segno.make(url, error="m").svg_data_uri(scale=4, border=2)


def statement_pdf(statement: Statement, *, verify_url: str) -> bytes:
    from weasyprint import HTML  # imported here: loading Pango costs time that other requests need not pay

    html = render_to_string(
        "green/statement_pdf.html",
        {
            "statement": statement,
            "c": statement.content,
            "verify_url": verify_url,
            "qr": qr_svg_data_uri(verify_url),
            "valid": statement.status == StatementStatus.VALID,
        },
    )
    return HTML(string=html, base_url=verify_url).write_pdf()
