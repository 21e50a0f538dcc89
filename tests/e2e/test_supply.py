"""The provider's supply flow in a real browser: register a site and a pool (validated as one types), measure the
pool with suanli-probe on this machine (CPU path) and see it verified with SCU/BWU; the public catalog compares
H100, H20 and Ascend 910B. Pages are saved at desktop and phone widths under test-output/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import ApiScope, Organization, OrganizationAPIKey
from marketplace import probe
from marketplace.models import AcceleratorModel, Cluster, Hub, Pool
from marketplace.reference_data import load
from tests.e2e.conftest import E2E_DB

pytestmark = [pytest.mark.e2e, E2E_DB]


@pytest.fixture(autouse=True)
def reference_data(transactional_db):
    load(AcceleratorModel, Hub, Cluster)  # a transactional test starts from flushed tables


def open_nav(page: Page) -> None:
    if page.locator(".navbar-toggler").is_visible():
        page.locator(".navbar-toggler").click()


def test_provider_registers_site_and_pool_attests_with_the_probe(page: Page, signup, screenshot, live_server, capsys):
    account = signup(page, kind="provider", organization_name="宁夏中卫测试智算中心")
    open_nav(page)
    page.get_by_test_id("nav-group-supply").click()
    page.get_by_test_id("nav-sites").click()
    expect(page).to_have_url(re.compile(r"/supply/sites/$"))
    screenshot(page, "supply-sites-empty")
    page.get_by_test_id("new-site").first.click()

    # Validation as one types: an absurd PUE is flagged before submitting.
    page.locator("#id_name").fill("中卫云谷一号数据中心")
    page.locator("#id_province").select_option("64")
    page.locator("#id_city").fill("中卫市")
    page.locator("#id_cluster").select_option(label="中卫数据中心集群")
    page.locator("#id_grid_region").select_option("northwest")
    page.locator("#id_pue").fill("0.8")
    expect(page.locator("#fb-pue")).to_have_attribute("data-state", "invalid")
    expect(page.locator("#id_pue")).to_have_class(re.compile(r"\bis-invalid\b"))
    screenshot(page, "supply-site-live-validation")
    page.locator("#id_pue").fill("1.15")
    expect(page.locator("#fb-pue")).to_have_attribute("data-state", "valid")
    page.locator("#id_green_share_pct").fill("65")
    page.locator("#id_latency_tier").select_option("cross_hub")
    page.locator("#id_dengbao_level").select_option("3")
    page.get_by_test_id("save-site").click()
    expect(page.get_by_test_id("site-name")).to_have_text("中卫云谷一号数据中心")
    screenshot(page, "supply-site-detail")

    # A pool whose shares do not add up is refused on the field; fixed, it is created as a draft.
    page.get_by_test_id("new-pool").click()
    page.locator("#id_accelerator_model").select_option(label="NVIDIA H100 SXM5")
    page.locator("#id_name").fill("A栋 H100 集群")
    page.locator("#id_accelerator_count").fill("0")
    expect(page.locator("#fb-accelerator_count")).to_have_attribute("data-state", "invalid")
    page.locator("#id_accelerator_count").fill("64")
    own_id = page.locator("#own-org-id").inner_text()
    page.locator("#id_shares").fill(f"{own_id}, 90")
    page.get_by_test_id("save-pool").click()
    expect(page.locator("[data-field-error=shares]")).to_contain_text("90")
    assert not Pool.objects.exists()
    page.locator("#id_shares").fill(f"{own_id}, 100")
    page.get_by_test_id("save-pool").click()
    expect(page.get_by_test_id("pool-name")).to_have_text("A栋 H100 集群")
    expect(page.get_by_test_id("unverified-badge")).to_be_visible()
    expect(page.get_by_test_id("pool-scu").locator("[data-basis]")).to_have_attribute("data-basis", "datasheet")
    screenshot(page, "supply-pool-unverified")

    # The provider runs suanli-probe on this machine (NumPy on the CPU) and submits with an API key.
    pool = Pool.objects.get()
    organization = Organization.objects.get(name=account.organization_name)
    _key, raw = OrganizationAPIKey.objects.create_key(
        name="probe", organization=organization, scopes=[ApiScope.SUPPLY_WRITE]
    )
    argv = ["--backend", "numpy", "--size", "384", "--bw-mb", "32", "--repeats", "2"]
    assert probe.main([*argv, "--url", live_server.url, "--api-key", raw, "--pool", str(pool.public_id)]) == 0
    assert "status=accepted" in capsys.readouterr().out

    page.reload()
    expect(page.get_by_test_id("verified-badge")).to_be_visible()
    expect(page.get_by_test_id("pool-scu").locator("[data-unit=SCU]")).to_have_attribute("data-basis", "attested")
    expect(page.get_by_test_id("pool-bwu").locator("[data-unit=BWU]")).to_have_attribute("data-basis", "attested")
    expect(page.get_by_test_id("attestation-history")).to_contain_text("api-key:")
    screenshot(page, "supply-pool-verified")

    # A figure above 1.5 x the datasheet through the portal: refused on the field, nothing saved.
    page.get_by_test_id("attest").click()
    page.locator("#id_measured_tflops").fill("1600")
    page.locator("#id_measured_bw_tbps").fill("3.1")
    page.locator("#id_raw_output").fill("gemm fp16 n=8192 -> 1600 TFLOPS")
    page.get_by_test_id("submit-attestation").click()
    expect(page.locator("[data-field-error=measured_tflops]")).to_be_visible()
    expect(page.locator("#id_request_review")).to_be_visible()
    screenshot(page, "supply-attestation-refused")

    page.goto("/supply/pools/")
    expect(page.locator(f"[data-pool='{pool.public_id}']")).to_contain_text("SCU")
    screenshot(page, "supply-pools")


def test_catalog_compares_h100_h20_and_ascend(page: Page, screenshot):
    page.goto("/catalog/")
    table = page.get_by_test_id("compare-table")
    for name in ("H100 SXM5", "H20", "Ascend 910B"):
        expect(table.locator("thead")).to_contain_text(name)
    expect(table.locator("[data-unit=SCU][data-basis=datasheet]")).to_have_count(3)
    expect(table.locator("[data-unit=BWU]")).to_have_count(2)  # the 910B's bandwidth is not published
    expect(page.get_by_test_id("compare-chart").locator("svg")).to_have_count(1)
    screenshot(page, "catalog")

    # Choose another set to compare.
    page.get_by_test_id("catalog-form").locator("input[name=m]:checked").first.uncheck()
    page.get_by_role("link", name=re.compile("Instinct MI300X")).locator("xpath=ancestor::tr//input").check()
    page.get_by_test_id("compare-submit").click()
    expect(page.get_by_test_id("compare-table").locator("thead")).to_contain_text("MI300X")
