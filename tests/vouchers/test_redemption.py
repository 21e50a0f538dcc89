"""The subsidy reservation billing calls: the formula, every cap, expiry, revocation, related parties, release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.models import CompanyProfile
from core.errors import ApplicationError
from tests.vouchers import factories
from vouchers import services
from vouchers.models import FirmYearUsage, Grant, GrantStatus, Program, Redemption, SettlementStatus
from vouchers.services import EligibleLine

NOW = factories.NOW


def line(world, amount=1_000_000, *, provider=None, domestic=True, compute_only=True, currency="CNY"):
    return EligibleLine(
        amount_minor=amount,
        currency=currency,
        provider_id=(provider or world.provider).pk,
        chip_domestic=domestic,
        compute_only=compute_only,
        evidence={"lease": "L-1", "accelerator_seconds": 3600 * 8, "batches": ["b1"]},
    )


def reserve(world, invoice, lines, at=NOW):
    return services.voucher_subsidy_reserve(buyer=world.buyer, invoice_reference=invoice, lines=lines, at=at)


@pytest.mark.django_db
def test_ratio_by_chip_origin_with_evidence(world):
    program = factories.program(world.issuer)
    grant = factories.grant(program, world.buyer, amount_minor=5_000_000)
    [redemption] = reserve(world, "INV-1", [line(world, 1_000_000), line(world, 333_333, domestic=False)])
    # 30% of 1,000,000 + 20% of 333,333 = 300,000 + 66,666.6 -> 66,667 (rounded once per line, half up)
    assert redemption.amount_minor == 366_667
    assert redemption.eligible_minor == 1_333_333
    lines = list(redemption.lines.order_by("line_index"))
    assert [(li.ratio, li.subsidy_minor) for li in lines] == [(Decimal("0.3"), 300_000), (Decimal("0.2"), 66_667)]
    assert lines[0].evidence["accelerator_seconds"] == 28800
    grant.refresh_from_db()
    program.refresh_from_db()
    assert grant.redeemed_minor == 366_667
    assert program.redeemed_minor == 366_667
    assert FirmYearUsage.objects.get(buyer=world.buyer, program=program, year=2026).used_minor == 366_667


@pytest.mark.django_db
def test_same_invoice_twice_reserves_once(world):
    program = factories.program(world.issuer)
    grant = factories.grant(program, world.buyer, amount_minor=5_000_000)
    first = reserve(world, "INV-1", [line(world)])
    again = reserve(world, "INV-1", [line(world, 9_000_000)])
    assert [r.pk for r in again] == [r.pk for r in first]
    grant.refresh_from_db()
    assert grant.redeemed_minor == 300_000


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("grant_amount", "annual_cap", "per_app", "budget", "expected"),
    [
        (100_000, None, None, 100_000_000, 100_000),  # grant left
        (5_000_000, 50_000, None, 100_000_000, 50_000),  # annual cap left
        (5_000_000, None, 70_000, 100_000_000, 70_000),  # cap per application
        (5_000_000, None, None, 100_000_000, 300_000),  # ratio x amount
    ],
)
def test_each_cap_binds(world, grant_amount, annual_cap, per_app, budget, expected):
    program = factories.program(
        world.issuer, budget_minor=budget, cap_per_firm_year_minor=annual_cap, cap_per_application_minor=per_app
    )
    if annual_cap is not None or per_app is not None:
        # A grant bigger than the caps (e.g. the cap was lowered after approval): the reservation still holds them.
        app = factories.application(program, world.buyer, requested_minor=grant_amount, status="approved")
        Program.objects.filter(pk=program.pk).update(committed_minor=grant_amount)
        Grant.objects.create(
            application=app,
            program=program,
            buyer=world.buyer,
            amount_minor=grant_amount,
            currency="CNY",
            expires_at=NOW + timedelta(days=30),
        )
    else:
        factories.grant(program, world.buyer, amount_minor=grant_amount)
    [redemption] = reserve(world, "INV-1", [line(world)])
    assert redemption.amount_minor == expected
    assert reserve(world, "INV-2", [line(world)]) == [] or expected == 300_000


@pytest.mark.django_db
def test_budget_left_binds(world):
    program = factories.program(world.issuer, budget_minor=1_000_000)
    factories.grant(program, world.buyer, amount_minor=1_000_000)
    # The bureau's budget is what was redeemed, not what was committed: simulate an over-committed past.
    Program.objects.filter(pk=program.pk).update(redeemed_minor=900_000, committed_minor=1_000_000)
    [redemption] = reserve(world, "INV-1", [line(world)])
    assert redemption.amount_minor == 100_000


@pytest.mark.django_db
def test_expiry_is_half_open(world):
    program = factories.program(world.issuer)
    expiry = datetime(2026, 9, 1, 16, 0, tzinfo=UTC)
    factories.grant(program, world.buyer, amount_minor=5_000_000, expires_at=expiry)
    assert reserve(world, "INV-AT", [line(world)], at=expiry) == []
    assert reserve(world, "INV-AFTER", [line(world)], at=expiry + timedelta(seconds=1)) == []
    [before] = reserve(world, "INV-BEFORE", [line(world)], at=expiry - timedelta(microseconds=1))
    assert before.amount_minor == 300_000


@pytest.mark.django_db
def test_revoked_grant_redeems_nothing_and_returns_budget(world):
    program = factories.program(world.issuer)
    grant = factories.grant(program, world.buyer, amount_minor=5_000_000)
    reserve(world, "INV-1", [line(world)])
    services.grant_revoke(issuer=world.issuer, grant=grant, reason="虚假合同", at=NOW)
    assert reserve(world, "INV-2", [line(world)]) == []
    program.refresh_from_db()
    assert program.committed_minor == 300_000  # the unused 4.7M went back
    assert program.redeemed_minor == 300_000


@pytest.mark.django_db
def test_related_party_lines_are_refused(world):
    program = factories.program(world.issuer)
    factories.grant(program, world.buyer, amount_minor=5_000_000)
    # The provider's shareholder is the buyer's legal representative's namesake natural person.
    profile = CompanyProfile.objects.get(organization=world.other_provider)
    profile.shareholders.create(name="赵北", uscc="", share_pct=Decimal(30))
    [redemption] = reserve(world, "INV-1", [line(world), line(world, provider=world.other_provider)])
    assert redemption.amount_minor == 300_000
    assert {"line": 1, "grant": None, "code": "related_party"} in redemption.evidence["refusals"]
    assert reserve(world, "INV-2", [line(world, provider=world.other_provider)]) == []


@pytest.mark.django_db
def test_compute_only_currency_and_allow_list(world):
    program = factories.program(world.issuer, restrict_providers=True, allowed_providers=[world.provider])
    factories.grant(program, world.buyer, amount_minor=5_000_000)
    assert reserve(world, "INV-1", [line(world, compute_only=False)]) == []
    assert reserve(world, "INV-2", [line(world, currency="USD")]) == []
    assert reserve(world, "INV-3", [line(world, provider=world.other_provider)]) == []
    [ok] = reserve(world, "INV-4", [line(world)])
    assert ok.amount_minor == 300_000


@pytest.mark.django_db
def test_no_stacking_on_one_line_and_soonest_expiry_first(world, make_org):
    other_issuer = make_org("issuer")
    first = factories.program(world.issuer)
    second = factories.program(other_issuer, ratio_domestic=Decimal("0.5"))
    late = factories.grant(first, world.buyer, amount_minor=5_000_000, expires_at=datetime(2027, 6, 1, tzinfo=UTC))
    soon = factories.grant(second, world.buyer, amount_minor=100_000, expires_at=datetime(2026, 12, 1, tzinfo=UTC))
    redemptions = reserve(world, "INV-1", [line(world), line(world)])
    by_grant = {r.grant_id: r for r in redemptions}
    # The soon-expiring grant takes the lines it can (50% capped at its 100,000), and its lines are closed to
    # the other programme; the other line goes to the later grant.
    assert by_grant[soon.pk].amount_minor == 100_000
    assert by_grant[late.pk].amount_minor == 300_000
    assert {li.line_index for li in by_grant[late.pk].lines.all()}.isdisjoint(
        {li.line_index for li in by_grant[soon.pk].lines.all()}
    )


@pytest.mark.django_db
def test_release_void_and_credit_note(world):
    program = factories.program(world.issuer, cap_per_firm_year_minor=1_000_000)
    grant = factories.grant(program, world.buyer, amount_minor=1_000_000)
    reserve(world, "INV-1", [line(world)])
    services.voucher_subsidy_release(
        buyer=world.buyer, invoice_reference="INV-1", at=NOW, reference="CN-1", amount_minor=100_000
    )
    services.voucher_subsidy_release(
        buyer=world.buyer, invoice_reference="INV-1", at=NOW, reference="CN-1", amount_minor=100_000
    )  # a retry of the same credit note changes nothing
    grant.refresh_from_db()
    assert grant.redeemed_minor == 200_000
    services.voucher_subsidy_release(buyer=world.buyer, invoice_reference="INV-1", at=NOW)
    grant.refresh_from_db()
    program.refresh_from_db()
    redemption = Redemption.objects.get()
    assert grant.redeemed_minor == 0
    assert program.redeemed_minor == 0
    assert redemption.net_minor == 0
    assert redemption.settlement_status == SettlementStatus.NOT_DUE
    assert FirmYearUsage.objects.get().used_minor == 0


@pytest.mark.django_db
def test_expiry_task_returns_unused_and_late_release_returns_budget(world):
    program = factories.program(world.issuer)
    expiry = datetime(2026, 9, 1, tzinfo=UTC)
    grant = factories.grant(program, world.buyer, amount_minor=1_000_000, expires_at=expiry)
    reserve(world, "INV-1", [line(world)])
    assert services.grant_expire_due(at=expiry - timedelta(seconds=1)) == 0
    assert services.grant_expire_due(at=expiry) == 1
    assert services.grant_expire_due(at=expiry) == 0  # idempotent
    grant.refresh_from_db()
    program.refresh_from_db()
    assert grant.status == GrantStatus.EXPIRED
    assert grant.returned_minor == 700_000
    assert program.committed_minor == 300_000
    services.voucher_subsidy_release(buyer=world.buyer, invoice_reference="INV-1", at=expiry)
    program.refresh_from_db()
    assert (program.committed_minor, program.redeemed_minor) == (0, 0)


@pytest.mark.django_db
def test_bad_invoice_reference_and_float_amounts(world):
    with pytest.raises(ApplicationError):
        reserve(world, " ", [line(world)])
    with pytest.raises(TypeError):
        reserve(world, "INV", [line(world, amount=10.5)])


@pytest.mark.django_db
def test_mark_paid_needs_reference(world):
    program = factories.program(world.issuer)
    factories.grant(program, world.buyer, amount_minor=1_000_000)
    [redemption] = reserve(world, "INV-1", [line(world)])
    with pytest.raises(ApplicationError):
        services.redemption_mark_paid(issuer=world.issuer, redemption=redemption, fiscal_reference=" ")
    paid = services.redemption_mark_paid(issuer=world.issuer, redemption=redemption, fiscal_reference="GK2026-0001")
    assert paid.settlement_status == SettlementStatus.PAID


def test_the_bid_form_shows_what_a_bid_costs_after_the_voucher(world, client_for):
    from tests.vouchers.factories import grant, program

    grant(program(world.issuer), world.buyer, amount_minor=1_000_000)
    client = client_for(world.buyer.owner)
    url = f"/vouchers/quote/?amount_minor=500000&provider={world.provider.public_id}&domestic=1"
    body = client.get(url).content.decode()
    assert 'data-testid="voucher-quote"' in body
    assert "¥3,500.00" in body  # ¥5,000 less 30% for domestic chips
    other = client_for(world.other_provider.owner)  # providers do not get quotes
    assert other.get(url).status_code == 403
    assert client.get("/vouchers/quote/?amount_minor=x").content == b""
