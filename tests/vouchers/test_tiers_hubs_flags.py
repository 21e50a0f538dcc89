"""Ratio tiers by product (model/API vs compute), redemptions by hub, and the flagged cases of the issuer console."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import CompanyProfile
from core.errors import ValidationFailed
from core.timeutils import utcnow
from marketplace.models import Hub, Site
from tests.marketplace.factories import ensure_reference_data, make_lease
from tests.vouchers import factories
from vouchers import rules, selectors, services
from vouchers.models import Program, RedemptionLine
from vouchers.program_templates import PROGRAM_TEMPLATES
from vouchers.services import EligibleLine

NOW = factories.NOW


def eline(provider_id, amount=1_000_000, *, product="compute", domestic=True, subjects=None, currency="CNY"):
    return EligibleLine(
        amount_minor=amount,
        currency=currency,
        provider_id=provider_id,
        chip_domestic=domestic,
        compute_only=True,
        evidence={"subjects": list(subjects or [])},
        product=product,
    )


def state(**kw):
    values = {
        "grant_id": 1,
        "program_id": 1,
        "currency": "CNY",
        "ratio_domestic": Decimal("0.30"),
        "ratio_other": Decimal("0.20"),
        "grant_left_minor": 10**12,
        "program_left_minor": 10**12,
    }
    values.update(kw)
    return rules.GrantState(**values)


# --- 1. Ratio tiers by product ------------------------------------------------------------------------------


def test_model_lines_get_the_model_ratio_and_compute_lines_the_chip_ratio():
    plan = rules.plan_subsidy(
        [eline(7, product="model"), eline(7, product="compute"), eline(7, product="model", domestic=False)],
        [state(ratio_model=Decimal("0.50"))],
    )
    assert [(lp.ratio, lp.subsidy_minor) for lp in plan.grants[0].lines] == [
        (Decimal("0.50"), 500_000),
        (Decimal("0.30"), 300_000),
        (Decimal("0.50"), 500_000),
    ]


def test_without_a_model_ratio_model_lines_get_the_chip_origin_ratio():
    plan = rules.plan_subsidy([eline(7, product="model"), eline(7, product="model", domestic=False)], [state()])
    assert [lp.ratio for lp in plan.grants[0].lines] == [Decimal("0.30"), Decimal("0.20")]


def test_unknown_product_is_a_programming_error():
    with pytest.raises(ValueError, match="product must be one of"):
        eline(7, product="storage")


def test_firm_tiers_raise_the_model_ratio():
    terms = rules.ProgramTerms(
        currency="CNY",
        status="open",
        valid_from=NOW - timedelta(days=1),
        valid_until=NOW + timedelta(days=1),
        budget_minor=10**9,
        committed_minor=0,
        ratio_domestic=Decimal("0.3"),
        ratio_other=Decimal("0.2"),
        ratio_sme=Decimal("0.6"),
        ratio_model=Decimal("0.5"),
    )
    sme = rules.FirmFacts(uscc="x", legal_representative="y", size_class="small")
    large = rules.FirmFacts(uscc="x", legal_representative="y", size_class="large")
    assert rules.effective_model_ratio(terms, sme, NOW) == Decimal("0.6")
    assert rules.effective_model_ratio(terms, large, NOW) == Decimal("0.5")
    no_tier = rules.ProgramTerms(**{**terms.__dict__, "ratio_model": None})
    assert rules.effective_model_ratio(no_tier, sme, NOW) is None


amounts = st.integers(min_value=-5, max_value=10**9)
ratios = st.decimals(min_value=0, max_value=1, places=4)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.tuples(amounts, st.booleans(), st.sampled_from(["compute", "model"]), st.integers(1, 3)), max_size=6
    ),
    ratio_model=st.none() | ratios,
    grant_left=st.integers(0, 10**9),
    program_left=st.integers(0, 10**9),
)
def test_property_product_tier(lines, ratio_model, grant_left, program_left):
    offered = [eline(p, a, product=prod, domestic=d) for a, d, prod, p in lines]
    grant = state(ratio_model=ratio_model, grant_left_minor=grant_left, program_left_minor=program_left)
    plan = rules.plan_subsidy(offered, [grant])
    # Every line's ratio follows its product; no line gets more than its amount; no cap is passed.
    for grant_plan in plan.grants:
        for lp in grant_plan.lines:
            line = offered[lp.line_index]
            if line.product == "model" and ratio_model is not None:
                assert lp.ratio == ratio_model
            else:
                assert lp.ratio == (Decimal("0.30") if line.chip_domestic else Decimal("0.20"))
            assert 0 < lp.subsidy_minor <= line.amount_minor
        assert grant_plan.amount_minor == sum(lp.subsidy_minor for lp in grant_plan.lines)
    assert plan.total_minor <= min(grant_left, program_left)
    # Unset: the product changes nothing (the behaviour before product tiers).
    if ratio_model is None:
        as_compute = [eline(p, a, product="compute", domestic=d) for a, d, _prod, p in lines]
        assert rules.plan_subsidy(as_compute, [grant]) == plan


@pytest.mark.django_db
def test_reserve_applies_the_model_ratio_and_records_the_product(world):
    program = factories.program(world.issuer, voucher_type="model", ratio_model=Decimal("0.50"))
    factories.grant(program, world.buyer, amount_minor=5_000_000)
    [redemption] = services.voucher_subsidy_reserve(
        buyer=world.buyer,
        invoice_reference="INV-M1",
        lines=[eline(world.provider.pk, product="model"), eline(world.provider.pk, product="compute")],
        at=NOW,
    )
    assert redemption.amount_minor == 800_000
    assert [(li.product, li.ratio) for li in redemption.lines.order_by("line_index")] == [
        ("model", Decimal("0.5")),
        ("compute", Decimal("0.3")),
    ]


@pytest.mark.django_db
def test_model_ratio_out_of_range_is_a_field_error(world):
    with pytest.raises(ValidationFailed) as exc:
        factories.program(world.issuer, ratio_model=Decimal("1.5"))
    assert [(e.code, e.field) for e in exc.value.errors] == [("ratio_range", "ratio_model")]


@pytest.mark.django_db
def test_templates_and_portal_form_set_the_model_ratio(world, client_for):
    assert PROGRAM_TEMPLATES["shanghai-model"].ratio_model == Decimal("0.50")
    assert PROGRAM_TEMPLATES["beijing-compute"].ratio_model is None
    client = client_for(world.issuer.owner)
    response = client.post(
        "/issuer/programmes/",
        {
            "template": "hangzhou-compute",
            "fiscal_year": "2026",
            "valid_from": "2026-01-01",
            "valid_until": "2026-12-31",
            "allowed_providers": [world.provider.pk],
            "ratio_model_pct": "40",
        },
    )
    assert response.status_code == 302
    program = Program.objects.get()
    assert program.ratio_model == Decimal("0.4")
    page = client.get(f"/issuer/programmes/{program.public_id}/")
    assert 'data-testid="ratio-model"' in page.content.decode()
    assert "40%" in page.content.decode()


# --- 2. Redemptions by hub ----------------------------------------------------------------------------------


def _lease_in_hub(world, code):
    lease = make_lease(world.provider, world.buyer)
    Site.objects.filter(pk=lease.pool.site_id).update(hub=Hub.objects.get(code=code) if code else None)
    return lease


@pytest.mark.django_db
def test_redemptions_by_hub_from_evidence_subjects(world, client_for):
    ensure_reference_data()  # a transactional test elsewhere may have flushed the hubs
    hub_a, hub_b = list(Hub.objects.order_by("code").values_list("code", flat=True)[:2])
    lease_a = _lease_in_hub(world, hub_a)
    # make_lease reuses the provider's first site: a second hub needs a second provider's site.
    other = make_lease(world.other_provider, world.buyer)
    Site.objects.filter(pk=other.pool.site_id).update(hub=Hub.objects.get(code=hub_b))
    program = factories.program(world.issuer)
    factories.grant(program, world.buyer, amount_minor=50_000_000)
    pid = world.provider.pk
    services.voucher_subsidy_reserve(
        buyer=world.buyer,
        invoice_reference="INV-H1",
        lines=[
            eline(pid, 1_000_000, subjects=[str(lease_a.public_id)]),  # 300,000 to hub A
            eline(pid, 1_000_001, subjects=[str(lease_a.public_id), str(other.public_id)]),  # 300,000 split
            eline(pid, 100_000, subjects=[str(uuid.uuid4()), "not-a-uuid"]),  # 30,000 unknown
            eline(pid, 200_000),  # no subjects: 60,000 unknown
        ],
        at=NOW,
    )
    rows = {row["code"]: row for row in selectors.redemption_breakdown_by_hub(program)}
    assert rows[hub_a]["amount"] == 300_000 + 150_000
    assert rows[hub_b]["amount"] == 150_000
    assert rows["unknown"]["amount"] == 90_000
    assert rows["unknown"]["lines"] == 2
    total = RedemptionLine.objects.filter(redemption__program=program).values_list("subsidy_minor", flat=True)
    assert sum(r["amount"] for r in rows.values()) == sum(total)
    page = client_for(world.issuer.owner).get(f"/issuer/programmes/{program.public_id}/").content.decode()
    assert 'data-testid="by-hub"' in page
    assert 'id="hub-chart"' in page
    assert Hub.objects.get(code=hub_a).name_zh in page


def test_split_evenly_sums_exactly():
    assert selectors._split_evenly(10, 3) == [4, 3, 3]
    assert sum(selectors._split_evenly(1_000_001, 7)) == 1_000_001


# --- 3. Flagged cases ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_flagged_cases(world, make_org):
    program = factories.program(world.issuer, cap_per_firm_year_minor=300_000)
    factories.grant(program, world.buyer, amount_minor=300_000)
    # A related-party provider (its shareholder is the buyer's legal representative) next to a normal line.
    CompanyProfile.objects.get(organization=world.other_provider).shareholders.create(
        name="赵北", uscc="", share_pct=Decimal(30)
    )
    [refused] = services.voucher_subsidy_reserve(
        buyer=world.buyer,
        invoice_reference="INV-F1",
        lines=[eline(world.provider.pk, 1_000_000), eline(world.other_provider.pk, 500_000)],
        at=NOW,
    )
    assert refused.amount_minor == 300_000  # the annual cap is now exhausted too

    # A second buyer: a redemption without metered evidence, a grant near expiry mostly unused, another mostly used.
    second = make_org("buyer", name="上海小模型科技有限公司")
    factories.profile(second, legal_representative="钱申")
    other_program = factories.program(world.issuer)
    factories.grant(other_program, second, amount_minor=10_000_000, expires_at=NOW + timedelta(days=10))
    [bare] = services.voucher_subsidy_reserve(
        buyer=second, invoice_reference="INV-F2", lines=[eline(world.provider.pk, 1_000_000)], at=NOW
    )
    third = make_org("buyer", name="杭州用尽科技有限公司")
    factories.profile(third)
    factories.grant(other_program, third, amount_minor=400_000, expires_at=NOW + timedelta(days=10))
    services.voucher_subsidy_reserve(
        buyer=third,
        invoice_reference="INV-F3",
        lines=[eline(world.provider.pk, 1_000_000, subjects=[str(uuid.uuid4())])],
        at=NOW,
    )

    flags = selectors.flagged_cases(world.issuer, at=NOW)
    assert [(c.reference, c.codes) for c in flags["refusal"]] == [("INV-F1", ("related_party",))]
    assert [(c.buyer_name, c.amount_minor) for c in flags["expiring_unused"]] == [(second.name, 9_700_000)]
    assert [(c.buyer_name, c.amount_minor, c.cap_minor) for c in flags["annual_cap"]] == [
        (world.buyer.name, 300_000, 300_000)
    ]
    # INV-F1's lines carry subjects=[] (none metered); INV-F2 too; INV-F3 has a subject.
    assert {c.reference for c in flags["no_evidence"]} == {"INV-F1", "INV-F2"}
    assert bare.lines.count() == 1

    # Filter by programme; a fully released redemption is no longer flagged for evidence.
    narrowed = selectors.flagged_cases(world.issuer, program=other_program, at=NOW)
    assert narrowed["refusal"] == []
    assert narrowed["annual_cap"] == []
    assert {c.reference for c in narrowed["no_evidence"]} == {"INV-F2"}
    services.voucher_subsidy_release(buyer=second, invoice_reference="INV-F2", at=NOW, reference="VOID-F2")
    assert selectors.flagged_cases(world.issuer, program=other_program, at=NOW)["no_evidence"] == []

    # An invoice refused outright (its only line from the related party) leaves no redemption, but is flagged;
    # asking again stores nothing twice.
    for _attempt in range(2):
        assert (
            services.voucher_subsidy_reserve(
                buyer=world.buyer, invoice_reference="INV-F4", lines=[eline(world.other_provider.pk, 200_000)], at=NOW
            )
            == []
        )
    flags = selectors.flagged_cases(world.issuer, at=NOW)
    assert [(c.reference, c.codes, c.amount_minor) for c in flags["refusal"]] == [
        ("INV-F4", ("related_party",), 0),
        ("INV-F1", ("related_party",), 300_000),
    ]

    # Another issuer sees none of it.
    stranger = make_org("issuer", name="深圳市工业和信息化局")
    assert not any(selectors.flagged_cases(stranger, at=NOW).values())


@pytest.mark.django_db
def test_flags_page_filter_and_tenancy(world, make_org, client_for):
    program = factories.program(world.issuer)
    factories.grant(program, world.buyer, amount_minor=1_000_000, expires_at=utcnow() + timedelta(days=5))
    client = client_for(world.issuer.owner)
    page = client.get("/issuer/flags/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="flags-expiring"' in body
    assert world.buyer.name in body
    assert 'href="/issuer/flags/"' in client.get("/issuer/programmes/").content.decode()
    assert client.get(f"/issuer/flags/?program={program.public_id}").status_code == 200
    assert client.get("/issuer/flags/?program=nonsense").status_code == 404
    stranger = make_org("issuer", name="成都市经济和信息化局")
    other_program = factories.program(stranger)
    assert client.get(f"/issuer/flags/?program={other_program.public_id}").status_code == 404
    foreign = client_for(stranger.owner).get("/issuer/flags/")
    assert foreign.status_code == 200
    assert world.buyer.name not in foreign.content.decode()
    assert client_for(world.buyer.owner).get("/issuer/flags/").status_code in (403, 404)
