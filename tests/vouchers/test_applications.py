"""Programmes from templates, applications with every bad input refused clearly, review, and the portal pages."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from openpyxl import load_workbook

from core.errors import ApplicationError, Conflict, ValidationFailed
from tests.vouchers import factories
from vouchers import services
from vouchers.models import Application, ApplicationStatus, Attachment, Grant, Program
from vouchers.program_templates import PROGRAM_TEMPLATES
from vouchers.services import EligibleLine

NOW = factories.NOW
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n"


def pdf(name="合同.pdf", body=PDF):
    return SimpleUploadedFile(name, body, content_type="application/pdf")


def submit(world, program, **kw):
    values = {"requested_minor": 1_000_000, "purpose": "模型训练", "at": NOW}
    values.update(kw)
    return services.application_submit(buyer=world.buyer, program=program, **values)


def codes(exc):
    return {e.code for e in exc.value.errors}


@pytest.mark.django_db
@pytest.mark.parametrize("key", list(PROGRAM_TEMPLATES))
def test_every_template_makes_a_programme(world, key):
    program = services.program_create_from_template(
        issuer=world.issuer,
        template_key=key,
        fiscal_year=2026,
        budget_minor=10_000_000_000,
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        valid_until=datetime(2027, 1, 1, tzinfo=UTC),
    )
    template = PROGRAM_TEMPLATES[key]
    assert program.ratio_domestic == template.ratio_domestic
    assert program.source
    assert program.legal_basis.startswith("《")
    assert program.cap_per_firm_year_minor == template.cap_per_firm_year_minor


@pytest.mark.django_db
def test_beijing_template_needs_a_budget_and_shenzhen_startups_get_60(world):
    window = {"valid_from": datetime(2026, 1, 1, tzinfo=UTC), "valid_until": datetime(2027, 1, 1, tzinfo=UTC)}
    with pytest.raises(ApplicationError) as exc:
        services.program_create_from_template(
            issuer=world.issuer, template_key="beijing-compute", fiscal_year=2026, **window
        )
    assert exc.value.code == "budget_required"
    shenzhen = services.program_create_from_template(
        issuer=world.issuer, template_key="shenzhen-training", fiscal_year=2026, **window
    )
    from vouchers import rules, selectors

    young = rules.FirmFacts(uscc="x", legal_representative="y", founded_on=NOW.date() - timedelta(days=400))
    old = rules.FirmFacts(uscc="x", legal_representative="y", founded_on=NOW.date().replace(year=2010))
    terms = selectors.program_terms(shenzhen)
    assert rules.effective_ratios(terms, young, NOW) == (Decimal("0.60"), Decimal("0.60"))
    assert rules.effective_ratios(terms, old, NOW) == (Decimal("0.50"), Decimal("0.50"))


@pytest.mark.django_db
def test_programme_field_errors_all_at_once(world):
    with pytest.raises(ValidationFailed) as exc:
        factories.program(
            world.issuer, budget_minor=0, ratio_domestic=Decimal("1.5"), valid_until=NOW - timedelta(days=900)
        )
    assert {"budget_not_positive", "ratio_range", "window_inverted"} <= codes(exc)
    assert Program.objects.count() == 0


@pytest.mark.django_db
def test_apply_with_attachment(world):
    program = factories.program(world.issuer)
    application = submit(world, program, providers=[world.provider], files=[pdf()], contract_reference="C-1")
    assert application.status == ApplicationStatus.SUBMITTED
    attachment = application.attachments.get()
    assert attachment.content_type == "application/pdf"
    assert attachment.file.name.startswith("vouchers/applications/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "kw", "code"),
    [
        ({"valid_until": NOW - timedelta(days=1), "valid_from": NOW - timedelta(days=90)}, {}, "program_expired"),
        ({"eligible_provinces": ["31"]}, {}, "province_not_eligible"),
        ({"eligible_size_classes": ["micro"]}, {}, "size_class_not_eligible"),
        ({"eligible_cities": ["上海市"]}, {}, "city_not_eligible"),
        ({"eligible_industries": ["industry"]}, {}, "industry_not_eligible"),
        ({"cap_per_application_minor": 500_000}, {}, "above_cap_per_application"),
        ({"cap_per_firm_year_minor": 500_000}, {}, "above_annual_cap"),
        ({}, {"requested_minor": 0}, "amount_not_positive"),
        ({}, {"purpose": "  "}, "required"),
        ({"status": "closed"}, {}, "program_closed"),
    ],
)
def test_bad_applications_are_refused_with_a_reason(world, overrides, kw, code):
    program = factories.program(world.issuer, **overrides)
    with pytest.raises(ValidationFailed) as exc:
        submit(world, program, **kw)
    assert code in codes(exc)
    assert all(str(e.message) for e in exc.value.errors)
    assert Application.objects.count() == 0


@pytest.mark.django_db
def test_exhausted_programme(world, make_org):
    program = factories.program(world.issuer, budget_minor=1_000_000)
    other = make_org("buyer")
    factories.profile(other)
    factories.grant(program, other, amount_minor=1_000_000)
    with pytest.raises(ValidationFailed) as exc:
        submit(world, program)
    assert codes(exc) == {"program_exhausted"}


@pytest.mark.django_db
def test_related_party_and_unlisted_providers_are_refused(world):
    from accounts.models import CompanyProfile

    program = factories.program(world.issuer, restrict_providers=True, allowed_providers=[world.provider])
    profile = CompanyProfile.objects.get(organization=world.other_provider)
    profile.legal_representative = "赵北"  # the buyer's legal representative
    profile.save()
    with pytest.raises(ValidationFailed) as exc:
        submit(world, program, providers=[world.other_provider])
    assert {"related_party", "provider_not_listed"} <= codes(exc)
    assert all(e.field == "providers" for e in exc.value.errors)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("upload", "code"),
    [
        (SimpleUploadedFile("x.exe", b"MZ...", content_type="application/octet-stream"), "file_type"),
        (SimpleUploadedFile("fake.pdf", b"<html>not a pdf</html>"), "file_content"),
        (SimpleUploadedFile("big.pdf", b"%PDF-" + b"0" * (10 * 1024 * 1024)), "file_too_large"),
        (SimpleUploadedFile("empty.png", b""), "file_empty"),
    ],
)
def test_bad_attachments(world, upload, code):
    program = factories.program(world.issuer)
    with pytest.raises(ValidationFailed) as exc:
        submit(world, program, files=[upload])
    assert code in codes(exc)
    assert Application.objects.count() == 0
    assert Attachment.objects.count() == 0


@pytest.mark.django_db
def test_one_open_application_per_programme(world):
    program = factories.program(world.issuer)
    submit(world, program)
    with pytest.raises(Conflict):
        submit(world, program)


@pytest.mark.django_db
def test_review_flow_ask_respond_approve(world):
    program = factories.program(world.issuer, cap_per_firm_year_minor=2_000_000)
    application = submit(world, program)
    services.application_request_info(issuer=world.issuer, application=application, message="补充合同")
    with pytest.raises(ApplicationError):
        services.application_approve(
            issuer=world.issuer, application=application, amount_minor=3_000_000, expires_at=NOW, at=NOW
        )
    services.application_respond(buyer=world.buyer, application=application, response="已上传", files=[pdf()])
    with pytest.raises(ValidationFailed) as exc:
        services.application_approve(
            issuer=world.issuer, application=application, amount_minor=3_000_000, expires_at=NOW, at=NOW
        )
    assert {"above_annual_cap", "expiry_past"} <= codes(exc)
    grant = services.application_approve(
        issuer=world.issuer,
        application=application,
        amount_minor=800_000,
        expires_at=NOW + timedelta(days=90),
        at=NOW,
    )
    program.refresh_from_db()
    assert program.committed_minor == 800_000
    with pytest.raises(Conflict):
        services.application_reject(issuer=world.issuer, application=application, reason="x")
    assert grant.application.status == ApplicationStatus.APPROVED


@pytest.mark.django_db
def test_reject_needs_a_reason_and_foreign_issuer_cannot_decide(world, make_org):
    program = factories.program(world.issuer)
    application = submit(world, program)
    with pytest.raises(ApplicationError):
        services.application_reject(issuer=world.issuer, application=application, reason=" ")
    with pytest.raises(ApplicationError) as exc:
        services.application_reject(issuer=make_org("issuer"), application=application, reason="no")
    assert exc.value.status_code == 404


# --- Portal pages -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_buyer_sees_programmes_with_reasons_and_applies(world, client_for, make_org):
    open_program = factories.program(world.issuer, name="开放券")
    factories.program(world.issuer, name="上海券", eligible_provinces=["31"])
    client = client_for(world.buyer.owner)
    page = client.get("/vouchers/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "开放券" in html
    assert "上海券" in html
    assert 'data-eligible="no"' in html
    response = client.post(
        f"/vouchers/apply/?program={open_program.public_id}",
        {"requested_amount": "10000.00", "purpose": "训练", "providers": [world.provider.pk], "attachments": [pdf()]},
    )
    assert response.status_code == 302
    application = Application.objects.get()
    assert application.requested_minor == 1_000_000
    assert client.get(response["Location"]).status_code == 200
    # Bad input: field errors, nothing saved
    response = client.post(
        f"/vouchers/apply/?program={open_program.public_id}",
        {"requested_amount": "-1", "purpose": ""},
    )
    assert response.status_code == 200
    assert b"data-field-error" in response.content
    assert Application.objects.count() == 1


@pytest.mark.django_db
def test_issuer_console_review_approve_export_and_settle(world, client_for):
    program = factories.program(world.issuer)
    application = factories.application(program, world.buyer, requested_minor=500_000)
    client = client_for(world.issuer.owner)
    review = client.get(f"/issuer/applications/{application.public_id}/")
    assert review.status_code == 200
    assert b'data-check="related_parties"' in review.content
    response = client.post(
        f"/issuer/applications/{application.public_id}/",
        {"action": "approve", "approve-amount": "5000.00", "approve-expires_on": "2027-06-30"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = Grant.objects.get()
    assert grant.amount_minor == 500_000
    assert grant.expires_at == datetime(2027, 6, 30, 16, 0, tzinfo=UTC)  # end of 30 June in Asia/Shanghai
    [redemption] = services.voucher_subsidy_reserve(
        buyer=world.buyer,
        invoice_reference="INV-9",
        lines=[EligibleLine(1_000_000, "CNY", world.provider.pk, True, True, {"accelerator_seconds": 7200})],
        at=NOW,
    )
    detail = client.get(f"/issuer/programmes/{program.public_id}/")
    assert detail.status_code == 200
    assert b"burn-data" in detail.content
    assert b"INV-9" in detail.content
    csv_response = client.get(f"/issuer/programmes/{program.public_id}/redemptions.csv")
    text = csv_response.content.decode("utf-8-sig")
    assert "INV-9" in text
    assert "3000.00" in text
    xlsx = client.get(f"/issuer/programmes/{program.public_id}/redemptions.xlsx")
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet.cell(row=2, column=2).value == "INV-9"
    assert sheet.cell(row=2, column=11).value == 3000  # the subsidy, after line amount and ratio
    assert sheet.cell(row=2, column=8).value  # the product (compute capacity or model/API usage)
    assert client.get("/issuer/redemptions/").status_code == 200
    response = client.post(f"/issuer/redemptions/{redemption.public_id}/paid/", {"fiscal_reference": "GK-1"})
    assert response.status_code == 302
    redemption.refresh_from_db()
    assert redemption.fiscal_reference == "GK-1"
    for url in ("/issuer/programmes/", "/issuer/applications/?status=all", "/issuer/grants/"):
        assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_issuer_creates_programme_from_template_in_the_portal(world, client_for):
    client = client_for(world.issuer.owner)
    response = client.post(
        "/issuer/programmes/",
        {
            "template": "hangzhou-compute",
            "fiscal_year": "2026",
            "valid_from": "2026-01-01",
            "valid_until": "2026-12-31",
            "allowed_providers": [world.provider.pk],
        },
    )
    assert response.status_code == 302
    program = Program.objects.get()
    assert program.budget_minor == 25_000_000_000
    assert list(program.allowed_providers.all()) == [world.provider]


@pytest.mark.django_db
def test_api_programmes_apply_and_quote(world, api_client_for):
    program = factories.program(world.issuer)
    client = api_client_for(world.buyer)
    listed = client.get("/api/v1/vouchers/programs").json()
    assert listed[0]["eligible"] is True
    assert listed[0]["ratio_model"] is None  # model/API usage gets the chip-origin ratios
    bad = client.post(
        "/api/v1/vouchers/applications",
        {"program": str(program.public_id), "requested_minor": 10**15, "purpose": "x"},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "requested_amount"
    created = client.post(
        "/api/v1/vouchers/applications",
        {"program": str(program.public_id), "requested_minor": 100_000, "purpose": "x"},
        format="json",
    )
    assert created.status_code == 201
    factories.grant(factories.program(world.issuer), world.buyer, amount_minor=1_000_000)
    quote = client.post(
        "/api/v1/vouchers/quote",
        {"lines": [{"amount_minor": 1_000_000, "provider": str(world.provider.public_id), "chip_domestic": True}]},
        format="json",
    ).json()
    assert quote["subsidy_minor"] == 300_000
    assert quote["after_subsidy_minor"] == 700_000
