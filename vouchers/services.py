"""Writes of the vouchers app: programmes, applications and review, grants, the subsidy reservation.

Billing calls exactly two functions: ``voucher_subsidy_reserve`` when it finalizes an invoice and
``voucher_subsidy_release`` when it voids one or issues a credit note.

Lock order, the same in every service so that they cannot deadlock: application, grants (by id), programmes
(by id), firm-year usage rows, redemptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from accounts.models import Organization, OrganizationKind
from core.audit import audit_record
from core.errors import ApplicationError, Conflict, FieldError, ValidationFailed
from core.money import CURRENCY_EXPONENTS
from core.timeutils import ensure_utc, utcnow
from vouchers import rules, selectors
from vouchers.models import (
    OPEN_APPLICATION_STATUSES,
    Application,
    ApplicationStatus,
    Attachment,
    FirmYearUsage,
    Grant,
    GrantStatus,
    LineRefusal,
    Program,
    ProgramStatus,
    Redemption,
    RedemptionLine,
    RedemptionRelease,
    SettlementStatus,
)
from vouchers.program_templates import PROGRAM_TEMPLATES
from vouchers.rules import EligibleLine

__all__ = [
    "EligibleLine",
    "application_approve",
    "application_reject",
    "application_request_info",
    "application_respond",
    "application_submit",
    "application_withdraw",
    "grant_expire_due",
    "grant_revoke",
    "program_create",
    "program_create_from_template",
    "program_set_status",
    "redemption_mark_paid",
    "voucher_subsidy_release",
    "voucher_subsidy_reserve",
]

MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# Extension -> accepted leading bytes (the content must match the name).
ATTACHMENT_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    "pdf": ("application/pdf", (b"%PDF-",)),
    "png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    "jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", (b"PK\x03\x04",)),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (b"PK\x03\x04",)),
}


def _require_kind(organization: Organization, kind: str) -> None:
    if organization.kind != kind:
        raise ApplicationError(
            "wrong_organization_kind", _("Not available to your kind of organisation."), status_code=403
        )


# --- Programmes -------------------------------------------------------------------------------------------


PROGRAM_FIELDS = {
    "name",
    "legal_basis",
    "document_number",
    "source",
    "template_key",
    "voucher_type",
    "status",
    "currency",
    "fiscal_year",
    "budget_minor",
    "valid_from",
    "valid_until",
    "ratio_domestic",
    "ratio_other",
    "ratio_startup",
    "ratio_sme",
    "ratio_model",
    "startup_max_age_years",
    "cap_per_application_minor",
    "cap_per_firm_year_minor",
    "eligible_provinces",
    "eligible_cities",
    "eligible_size_classes",
    "eligible_industries",
    "restrict_providers",
    "compute_only",
    "stacking_allowed",
    "settlement_mode",
    "contact_name",
    "contact_phone",
    "contact_email",
}


def program_create(
    *,
    issuer: Organization,
    actor: Any = None,
    allowed_providers: Sequence[Organization] = (),
    **fields: Any,
) -> Program:
    """Create a programme. Every field error is reported at once; nothing is saved unless all are valid."""
    _require_kind(issuer, OrganizationKind.ISSUER)
    unknown = set(fields) - PROGRAM_FIELDS
    if unknown:
        raise TypeError(f"unknown programme fields: {sorted(unknown)}")
    errors: list[FieldError] = []
    for name in ("ratio_domestic", "ratio_other", "ratio_startup", "ratio_sme", "ratio_model"):
        value = fields.get(name)
        if value is None:
            continue
        if isinstance(value, float):
            raise TypeError("ratios are Decimal, never float")
        if not (Decimal(0) <= Decimal(value) <= Decimal(1)):
            errors.append(FieldError("ratio_range", _("A ratio is between 0 and 1 (0.3 = 30%)."), name))
    if (fields.get("budget_minor") or 0) <= 0:
        errors.append(FieldError("budget_not_positive", _("Enter a budget greater than zero."), "budget_minor"))
    for name in ("cap_per_application_minor", "cap_per_firm_year_minor"):
        if fields.get(name) is not None and fields[name] <= 0:
            errors.append(FieldError("cap_not_positive", _("A cap is greater than zero, or empty for none."), name))
    valid_from, valid_until = fields.get("valid_from"), fields.get("valid_until")
    if valid_from is None or valid_until is None:
        errors.append(FieldError("required", _("Give the validity window."), "valid_until"))
    elif ensure_utc(valid_until) <= ensure_utc(valid_from):
        errors.append(FieldError("window_inverted", _("The end must be after the start."), "valid_until"))
    if fields.get("currency", "CNY") not in CURRENCY_EXPONENTS:
        errors.append(FieldError("invalid_currency", _("Unsupported currency."), "currency"))
    for provider in allowed_providers:
        if provider.kind != OrganizationKind.PROVIDER:
            errors.append(
                FieldError("not_a_provider", _("Only providers can be on the allow-list."), "allowed_providers")
            )
    program = Program(issuer=issuer, **fields)
    if not errors:
        from django.core.exceptions import ValidationError as DjangoValidationError

        from core.errors import field_errors_from_django

        try:
            program.full_clean(exclude=["issuer", "allowed_providers"], validate_constraints=False)
        except DjangoValidationError as exc:
            errors.extend(field_errors_from_django(exc))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        program.save()
        if allowed_providers:
            program.allowed_providers.set(allowed_providers)
        audit_record(
            action="voucher.program.created",
            target=program,
            actor=actor,
            organization=issuer,
            after={
                "name": program.name,
                "budget_minor": program.budget_minor,
                "currency": program.currency,
                "template": program.template_key,
            },
        )
    return program


def program_create_from_template(
    *,
    issuer: Organization,
    template_key: str,
    fiscal_year: int,
    valid_from: datetime,
    valid_until: datetime,
    budget_minor: int | None = None,
    document_number: str = "",
    name: str | None = None,
    allowed_providers: Sequence[Organization] = (),
    actor: Any = None,
    **overrides: Any,
) -> Program:
    """A programme with a real city's rules (vouchers/program_templates.py); the issuer gives its own round's
    budget (the template's published figure by default), window and document number."""
    template = PROGRAM_TEMPLATES.get(template_key)
    if template is None:
        raise ApplicationError("unknown_template", _("Choose a template from the list."), field="template")
    budget = budget_minor if budget_minor is not None else template.default_budget_minor
    if budget is None:
        raise ApplicationError(
            "budget_required", _("This programme's budget is not published: enter yours."), field="budget_minor"
        )
    fields: dict[str, Any] = {
        "name": name or template.name,
        "legal_basis": template.legal_basis,
        "document_number": document_number,
        "source": template.source,
        "template_key": template.key,
        "voucher_type": template.voucher_type,
        "fiscal_year": fiscal_year,
        "budget_minor": budget,
        "valid_from": valid_from,
        "valid_until": valid_until,
        "ratio_domestic": template.ratio_domestic,
        "ratio_other": template.ratio_other,
        "ratio_startup": template.ratio_startup,
        "ratio_sme": template.ratio_sme,
        "ratio_model": template.ratio_model,
        "cap_per_application_minor": template.cap_per_application_minor,
        "cap_per_firm_year_minor": template.cap_per_firm_year_minor,
        "eligible_provinces": list(template.eligible_provinces),
        "eligible_cities": list(template.eligible_cities),
        "eligible_size_classes": list(template.eligible_size_classes),
        "eligible_industries": list(template.eligible_industries),
        "restrict_providers": template.restrict_providers,
        "compute_only": template.compute_only,
        "stacking_allowed": template.stacking_allowed,
        "settlement_mode": template.settlement_mode,
    }
    fields.update(overrides)
    return program_create(issuer=issuer, actor=actor, allowed_providers=allowed_providers, **fields)


def program_set_status(*, issuer: Organization, program: Program, status: str, actor: Any = None) -> Program:
    if status not in ProgramStatus.values:
        raise ApplicationError("invalid_status", _("Unknown status."), field="status")
    with transaction.atomic():
        locked = Program.objects.select_for_update().get(pk=program.pk, issuer=issuer)
        before = locked.status
        locked.status = status
        locked.save(update_fields=["status"])
        audit_record(
            action="voucher.program.status",
            target=locked,
            actor=actor,
            organization=issuer,
            before={"status": before},
            after={"status": status},
        )
    return locked


# --- Applications -----------------------------------------------------------------------------------------


def attachment_problems(files: Sequence[UploadedFile], *, already: int = 0) -> list[FieldError]:
    """Size, number and type of uploaded files; the content must match the extension."""
    errors: list[FieldError] = []
    if already + len(files) > MAX_ATTACHMENTS:
        errors.append(
            FieldError("too_many_files", _("At most %(n)d attachments.") % {"n": MAX_ATTACHMENTS}, "attachments")
        )
    for upload in files:
        name = upload.name or ""
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if extension not in ATTACHMENT_TYPES:
            errors.append(
                FieldError(
                    "file_type",
                    _("%(name)s: upload PDF, PNG, JPEG, DOCX or XLSX.") % {"name": name},
                    "attachments",
                )
            )
            continue
        if (upload.size or 0) > MAX_ATTACHMENT_BYTES:
            errors.append(
                FieldError("file_too_large", _("%(name)s: at most 10 MB per file.") % {"name": name}, "attachments")
            )
            continue
        if not upload.size:
            errors.append(FieldError("file_empty", _("%(name)s is empty.") % {"name": name}, "attachments"))
            continue
        upload.seek(0)
        head = upload.read(16)
        upload.seek(0)
        if not any(head.startswith(magic) for magic in ATTACHMENT_TYPES[extension][1]):
            errors.append(
                FieldError(
                    "file_content",
                    _("%(name)s is not a real %(type)s file.") % {"name": name, "type": extension.upper()},
                    "attachments",
                )
            )
    return errors


def _save_attachments(application: Application, files: Sequence[UploadedFile]) -> None:
    for upload in files:
        name = upload.name or "file"
        extension = name.rsplit(".", 1)[-1].lower()
        Attachment.objects.create(
            application=application,
            file=upload,
            original_name=name[-200:],
            content_type=ATTACHMENT_TYPES[extension][0],
            size_bytes=upload.size or 0,
        )


def _provider_problems(
    program: Program, buyer_facts: rules.FirmFacts | None, providers: Sequence[Organization]
) -> list[FieldError]:
    errors: list[FieldError] = []
    allowed = set(program.allowed_providers.values_list("pk", flat=True)) if program.restrict_providers else set()
    facts = selectors.firm_facts_map([p.pk for p in providers])
    for provider in providers:
        if provider.kind != OrganizationKind.PROVIDER:
            errors.append(
                FieldError("not_a_provider", _("%(name)s is not a provider.") % {"name": provider.name}, "providers")
            )
            continue
        if program.restrict_providers and provider.pk not in allowed:
            errors.append(
                FieldError(
                    "provider_not_listed",
                    _("%(name)s is not on this programme's provider list.") % {"name": provider.name},
                    "providers",
                )
            )
        provider_facts = facts.get(provider.pk)
        if buyer_facts is not None and provider_facts is not None:
            links = rules.related_party_links(buyer_facts, provider_facts)
            if links:
                errors.append(
                    FieldError(
                        "related_party",
                        _("%(name)s is a related party (%(how)s): its services cannot be subsidised.")
                        % {"name": provider.name, "how": rules.related_party_message(links)},
                        "providers",
                    )
                )
    return errors


def application_submit(
    *,
    buyer: Organization,
    program: Program,
    requested_minor: int,
    purpose: str,
    contract_reference: str = "",
    planned_usage: str = "",
    providers: Sequence[Organization] = (),
    files: Sequence[UploadedFile] = (),
    actor: Any = None,
    at: datetime | None = None,
) -> Application:
    """A buyer applies. Every reason to refuse is reported at once, per field; nothing is saved on refusal."""
    _require_kind(buyer, OrganizationKind.BUYER)
    at = ensure_utc(at or utcnow())
    program = Program.objects.get(pk=program.pk)  # the budget as it is now, not as the caller loaded it
    terms = selectors.program_terms(program)
    buyer_facts = selectors.firm_facts(buyer)
    errors: list[FieldError] = []
    for problem in rules.program_problems(terms, at) + rules.firm_problems(terms, buyer_facts):
        errors.append(FieldError(problem.code, problem.message, problem.field))
    if not errors:
        used = selectors.annual_used_or_committed_minor(program=program, buyer=buyer, at=at)
        errors.extend(
            FieldError(p.code, p.message, p.field)
            for p in rules.amount_problems(terms, requested_minor=requested_minor, annual_used_minor=used)
        )
    if not purpose.strip():
        errors.append(FieldError("required", _("Say what the compute is for."), "purpose"))
    errors.extend(_provider_problems(program, buyer_facts, providers))
    errors.extend(attachment_problems(files))
    if errors:
        raise ValidationFailed(errors)
    try:
        with transaction.atomic():
            application = Application.objects.create(
                program=program,
                buyer=buyer,
                requested_minor=requested_minor,
                purpose=purpose.strip(),
                contract_reference=contract_reference.strip(),
                planned_usage=planned_usage.strip(),
                submitted_by=actor if getattr(actor, "is_authenticated", False) else None,
                submitted_at=at,
            )
            application.planned_providers.set(providers)
            _save_attachments(application, files)
            audit_record(
                action="voucher.application.submitted",
                target=application,
                actor=actor,
                organization=buyer,
                after={"program": str(program.public_id), "requested_minor": requested_minor},
            )
    except IntegrityError:
        raise Conflict(
            "application_open",
            _("You already have an open application to this programme: answer or withdraw it first."),
        ) from None
    return application


def _lock_open_application(application: Application, **scope: Any) -> Application:
    locked = (
        Application.objects.select_for_update(of=("self",))
        .select_related("program")
        .filter(pk=application.pk, **scope)
        .first()
    )
    if locked is None:
        raise ApplicationError("not_found", _("Not found."), status_code=404)
    if locked.status not in OPEN_APPLICATION_STATUSES:
        raise Conflict("application_closed", _("This application has already been decided."))
    return locked


def application_request_info(
    *, issuer: Organization, application: Application, message: str, actor: Any = None
) -> Application:
    if not message.strip():
        raise ApplicationError("required", _("Say what information you need."), field="message")
    with transaction.atomic():
        locked = _lock_open_application(application, program__issuer=issuer)
        locked.status = ApplicationStatus.INFO_REQUESTED
        locked.info_request = message.strip()
        locked.save(update_fields=["status", "info_request"])
        audit_record(
            action="voucher.application.info_requested",
            target=locked,
            actor=actor,
            organization=issuer,
            after={"message": locked.info_request},
        )
    return locked


def application_respond(
    *,
    buyer: Organization,
    application: Application,
    response: str,
    files: Sequence[UploadedFile] = (),
    actor: Any = None,
) -> Application:
    """The buyer answers a request for information; the application goes back to the reviewer."""
    errors: list[FieldError] = []
    if not response.strip():
        errors.append(FieldError("required", _("Write your answer."), "response"))
    errors.extend(attachment_problems(files, already=application.attachments.count()))
    if errors:
        raise ValidationFailed(errors)
    with transaction.atomic():
        locked = _lock_open_application(application, buyer=buyer)
        if locked.status != ApplicationStatus.INFO_REQUESTED:
            raise Conflict("no_info_requested", _("The reviewer has not asked for anything."))
        locked.status = ApplicationStatus.SUBMITTED
        locked.buyer_response = response.strip()
        locked.save(update_fields=["status", "buyer_response"])
        _save_attachments(locked, files)
        audit_record(
            action="voucher.application.answered",
            target=locked,
            actor=actor,
            organization=buyer,
            after={"files": len(files)},
        )
    return locked


def application_withdraw(*, buyer: Organization, application: Application, actor: Any = None) -> Application:
    with transaction.atomic():
        locked = _lock_open_application(application, buyer=buyer)
        locked.status = ApplicationStatus.WITHDRAWN
        locked.decided_at = utcnow()
        locked.save(update_fields=["status", "decided_at"])
        audit_record(action="voucher.application.withdrawn", target=locked, actor=actor, organization=buyer)
    return locked


def application_reject(
    *, issuer: Organization, application: Application, reason: str, actor: Any = None
) -> Application:
    if not reason.strip():
        raise ApplicationError("reason_required", _("Give the reason: the applicant will see it."), field="reason")
    with transaction.atomic():
        locked = _lock_open_application(application, program__issuer=issuer)
        locked.status = ApplicationStatus.REJECTED
        locked.decision_reason = reason.strip()
        locked.decided_at = utcnow()
        locked.decided_by = actor if getattr(actor, "is_authenticated", False) else None
        locked.save(update_fields=["status", "decision_reason", "decided_at", "decided_by"])
        audit_record(
            action="voucher.application.rejected",
            target=locked,
            actor=actor,
            organization=issuer,
            after={"reason": locked.decision_reason},
        )
    return locked


def application_approve(
    *,
    issuer: Organization,
    application: Application,
    amount_minor: int,
    expires_at: datetime,
    actor: Any = None,
    at: datetime | None = None,
) -> Grant:
    """Approve with an amount and an expiry: the amount is committed from the programme's budget at once."""
    at = ensure_utc(at or utcnow())
    expires_at = ensure_utc(expires_at)
    with transaction.atomic():
        locked = _lock_open_application(application, program__issuer=issuer)
        program = Program.objects.select_for_update().get(pk=locked.program_id)
        terms = selectors.program_terms(program)
        errors: list[FieldError] = []
        used = selectors.annual_used_or_committed_minor(program=program, buyer=locked.buyer, at=at)
        for problem in rules.amount_problems(terms, requested_minor=amount_minor, annual_used_minor=used):
            errors.append(FieldError(problem.code, problem.message, "amount"))
        if expires_at <= at:
            errors.append(FieldError("expiry_past", _("The expiry must be in the future."), "expires_at"))
        elif expires_at > program.valid_until:
            errors.append(
                FieldError("expiry_after_program", _("The expiry cannot be after the programme ends."), "expires_at")
            )
        if errors:
            raise ValidationFailed(errors)
        updated = Program.objects.filter(pk=program.pk, committed_minor__lte=F("budget_minor") - amount_minor).update(
            committed_minor=F("committed_minor") + amount_minor
        )
        if not updated:
            raise ApplicationError("above_budget_left", _("Not enough budget left."), field="amount")
        grant = Grant.objects.create(
            application=locked,
            program=program,
            buyer=locked.buyer,
            amount_minor=amount_minor,
            currency=program.currency,
            expires_at=expires_at,
        )
        locked.status = ApplicationStatus.APPROVED
        locked.decided_at = at
        locked.decided_by = actor if getattr(actor, "is_authenticated", False) else None
        locked.save(update_fields=["status", "decided_at", "decided_by"])
        audit_record(
            action="voucher.grant.created",
            target=grant,
            actor=actor,
            organization=issuer,
            after={"amount_minor": amount_minor, "currency": grant.currency, "expires_at": expires_at.isoformat()},
        )
    return grant


# --- Grants: revoke and expire ----------------------------------------------------------------------------


def _close_grant(grant: Grant, *, status: str, at: datetime, reason: str) -> int:
    """Close a locked, active grant; return to the programme what it did not redeem. Returns that amount."""
    unused = grant.amount_minor - grant.redeemed_minor
    Program.objects.select_for_update().filter(pk=grant.program_id).get()
    if unused:
        Program.objects.filter(pk=grant.program_id).update(committed_minor=F("committed_minor") - unused)
    grant.status = status
    grant.closed_at = at
    grant.close_reason = reason
    grant.returned_minor = unused
    grant.save(update_fields=["status", "closed_at", "close_reason", "returned_minor"])
    return unused


def grant_revoke(
    *, issuer: Organization, grant: Grant, reason: str, actor: Any = None, at: datetime | None = None
) -> Grant:
    """Revoke a grant: once this commits, no invoice gets a subsidy from it (reservations lock the grant)."""
    if not reason.strip():
        raise ApplicationError("reason_required", _("Give the reason: the grantee will see it."), field="reason")
    at = ensure_utc(at or utcnow())
    with transaction.atomic():
        locked = Grant.objects.select_for_update().filter(pk=grant.pk, program__issuer=issuer).first()
        if locked is None:
            raise ApplicationError("not_found", _("Not found."), status_code=404)
        if locked.status != GrantStatus.ACTIVE:
            raise Conflict("grant_closed", _("This grant is no longer active."))
        returned = _close_grant(locked, status=GrantStatus.REVOKED, at=at, reason=reason.strip())
        audit_record(
            action="voucher.grant.revoked",
            target=locked,
            actor=actor,
            organization=issuer,
            before={"status": GrantStatus.ACTIVE},
            after={"status": GrantStatus.REVOKED, "returned_minor": returned, "reason": reason.strip()},
        )
    return locked


def grant_expire_due(*, at: datetime | None = None) -> int:
    """Expire every active grant whose expiry has come (half-open: at >= expires_at). Safe to run twice."""
    at = ensure_utc(at or utcnow())
    expired = 0
    due = list(
        Grant.objects.filter(status=GrantStatus.ACTIVE, expires_at__lte=at).order_by("id").values_list("pk", flat=True)
    )
    for pk in due:
        with transaction.atomic():
            locked = (
                Grant.objects.select_for_update().filter(pk=pk, status=GrantStatus.ACTIVE, expires_at__lte=at).first()
            )
            if locked is None:
                continue
            returned = _close_grant(locked, status=GrantStatus.EXPIRED, at=at, reason="expired")
            audit_record(
                action="voucher.grant.expired",
                target=locked,
                actor_label="system",
                organization=locked.program.issuer,
                after={"returned_minor": returned},
            )
            expired += 1
    return expired


# --- The subsidy: reserve and release ---------------------------------------------------------------------


def _check_reference(invoice_reference: str) -> str:
    reference = (invoice_reference or "").strip()
    if not reference or len(reference) > 100:
        raise ApplicationError(
            "invoice_reference_invalid", _("An invoice reference of 1 to 100 characters."), field="invoice_reference"
        )
    return reference


def _usage_rows(
    program_ids: Sequence[int], buyer: Organization, year: int, programs: dict[int, Program]
) -> dict[int, FirmYearUsage]:
    FirmYearUsage.objects.bulk_create(
        [
            FirmYearUsage(program_id=pk, buyer=buyer, year=year, cap_minor=programs[pk].cap_per_firm_year_minor)
            for pk in program_ids
        ],
        ignore_conflicts=True,
    )
    rows = (
        FirmYearUsage.objects.select_for_update()
        .filter(program_id__in=program_ids, buyer=buyer, year=year)
        .order_by("id")
    )
    return {row.program_id: row for row in rows}


def _line_refusals_store(
    refusals: Sequence[rules.Refusal],
    *,
    grants: list[Grant],
    buyer: Organization,
    reference: str,
    lines: Sequence[EligibleLine],
    at: datetime,
) -> None:
    """Keep the refusals a reviewer should see, one row per grant concerned (a refusal before any grant was
    considered, such as a related party, concerns every usable grant of the buyer)."""
    rows = [
        LineRefusal(
            grant=grant,
            program_id=grant.program_id,
            buyer=buyer,
            invoice_reference=reference,
            line_index=refusal.line_index,
            code=refusal.code,
            provider_id=lines[refusal.line_index].provider_id,
            amount_minor=lines[refusal.line_index].amount_minor,
            refused_at=at,
        )
        for refusal in refusals
        if refusal.code in selectors.FLAGGED_REFUSAL_CODES
        for grant in grants
        if refusal.grant_id in (None, grant.pk)
    ]
    LineRefusal.objects.bulk_create(rows, ignore_conflicts=True)


def voucher_subsidy_reserve(
    *, buyer: Organization, invoice_reference: str, lines: Sequence[EligibleLine], at: datetime
) -> list[Redemption]:
    """The subsidy the buyer's grants give an invoice being finalized, reserved atomically.

    Per grant: ``min(ratio x eligible amount, cap per application left, annual cap left, grant left, programme
    budget left)``. Idempotent per (grant, invoice): calling again for an invoice returns what was reserved
    the first time. Grants expired at ``at`` (half-open: ``at >= expires_at``) or revoked give nothing; lines of
    related-party providers are refused. Returns the redemptions (empty: no subsidy).
    """
    reference = _check_reference(invoice_reference)
    at = ensure_utc(at)
    for line in lines:
        if isinstance(line.amount_minor, bool) or not isinstance(line.amount_minor, int):
            raise TypeError("EligibleLine.amount_minor must be an int (minor units)")
    with transaction.atomic():
        # 1. Lock the buyer's usable grants: every reservation of one firm queues here, and a revoke that
        # commits first removes its grant from this set (PostgreSQL re-checks the WHERE after the wait).
        grants = list(
            Grant.objects.select_for_update()
            .filter(buyer=buyer, status=GrantStatus.ACTIVE, expires_at__gt=at)
            .order_by("id")
        )
        existing = list(Redemption.objects.filter(buyer=buyer, invoice_reference=reference).order_by("id"))
        if existing:
            return existing
        if not grants or not lines:
            return []
        # 2. Lock their programmes (every firm of a programme queues here for the budget).
        program_ids = sorted({g.program_id for g in grants})
        programs = {p.pk: p for p in Program.objects.select_for_update().filter(pk__in=program_ids).order_by("id")}
        year = rules.fiscal_year(at)
        usage = _usage_rows(program_ids, buyer, year, programs)
        buyer_facts = selectors.firm_facts(buyer)
        provider_ids = sorted({line.provider_id for line in lines})
        provider_facts = selectors.firm_facts_map(provider_ids)
        related = frozenset(
            pk
            for pk, facts in provider_facts.items()
            if buyer_facts is not None and rules.related_party_links(buyer_facts, facts)
        )
        allowed = selectors.allowed_provider_ids(program_ids)
        grants.sort(key=lambda g: (g.expires_at, g.pk))  # the soonest-expiring grant is spent first
        states = selectors.grant_states(
            grants=grants,
            programs=programs,
            usage={pk: (row.used_minor, row.cap_minor) for pk, row in usage.items()},
            buyer_facts=buyer_facts,
            allowed=allowed,
            at=at,
        )
        plan = rules.plan_subsidy(lines, states, related_provider_ids=related)
        by_id = {g.pk: g for g in grants}
        refusals = [{"line": r.line_index, "grant": r.grant_id, "code": r.code} for r in plan.refusals]
        _line_refusals_store(plan.refusals, grants=grants, buyer=buyer, reference=reference, lines=lines, at=at)
        created: list[Redemption] = []
        for grant_plan in plan.grants:
            grant = by_id[grant_plan.grant_id]
            program = programs[grant_plan.program_id]
            amount = grant_plan.amount_minor
            # 3. Conditional updates: each refuses to pass its cap even if the locks above were wrong; the CHECK
            # constraints refuse it once more.
            if not Grant.objects.filter(pk=grant.pk, redeemed_minor__lte=F("amount_minor") - amount).update(
                redeemed_minor=F("redeemed_minor") + amount
            ):
                raise Conflict("grant_exhausted", _("The grant has changed: try again."))
            if not Program.objects.filter(pk=program.pk, redeemed_minor__lte=F("budget_minor") - amount).update(
                redeemed_minor=F("redeemed_minor") + amount
            ):
                raise Conflict("budget_exhausted", _("The programme's budget has changed: try again."))
            row = usage[program.pk]
            if not FirmYearUsage.objects.filter(pk=row.pk).update(used_minor=F("used_minor") + amount):
                raise Conflict("annual_cap", _("The annual cap has changed: try again."))
            redemption = Redemption.objects.create(
                grant=grant,
                program=program,
                buyer=buyer,
                invoice_reference=reference,
                currency=program.currency,
                eligible_minor=grant_plan.eligible_minor,
                amount_minor=amount,
                year=year,
                reserved_at=at,
                settlement_mode=program.settlement_mode,
                evidence={"lines_offered": len(lines), "refusals": refusals},
            )
            RedemptionLine.objects.bulk_create(
                [
                    RedemptionLine(
                        redemption=redemption,
                        line_index=lp.line_index,
                        provider_id=lines[lp.line_index].provider_id,
                        amount_minor=lines[lp.line_index].amount_minor,
                        ratio=lp.ratio,
                        subsidy_minor=lp.subsidy_minor,
                        chip_domestic=lines[lp.line_index].chip_domestic,
                        product=lines[lp.line_index].product,
                        evidence=dict(lines[lp.line_index].evidence),
                    )
                    for lp in grant_plan.lines
                ]
            )
            audit_record(
                action="voucher.redemption.reserved",
                target=redemption,
                actor_label="billing",
                organization=program.issuer,
                after={
                    "invoice": reference,
                    "buyer": str(buyer.public_id),
                    "amount_minor": amount,
                    "eligible_minor": grant_plan.eligible_minor,
                },
            )
            created.append(redemption)
        return created


def voucher_subsidy_release(
    *,
    buyer: Organization,
    invoice_reference: str,
    at: datetime,
    reference: str = "void",
    amount_minor: int | None = None,
    reason: str = "",
) -> list[Redemption]:
    """Give back an invoice's subsidy: all of it (a void, ``amount_minor=None``) or part of it (a credit note of
    that subsidy amount). ``reference`` (the credit note's number) makes a retry harmless. What is released returns
    to the grant, the firm's annual cap and the programme; for a grant already closed, to the programme's budget."""
    invoice = _check_reference(invoice_reference)
    release_ref = _check_reference(reference)
    at = ensure_utc(at)
    if amount_minor is not None and (
        isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0
    ):
        raise ApplicationError("amount_not_positive", _("Enter an amount greater than zero."), field="amount_minor")
    with transaction.atomic():
        grant_ids = sorted(
            set(Redemption.objects.filter(buyer=buyer, invoice_reference=invoice).values_list("grant_id", flat=True))
        )
        if not grant_ids:
            return []
        grants = {g.pk: g for g in Grant.objects.select_for_update().filter(pk__in=grant_ids).order_by("id")}
        program_ids = sorted({g.program_id for g in grants.values()})
        list(Program.objects.select_for_update().filter(pk__in=program_ids).order_by("id"))
        redemptions = list(
            Redemption.objects.select_for_update().filter(buyer=buyer, invoice_reference=invoice).order_by("-id")
        )
        done = set(
            RedemptionRelease.objects.filter(redemption__in=redemptions, reference=release_ref).values_list(
                "redemption_id", flat=True
            )
        )
        if done:
            return redemptions
        remaining = amount_minor
        for redemption in redemptions:
            net = redemption.amount_minor - redemption.released_minor
            give = net if remaining is None else min(net, remaining)
            if give <= 0:
                continue
            grant = grants[redemption.grant_id]
            Grant.objects.filter(pk=grant.pk).update(redeemed_minor=F("redeemed_minor") - give)
            program_update: dict[str, Any] = {"redeemed_minor": F("redeemed_minor") - give}
            if grant.status != GrantStatus.ACTIVE:
                # A closed grant's commitment is what it redeemed: what comes back goes to the budget.
                program_update["committed_minor"] = F("committed_minor") - give
                Grant.objects.filter(pk=grant.pk).update(returned_minor=F("returned_minor") + give)
            Program.objects.filter(pk=redemption.program_id).update(**program_update)
            FirmYearUsage.objects.filter(program_id=redemption.program_id, buyer=buyer, year=redemption.year).update(
                used_minor=F("used_minor") - give
            )
            redemption.released_minor += give
            redemption.released_at = at
            redemption.release_reason = reason
            if (
                redemption.released_minor == redemption.amount_minor
                and redemption.settlement_status == SettlementStatus.PENDING
            ):
                redemption.settlement_status = SettlementStatus.NOT_DUE
            redemption.save(update_fields=["released_minor", "released_at", "release_reason", "settlement_status"])
            RedemptionRelease.objects.create(
                redemption=redemption, reference=release_ref, amount_minor=give, reason=reason, released_at=at
            )
            audit_record(
                action="voucher.redemption.released",
                target=redemption,
                actor_label="billing",
                organization=redemption.program.issuer,
                after={"released_minor": give, "reference": release_ref, "reason": reason},
            )
            if remaining is not None:
                remaining -= give
                if remaining == 0:
                    break
        return redemptions


# --- Settlement -------------------------------------------------------------------------------------------


def redemption_mark_paid(
    *,
    issuer: Organization,
    redemption: Redemption,
    fiscal_reference: str,
    actor: Any = None,
    at: datetime | None = None,
) -> Redemption:
    """The bureau paid the reimbursement (to the buyer or the provider, per the programme), under a fiscal
    reference (国库集中支付 voucher number or similar)."""
    reference = fiscal_reference.strip()
    if not reference:
        raise ApplicationError("required", _("Enter the fiscal payment reference."), field="fiscal_reference")
    if len(reference) > 100:
        raise ApplicationError("too_long", _("At most 100 characters."), field="fiscal_reference")
    at = ensure_utc(at or utcnow())
    with transaction.atomic():
        locked = Redemption.objects.select_for_update().filter(pk=redemption.pk, program__issuer=issuer).first()
        if locked is None:
            raise ApplicationError("not_found", _("Not found."), status_code=404)
        if locked.settlement_status != SettlementStatus.PENDING:
            raise Conflict("not_pending", _("This redemption is not awaiting payment."))
        locked.settlement_status = SettlementStatus.PAID
        locked.settled_at = at
        locked.fiscal_reference = reference
        locked.save(update_fields=["settlement_status", "settled_at", "fiscal_reference"])
        audit_record(
            action="voucher.redemption.paid",
            target=locked,
            actor=actor,
            organization=issuer,
            after={"fiscal_reference": reference, "amount_minor": locked.net_minor},
        )
    return locked
