"""Invoice PDFs (WeasyPrint), in zh-hans or en, with the seller's and the buyer's tax details."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import translation

from billing.models import Invoice


def invoice_pdf(invoice: Invoice, *, language: str = "zh-hans") -> bytes:
    from weasyprint import HTML  # imported lazily: it loads Pango, which only PDF requests need

    with translation.override(language):
        html = render_to_string(
            "billing/invoice_pdf.html",
            {
                "invoice": invoice,
                "lines": invoice.lines.order_by("position").select_related("provider"),
                "credit_notes": invoice.credit_notes.all(),
                "language": language,
            },
        )
    return HTML(string=html).write_pdf()
