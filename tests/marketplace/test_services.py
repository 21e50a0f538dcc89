"""Supply services: every rule gives a field error and writes nothing; good input writes and audits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError, ValidationFailed
from core.models import AuditLog
from marketplace import services
from marketplace.models import Attestation, AttestationStatus, Pool, PoolShare, PoolStatus, Site
from tests.marketplace.factories import accelerator, make_pool, make_site

pytestmark = pytest.mark.django_db


def codes(exc: ApplicationError) -> dict[str | None, str]:
    return {e.field: e.code for e in exc.errors}


# --- Sites --------------------------------------------------------------------------------------------


def test_site_create_sets_the_hub_from_the_cluster_and_audits(provider, site_input):
    site = services.site_create(organization=provider, actor=provider.owner, data=site_input())
    assert site.hub.code == "nx"
    assert site.cluster.name_zh == "中卫数据中心集群"
    assert AuditLog.objects.filter(action="site.created", target_id=str(site.public_id)).exists()


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"pue": Decimal("0.95")}, "pue", "pue_too_low"),
        ({"pue": Decimal("3.5")}, "pue", "pue_absurd"),
        ({"pue": None}, "pue", "required"),
        ({"green_share_pct": Decimal(101)}, "green_share_pct", "out_of_range"),
        ({"province": "99"}, "province", "invalid_province"),
        ({"province": "31"}, "cluster", "cluster_province_mismatch"),
        ({"cluster_id": "not-a-uuid"}, "cluster", "unknown_cluster"),
        ({"latency_tier": "fast"}, "latency_tier", "invalid_latency_tier"),
        ({"dengbao_level": 7}, "dengbao_level", "out_of_range"),
        ({"name": "  "}, "name", "required"),
    ],
)
def test_site_bad_input_is_a_field_error_and_nothing_is_saved(provider, site_input, overrides, field, code):
    with pytest.raises(ValidationFailed) as caught:
        services.site_create(organization=provider, actor=provider.owner, data=site_input(**overrides))
    assert codes(caught.value)[field] == code
    assert not Site.objects.exists()


def test_site_period_order_and_duplicate_names(provider, site_input):
    from datetime import date

    with pytest.raises(ValidationFailed) as caught:
        services.site_create(
            organization=provider,
            actor=provider.owner,
            data=site_input(pue_period_start=date(2025, 6, 1), pue_period_end=date(2025, 1, 1)),
        )
    assert codes(caught.value)["pue_period_end"] == "period_order"
    services.site_create(organization=provider, actor=provider.owner, data=site_input())
    with pytest.raises(ValidationFailed) as caught:
        services.site_create(organization=provider, actor=provider.owner, data=site_input())
    assert codes(caught.value)["name"] == "duplicate_name"


def test_only_providers_register_sites(make_org, site_input):
    buyer = make_org("buyer")
    with pytest.raises(ApplicationError) as caught:
        services.site_create(organization=buyer, actor=buyer.owner, data=site_input())
    assert caught.value.status_code == 403


def test_site_update_and_suspension_suspends_listed_pools(provider, site_input):
    site = services.site_create(organization=provider, actor=provider.owner, data=site_input())
    services.site_update(organization=provider, actor=provider.owner, site=site, data=site_input(pue=Decimal("1.3")))
    site.refresh_from_db()
    assert site.pue == Decimal("1.30")
    pool = make_pool(site, status=PoolStatus.LISTED)
    services.site_set_status(organization=provider, actor=provider.owner, site=site, status="suspended")
    pool.refresh_from_db()
    assert pool.status == PoolStatus.SUSPENDED
    with pytest.raises(ApplicationError) as caught:
        services.pool_set_status(organization=provider, actor=provider.owner, pool=pool, status="listed")
    assert caught.value.code == "site_suspended"


# --- Pools --------------------------------------------------------------------------------------------


def test_pool_create_with_shares_defaults_the_stack_and_audits(provider, make_org, pool_input):
    site = make_site(provider)
    partner = make_org("provider")
    data = pool_input(
        site,
        accelerator(),
        provider,
        shares=[
            services.ShareInput(owner=str(provider.public_id), share_pct=Decimal("70.5")),
            services.ShareInput(owner=str(partner.public_id), share_pct=Decimal("29.5")),
        ],
    )
    pool = services.pool_create(organization=provider, actor=provider.owner, data=data)
    assert pool.status == PoolStatus.DRAFT
    assert not pool.verified
    assert pool.software_stack == "cuda"
    assert sorted(pool.shares.values_list("share_pct", flat=True)) == [Decimal("29.50"), Decimal("70.50")]
    assert AuditLog.objects.get(action="pool.created").after["shares"]


def test_pool_owner_by_credit_code(provider, make_org, pool_input):
    from accounts.models import CompanyProfile

    partner = make_org("provider")
    CompanyProfile.objects.create(
        organization=partner,
        legal_name="伙伴",
        uscc="91640500MA762WYG0X",
        registered_province="64",
        registered_city="中卫市",
        industry="software",
        size_class="small",
        legal_representative="某",
    )
    site = make_site(provider)
    data = pool_input(
        site,
        accelerator(),
        provider,
        shares=[
            services.ShareInput(owner=str(provider.public_id), share_pct=Decimal(60)),
            services.ShareInput(owner="91640500ma762wyg0x", share_pct=Decimal(40)),
        ],
    )
    pool = services.pool_create(organization=provider, actor=provider.owner, data=data)
    assert PoolShare.objects.get(pool=pool, organization=partner).share_pct == Decimal(40)


@pytest.mark.parametrize(
    ("shares", "code"),
    [
        ([("self", "60"), ("self2", "30")], "shares_not_100"),
        ([("self", "100.5")], "invalid_share"),
        ([("self", "0")], "invalid_share"),
        ([("self", "-10"), ("self2", "110")], "invalid_share"),
        ([("self", "50"), ("self", "50")], "duplicate_owner"),
        ([("00000000-0000-0000-0000-000000000000", "100")], "unknown_owner"),
        ([("self", "33.333"), ("self2", "66.667")], "invalid_share"),
        ([], "required"),
    ],
)
def test_pool_shares_must_sum_to_exactly_100(provider, make_org, pool_input, shares, code):
    site = make_site(provider)
    other = make_org("provider")
    names = {"self": str(provider.public_id), "self2": str(other.public_id)}
    share_inputs = [services.ShareInput(owner=names.get(o, o), share_pct=Decimal(p)) for o, p in shares]
    with pytest.raises(ValidationFailed) as caught:
        services.pool_create(
            organization=provider,
            actor=provider.owner,
            data=pool_input(site, accelerator(), provider, shares=share_inputs),
        )
    assert code in [e.code for e in caught.value.errors if e.field == "shares"]
    assert not Pool.objects.exists()


def test_pool_bad_input(provider, make_org, pool_input):
    site = make_site(provider)
    foreign_site = make_site(make_org("provider"), name="别人的机房")
    cases = [
        ({"accelerator_count": 0}, "accelerator_count", "count_not_positive"),
        ({"accelerator_count": -3}, "accelerator_count", "count_not_positive"),
        (
            {"accelerator_model_id": "00000000-0000-0000-0000-000000000000"},
            "accelerator_model",
            "unknown_accelerator_model",
        ),
        ({"accelerator_model_id": "H100"}, "accelerator_model", "unknown_accelerator_model"),
        ({"site_id": foreign_site.public_id}, "site", "unknown_site"),
        ({"software_stack": "opencl"}, "software_stack", "invalid_software_stack"),
    ]
    for overrides, field, code in cases:
        with pytest.raises(ValidationFailed) as caught:
            services.pool_create(
                organization=provider, actor=provider.owner, data=pool_input(site, accelerator(), provider, **overrides)
            )
        assert codes(caught.value).get(field) == code, overrides
    assert not Pool.objects.exists()


def test_changing_the_model_drops_the_rating(provider, pool_input):
    site = make_site(provider)
    pool = services.pool_create(
        organization=provider, actor=provider.owner, data=pool_input(site, accelerator(), provider)
    )
    services.attestation_submit(
        organization=provider,
        pool=pool,
        user=provider.owner,
        data=services.AttestationInput(measured_tflops=Decimal(900), measured_bw_tbps=Decimal("3.2"), raw_output="x"),
    )
    pool.refresh_from_db()
    assert pool.verified
    h20 = accelerator("NVIDIA", "H20")
    services.pool_update(
        organization=provider,
        actor=provider.owner,
        pool=pool,
        data=pool_input(site, h20, provider, software_stack="cuda"),
    )
    pool.refresh_from_db()
    assert not pool.verified
    assert pool.current_attestation is None


# --- Attestations -------------------------------------------------------------------------------------


def _attest(provider, pool, tflops, tbps="3.0", **extra):
    return services.attestation_submit(
        organization=provider,
        pool=pool,
        user=provider.owner,
        data=services.AttestationInput(
            measured_tflops=None if tflops is None else Decimal(tflops),
            measured_bw_tbps=None if tbps is None else Decimal(tbps),
            raw_output=extra.pop("raw_output", "gemm ..."),
            **extra,
        ),
    )


def test_attestation_verifies_the_pool_with_ratio_and_history(provider):
    pool = make_pool(make_site(provider))
    first = _attest(provider, pool, "900", "3.1")
    assert first.status == AttestationStatus.ACCEPTED
    assert first.tflops_ratio == Decimal("0.9100")
    assert first.bw_ratio == Decimal("0.9254")
    assert first.declared_tflops == Decimal(989)
    assert first.formula_version
    pool.refresh_from_db()
    assert pool.verified
    assert pool.current_attestation == first
    assert pool.normalised().scu.value == Decimal("0.9")
    assert pool.normalised().scu.basis == "attested"

    services.pool_request_retest(pool=pool, actor=provider.owner)
    second = _attest(provider, pool, "700", "2.5")  # the re-test falls short: the pool is re-rated
    pool.refresh_from_db()
    assert second.retest
    assert pool.retest_requested_at is None
    assert pool.current_attestation == second
    assert pool.normalised().scu.value == Decimal("0.7")
    assert Attestation.objects.filter(pool=pool).count() == 2
    assert AuditLog.objects.filter(action="attestation.submitted").count() == 2


@pytest.mark.parametrize(
    ("tflops", "tbps", "field", "code"),
    [
        ("0", "3", "measured_tflops", "not_positive"),
        ("-5", "3", "measured_tflops", "not_positive"),
        ("900", "0", "measured_bw_tbps", "not_positive"),
        ("900", "-1", "measured_bw_tbps", "not_positive"),
        ("1500", "3", "measured_tflops", "above_datasheet"),  # 1.52 x 989
        ("900", "5.1", "measured_bw_tbps", "above_datasheet"),  # 1.52 x 3.35
        (None, "3", "measured_tflops", "required"),
        ("50000", "3", "measured_tflops", "absurd"),
    ],
)
def test_attestation_bad_figures_are_refused_and_nothing_saved(provider, tflops, tbps, field, code):
    pool = make_pool(make_site(provider))
    with pytest.raises(ValidationFailed) as caught:
        _attest(provider, pool, tflops, tbps)
    assert codes(caught.value)[field] == code
    assert not Attestation.objects.exists()
    pool.refresh_from_db()
    assert not pool.verified


def test_exactly_one_and_a_half_times_is_accepted(provider):
    pool = make_pool(make_site(provider))
    assert _attest(provider, pool, "1483.5", "3").status == AttestationStatus.ACCEPTED  # 1.5 x 989


def test_implausible_figures_wait_for_staff_review_when_asked(provider, make_user):
    pool = make_pool(make_site(provider))
    flagged = _attest(provider, pool, "1600", "3", request_review=True)
    assert flagged.status == AttestationStatus.PENDING_REVIEW
    assert flagged.tflops_ratio == Decimal("1.6178")
    pool.refresh_from_db()
    assert not pool.verified  # not silently accepted
    with pytest.raises(ApplicationError):
        services.attestation_review(attestation=flagged, actor=provider.owner, accept=True)
    staff = make_user(is_staff=True)
    services.attestation_review(attestation=flagged, actor=staff, accept=True, note="re-run witnessed")
    pool.refresh_from_db()
    assert pool.verified
    assert pool.current_attestation == flagged


def test_unknown_datasheet_accepts_any_plausible_figure(provider):
    ascend = accelerator("Huawei", "Ascend 910B (SKU not specified; figure as listed by one cloud provider)")
    pool = make_pool(make_site(provider), model=ascend)
    attestation = _attest(provider, pool, "265", "1.6")
    assert attestation.bw_ratio is None
    assert attestation.tflops_ratio == Decimal("0.9464")
    pool.refresh_from_db()
    assert pool.normalised().bwu.basis == "attested"


def test_attestation_needs_raw_output_and_a_reference_model_for_tokens(provider):
    pool = make_pool(make_site(provider))
    with pytest.raises(ValidationFailed) as caught:
        _attest(provider, pool, "900", "3", raw_output=" ", tokens_per_s=Decimal(1200))
    assert codes(caught.value) == {"raw_output": "required", "reference_model": "required"}


def test_another_providers_pool_is_not_found(provider, make_org):
    pool = make_pool(make_site(make_org("provider")))
    with pytest.raises(ApplicationError) as caught:
        _attest(provider, pool, "900")
    assert caught.value.status_code == 404
