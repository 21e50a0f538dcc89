"""Browser fixtures: Debian's chromium driven by Playwright's sync API against pytest-django's live server.

    browser      one chromium for the whole session (never ``playwright install``: /usr/bin/chromium)
    page         a fresh browser context per test (own cookies), desktop-sized, Chinese Accept-Language
    new_page     a factory for more contexts in one test (a second user), same options
    screenshot   ``screenshot(page, "name")`` saves test-output/screenshots/name-desktop.png and -phone.png
    signup       signs a new owner up through the form and returns their details
    E2E_DB       the database marker for browser tests: ``pytestmark = [pytest.mark.e2e, E2E_DB]``

Playwright's sync API runs an event loop in this thread, so Django's async-safety check must be off.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import PASSWORD as FACTORY_PASSWORD

CHROMIUM = os.environ.get("SUANLI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PASSWORD = "Gpu-hours-2025!"  # passes every validator: long, not numeric, not common
TIMEOUT_MS = 10_000

_counter = itertools.count(1)

# The live server needs committed data, so every test flushes the database afterwards. Naming the available
# apps (all of them) makes that flush TRUNCATE ... CASCADE, which also empties tables that Django does not
# manage but that point at managed ones (e.g. metering's partitioned usage tables).
E2E_DB = pytest.mark.django_db(transaction=True, available_apps=list(settings.INSTALLED_APPS))


def log_in(page: Page, email: str, password: str = FACTORY_PASSWORD) -> None:
    """Log in through the login form (accounts made by the factories share FACTORY_PASSWORD) and land on the
    dashboard."""
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(email)
    page.locator("#id_password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        message = f"no chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)  # in CI a missing browser must not pass as skipped browser tests
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Browser, live_server) -> Iterator[Callable[..., Page]]:
    """Opens pages in new browser contexts, each with its own cookies, based at the live server."""
    contexts: list[BrowserContext] = []

    def factory(locale: str = "zh-CN") -> Page:
        context = browser.new_context(
            base_url=live_server.url,
            viewport=DESKTOP,
            locale=locale,
            timezone_id="Asia/Shanghai",
            device_scale_factor=1,
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


def _save(page: Page, name: str, viewport: dict[str, int], suffix: str) -> Path:
    page.set_viewport_size(viewport)
    page.evaluate("window.scrollTo(0, 0)")
    path = SCREENSHOT_DIR / f"{name}-{suffix}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path


def take_screenshot(page: Page, name: str) -> list[Path]:
    """Saves the page at desktop and phone widths, then puts the desktop size back."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    try:
        return [_save(page, name, DESKTOP, "desktop"), _save(page, name, PHONE, "phone")]
    finally:
        page.set_viewport_size(DESKTOP)


@pytest.fixture
def screenshot() -> Callable[[Page, str], list[Path]]:
    return take_screenshot


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    full_name: str
    organization_name: str


def fill_signup(
    page: Page,
    *,
    email: str,
    password: str = PASSWORD,
    full_name: str = "王小明",
    organization_name: str = "苏州精工机械有限公司",
    kind: str = "buyer",
) -> None:
    page.locator("#id_full_name").fill(full_name)
    page.locator("#id_email").fill(email)
    page.locator("#id_password").fill(password)
    page.locator("#id_organization_name").fill(organization_name)
    page.locator(f"input[name=organization_kind][value={kind}]").check()


@pytest.fixture
def signup(transactional_db) -> Callable[..., Account]:
    """Signs a new owner up through the portal form and waits for the dashboard."""

    def do_signup(page: Page, *, kind: str = "buyer", organization_name: str | None = None) -> Account:
        number = next(_counter)
        account = Account(
            email=f"owner{number}-{uuid.uuid4().hex[:6]}@jinggong.example.cn",
            password=PASSWORD,
            full_name="王小明",
            organization_name=organization_name or f"苏州精工机械有限公司 {number}",
        )
        page.goto("/accounts/signup/")
        fill_signup(
            page,
            email=account.email,
            full_name=account.full_name,
            organization_name=account.organization_name,
            kind=kind,
        )
        page.get_by_test_id("signup-submit").click()
        expect(page).to_have_url(re.compile(r"/dashboard/$"))
        return account

    return do_signup
