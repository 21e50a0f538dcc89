"""The pay page script (static/billing/pay.js) in the real browser against the local Stripe's fake Stripe.js."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from billing import stripe_gateway as gw
from tests.billing.test_stripe_gateway import new_intent

# --- The pay page script in a real browser against the fake Stripe.js -------------------------------------

PAY_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>pay</title>
<script src="{stripe_js}"></script><script src="/static/billing/pay.js" defer></script></head>
<body><form data-stripe-pay data-publishable-key="{pk}" data-client-secret="{secret}" data-return-url="/paid/"
 data-locale="en" data-msg-processing="Paying..." data-msg-succeeded="Paid" data-msg-failed="Not paid">
<div data-stripe-card id="card"></div><div data-stripe-error id="error" role="alert"></div>
<div data-stripe-status id="status"></div>
<button type="submit" id="pay"><span data-stripe-spinner class="d-none"></span>Pay</button></form></body></html>"""


@pytest.fixture
def pay_page_server() -> Iterator[tuple[str, dict[str, str]]]:
    """Serves /pay/ (a stand-in for the lead's template), /static/billing/pay.js and /paid/."""
    from pathlib import Path

    script = (Path(settings.BASE_DIR) / "static" / "billing" / "pay.js").read_bytes()
    page: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/static/billing/pay.js"):
                body, kind = script, "application/javascript"
            elif self.path.startswith("/pay/"):
                body, kind = page["html"].encode(), "text/html; charset=utf-8"
            else:
                body, kind = b"<!doctype html><p id=paid>paid</p>", "text/html"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", page
    server.shutdown()
    server.server_close()


@pytest.mark.e2e
def test_pay_js_pays_with_a_test_card_and_shows_a_decline(stripe_server, pay_page_server, tmp_path, browser):
    """``browser`` is the browser tests' session fixture (one Playwright per process: a second sync Playwright
    in the same process fails)."""
    from playwright.sync_api import expect

    base, page_html = pay_page_server

    def open_pay_page(browser, intent: gw.PaymentIntentResult):
        page_html["html"] = PAY_PAGE.format(
            stripe_js=settings.STRIPE_JS_URL, pk=settings.STRIPE_PUBLISHABLE_KEY, secret=intent.client_secret
        )
        page = browser.new_page()
        page.goto(f"{base}/pay/")
        return page

    def type_card(page, number: str) -> None:
        inputs = page.locator("#card input")
        for index, value in enumerate([number, "12", "30", "123", "12345"]):
            inputs.nth(index).fill(value)

    declined = new_intent(amount=990)
    page = open_pay_page(browser, declined)
    type_card(page, "4242")
    page.click("#pay")
    expect(page.locator("#error")).to_have_text("Your card number is incorrect.", timeout=10_000)
    type_card(page, "4000000000000002")
    page.click("#pay")
    expect(page.locator("#error")).to_have_text("Your card was declined.", timeout=10_000)
    expect(page.locator("#pay")).to_be_enabled()
    assert page.url.endswith("/pay/")
    assert gw.payment_intent_retrieve(payment_intent_id=declined.id).status == "requires_payment_method"
    page.screenshot(path=str(tmp_path / "declined.png"))

    # The buyer corrects the card on the same page: the same intent is paid.
    page.locator("#card input").nth(0).fill("4242424242424242")
    page.click("#pay")
    page.wait_for_url(f"**/paid/?payment_intent={declined.id}", timeout=10_000)
    assert gw.payment_intent_retrieve(payment_intent_id=declined.id).status == "succeeded"

    # A card that asks for 3-D Secure: the fake's dialog, then the return URL.
    secure = new_intent(amount=1_990)
    page = open_pay_page(browser, secure)
    type_card(page, "4000002500003155")
    page.click("#pay")
    page.get_by_role("button", name="Complete authentication").click(timeout=10_000)
    page.wait_for_url(f"**/paid/?payment_intent={secure.id}", timeout=10_000)
    assert gw.payment_intent_retrieve(payment_intent_id=secure.id).status == "succeeded"
