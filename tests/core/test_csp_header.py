"""Every portal response carries the strict Content-Security-Policy (settings.CONTENT_SECURITY_POLICY); only the
pay page adds Stripe.js's origins, only the API docs add Redoc's. The browser proof is tests/e2e/test_csp.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from tests.billing.tenancy_factories import BILLING_FACTORIES

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("path", ["/dashboard/", "/market/", "/catalog/", "/green/hubs/"])
def test_portal_pages_carry_the_strict_policy(path, client_for, make_org):
    response = client_for(make_org("buyer").owner).get(path)
    assert response.status_code == 200
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no third party
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "unsafe" not in response["Content-Security-Policy"]


def test_htmx_is_told_not_to_inject_styles_nor_eval(client_for, make_org):
    html = client_for(make_org("buyer").owner).get("/dashboard/").content.decode()
    assert '"includeIndicatorStyles": false' in html
    assert '"allowEval": false' in html


@override_settings(STRIPE_API_BASE="http://127.0.0.1:8420", STRIPE_JS_URL="http://127.0.0.1:8420/js.stripe.com/v3/")
def test_only_the_pay_page_allows_the_local_stripe(client_for, make_org):
    buyer, invoice_id = BILLING_FACTORIES["invoice_id"](make_org)
    client = client_for(buyer.owner)
    pay = directives(client.get(f"/billing/invoices/{invoice_id}/pay/"))
    assert pay["script-src"] == ["'self'", "http://127.0.0.1:8420"]
    assert pay["connect-src"] == ["'self'", "http://127.0.0.1:8420"]
    assert "'unsafe-inline'" not in pay["script-src"]
    detail = directives(client.get(f"/billing/invoices/{invoice_id}/"))
    assert detail["script-src"] == ["'self'"]


@override_settings(STRIPE_API_BASE="", STRIPE_JS_URL="https://js.stripe.com/v3/")
def test_the_pay_page_allows_stripe_in_production(client_for, make_org):
    buyer, invoice_id = BILLING_FACTORIES["invoice_id"](make_org)
    pay = directives(client_for(buyer.owner).get(f"/billing/invoices/{invoice_id}/pay/"))
    assert pay["script-src"] == ["'self'", "https://js.stripe.com"]
    assert pay["connect-src"] == ["'self'", "https://api.stripe.com"]
    assert "https://hooks.stripe.com" in pay["frame-src"]


def test_the_api_docs_relax_only_their_own_page(client):
    assert directives(client.get("/"))["script-src"] == ["'self'"]  # the public home page
    assert directives(client.get("/accounts/login/"))["script-src"] == ["'self'"]
    docs = directives(client.get("/api/docs/"))
    assert "https://cdn.jsdelivr.net" in docs["script-src"]
    assert "'unsafe-inline'" not in docs["script-src"]


# Templates rendered to PDF by WeasyPrint (billing/pdf.py, green/pdf.py) are never served to a browser.
PDF_TEMPLATES = {"billing/invoice_pdf.html", "green/statement_pdf.html"}
FORBIDDEN = {
    "inline <script>": re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I),
    "inline event handler": re.compile(r"\son[a-z]+\s*=", re.I),
    "hx-on (evaluated with Function)": re.compile(r"\bhx-on", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "style attribute": re.compile(r"\sstyle\s*=", re.I),
    "<style> block": re.compile(r"<style[\s>]", re.I),
}


def test_no_template_needs_unsafe_inline():
    """The quick guard beside the browser test: the portal's templates hold no inline script, handler or style
    (chart data goes in {{ value|json_script }} blocks, behaviour in static/js, styles in static/css)."""
    root = Path(settings.BASE_DIR) / "templates"
    found = []
    for path in sorted(root.rglob("*.html")):
        name = path.relative_to(root).as_posix()
        if name in PDF_TEMPLATES:
            continue
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # template comments are not output
        for what, pattern in FORBIDDEN.items():
            found += [f"{name}: {what}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    assert not found, "\n".join(found)
