"""Reads of the vouchers app. Every read that returns tenant data takes the organisation it is for."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _

from accounts.models import CompanyProfile, Organization, OrganizationKind
from core.timeutils import Window, ensure_utc, parse_rfc3339, utcnow
from vouchers import rules
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
    SettlementStatus,
)

# --- Facts for the rules ----------------------------------------------------------------------------------


def program_terms(program: Program) -> rules.ProgramTerms:
    allowed: frozenset[int] = frozenset()
    if program.restrict_providers and program.pk:
        allowed = frozenset(program.allowed_providers.values_list("pk", flat=True))
    return rules.ProgramTerms(
        currency=program.currency,
        status=program.status,
        valid_from=program.valid_from,
        valid_until=program.valid_until,
        budget_minor=program.budget_minor,
        committed_minor=program.committed_minor,
        ratio_domestic=program.ratio_domestic,
        ratio_other=program.ratio_other,
        ratio_startup=program.ratio_startup,
        ratio_sme=program.ratio_sme,
        ratio_model=program.ratio_model,
        startup_max_age_years=program.startup_max_age_years,
        cap_per_application_minor=program.cap_per_application_minor,
        cap_per_firm_year_minor=program.cap_per_firm_year_minor,
        eligible_provinces=tuple(program.eligible_provinces),
        eligible_cities=tuple(program.eligible_cities),
        eligible_size_classes=tuple(program.eligible_size_classes),
        eligible_industries=tuple(program.eligible_industries),
        restrict_providers=program.restrict_providers,
        allowed_provider_ids=allowed,
        compute_only=program.compute_only,
        stacking_allowed=program.stacking_allowed,
    )


def _facts(profile: CompanyProfile) -> rules.FirmFacts:
    return rules.FirmFacts(
        uscc=profile.uscc,
        legal_representative=profile.legal_representative,
        province=profile.registered_province,
        city=profile.registered_city,
        size_class=profile.size_class,
        industry=profile.industry,
        founded_on=profile.founded_on,
        shareholders=tuple(rules.Holder(h.name, h.uscc) for h in profile.shareholders.all()),
    )


def firm_facts(organization: Organization) -> rules.FirmFacts | None:
    profile = CompanyProfile.objects.filter(organization=organization).prefetch_related("shareholders").first()
    return _facts(profile) if profile else None


def firm_facts_map(organization_ids: Iterable[int]) -> dict[int, rules.FirmFacts]:
    profiles = CompanyProfile.objects.filter(organization_id__in=list(organization_ids)).prefetch_related(
        "shareholders"
    )
    return {p.organization_id: _facts(p) for p in profiles}


def allowed_provider_ids(program_ids: Iterable[int]) -> dict[int, set[int]]:
    through = Program.allowed_providers.through
    out: dict[int, set[int]] = defaultdict(set)
    for program_id, organization_id in through.objects.filter(program_id__in=list(program_ids)).values_list(
        "program_id", "organization_id"
    ):
        out[program_id].add(organization_id)
    return out


def annual_used_minor(*, program: Program, buyer: Organization, at: datetime) -> int:
    row = FirmYearUsage.objects.filter(program=program, buyer=buyer, year=rules.fiscal_year(at)).first()
    return row.used_minor if row else 0


def annual_used_or_committed_minor(*, program: Program, buyer: Organization, at: datetime) -> int:
    """Redeemed this year plus what the firm's active grants of the programme still hold: what a new grant
    would have to fit beside under the annual cap."""
    outstanding = Grant.objects.filter(program=program, buyer=buyer, status=GrantStatus.ACTIVE).aggregate(
        left=Coalesce(Sum("amount_minor"), 0) - Coalesce(Sum("redeemed_minor"), 0)
    )["left"]
    return annual_used_minor(program=program, buyer=buyer, at=at) + int(outstanding or 0)


# --- Programmes -------------------------------------------------------------------------------------------


def program_list_for_issuer(issuer: Organization) -> QuerySet[Program]:
    return Program.objects.filter(issuer=issuer).annotate(
        pending_count=Count("applications", filter=Q(applications__status__in=OPEN_APPLICATION_STATUSES))
    )


def program_get_for_issuer(issuer: Organization, public_id: UUID) -> Program:
    return get_object_or_404(Program.objects.filter(issuer=issuer), public_id=public_id)


def program_list_open() -> QuerySet[Program]:
    """Programmes a buyer may look at: open or recently closed, every issuer's (they are public policy)."""
    return Program.objects.filter(status=ProgramStatus.OPEN).select_related("issuer")


def program_get_open(public_id: UUID | str) -> Program:
    return get_object_or_404(program_list_open(), public_id=public_id)


@dataclass(frozen=True)
class ProgramForBuyer:
    program: Program
    problems: list[rules.Problem]
    used_minor: int

    @property
    def eligible(self) -> bool:
        return not self.problems


def program_list_for_buyer(buyer: Organization, *, at: datetime | None = None) -> list[ProgramForBuyer]:
    """Every open programme with the reasons this buyer may not apply (none: it may)."""
    at = ensure_utc(at or utcnow())
    facts = firm_facts(buyer)
    open_apps = set(
        Application.objects.filter(buyer=buyer, status__in=OPEN_APPLICATION_STATUSES).values_list(
            "program_id", flat=True
        )
    )
    out = []
    for program in program_list_open():
        terms = program_terms(program)
        problems = rules.program_problems(terms, at) + rules.firm_problems(terms, facts)
        used = annual_used_or_committed_minor(program=program, buyer=buyer, at=at)
        if terms.cap_per_firm_year_minor is not None and used >= terms.cap_per_firm_year_minor:
            problems.append(rules.Problem("annual_cap_reached", _("You have reached this year's cap.")))
        if program.pk in open_apps:
            problems.append(rules.Problem("application_open", _("You have an open application to it.")))
        out.append(ProgramForBuyer(program, problems, used))
    return out


@dataclass(frozen=True)
class ProgramStats:
    budget_minor: int
    committed_minor: int
    redeemed_minor: int
    paid_minor: int
    pending_minor: int
    grants_active: int
    applications_open: int


def program_stats(program: Program) -> ProgramStats:
    redemptions = Redemption.objects.filter(program=program)
    paid = redemptions.filter(settlement_status=SettlementStatus.PAID).aggregate(
        s=Coalesce(Sum("amount_minor"), 0) - Coalesce(Sum("released_minor"), 0)
    )["s"]
    pending = redemptions.filter(settlement_status=SettlementStatus.PENDING).aggregate(
        s=Coalesce(Sum("amount_minor"), 0) - Coalesce(Sum("released_minor"), 0)
    )["s"]
    return ProgramStats(
        budget_minor=program.budget_minor,
        committed_minor=program.committed_minor,
        redeemed_minor=program.redeemed_minor,
        paid_minor=int(paid or 0),
        pending_minor=int(pending or 0),
        grants_active=program.grants.filter(status=GrantStatus.ACTIVE).count(),
        applications_open=program.applications.filter(status__in=OPEN_APPLICATION_STATUSES).count(),
    )


def program_burn_down(program: Program, *, today: date | None = None) -> dict[str, list[Any]]:
    """Daily series for the burn-down chart: budget not yet redeemed, and not yet committed to grants
    (approximated by grant creation dates and amounts less what closed grants returned)."""
    zone = rules.FISCAL_ZONE
    start = program.valid_from.astimezone(zone).date()
    end = min(program.valid_until.astimezone(zone).date(), today or utcnow().astimezone(zone).date())
    if end < start:
        end = start
    redeemed: dict[date, int] = defaultdict(int)
    for row in (
        Redemption.objects.filter(program=program)
        .annotate(day=TruncDate("reserved_at", tzinfo=zone))
        .values("day")
        .annotate(s=Sum("amount_minor"))
    ):
        redeemed[row["day"]] += int(row["s"])
    for release in (
        Redemption.objects.filter(program=program, released_minor__gt=0)
        .annotate(day=TruncDate("released_at", tzinfo=zone))
        .values("day")
        .annotate(s=Sum("released_minor"))
    ):
        redeemed[release["day"]] -= int(release["s"])
    committed: dict[date, int] = defaultdict(int)
    for grant in Grant.objects.filter(program=program).only(
        "created_at", "closed_at", "amount_minor", "returned_minor"
    ):
        committed[grant.created_at.astimezone(zone).date()] += grant.amount_minor
        if grant.closed_at:
            committed[grant.closed_at.astimezone(zone).date()] -= grant.returned_minor
    days, left, uncommitted = [], [], []
    running_redeemed = sum(v for d, v in redeemed.items() if d < start)
    running_committed = sum(v for d, v in committed.items() if d < start)
    step = max((end - start).days // 120, 1)
    day = start
    while day <= end:
        running_redeemed += redeemed.get(day, 0)
        running_committed += committed.get(day, 0)
        if (day - start).days % step == 0 or day == end:
            days.append(day.isoformat())
            left.append(program.budget_minor - running_redeemed)
            uncommitted.append(program.budget_minor - running_committed)
        day += timedelta(days=1)
    return {"days": days, "left_minor": left, "uncommitted_minor": uncommitted}


def redemption_breakdown(program: Program) -> dict[str, list[dict[str, Any]]]:
    """Subsidy by buyer, by provider and by chip origin (net of releases for buyers)."""
    by_buyer = list(
        Redemption.objects.filter(program=program)
        .values("buyer__name")
        .annotate(amount=Sum("amount_minor") - Sum("released_minor"), invoices=Count("id"))
        .order_by("-amount")
    )
    by_provider = list(
        RedemptionLine.objects.filter(redemption__program=program)
        .values("provider__name")
        .annotate(amount=Sum("subsidy_minor"), lines=Count("id"))
        .order_by("-amount")
    )
    by_origin = list(
        RedemptionLine.objects.filter(redemption__program=program)
        .values("chip_domestic")
        .annotate(amount=Sum("subsidy_minor"), lines=Count("id"))
        .order_by("-chip_domestic")
    )
    return {
        "buyer": list(map(dict, by_buyer)),
        "provider": list(map(dict, by_provider)),
        "origin": list(map(dict, by_origin)),
    }


# --- Applications -----------------------------------------------------------------------------------------


def application_list_for_issuer(issuer: Organization, *, status: str | None = None) -> QuerySet[Application]:
    qs = Application.objects.filter(program__issuer=issuer).select_related("program", "buyer")
    if status == "open":
        qs = qs.filter(status__in=OPEN_APPLICATION_STATUSES)
    elif status:
        qs = qs.filter(status=status)
    return qs


def application_get_for_issuer(issuer: Organization, public_id: UUID) -> Application:
    return get_object_or_404(application_list_for_issuer(issuer), public_id=public_id)


def application_list_for_buyer(buyer: Organization) -> QuerySet[Application]:
    return Application.objects.filter(buyer=buyer).select_related("program", "program__issuer")


def application_get_for_buyer(buyer: Organization, public_id: UUID) -> Application:
    return get_object_or_404(application_list_for_buyer(buyer), public_id=public_id)


def attachment_get(organization: Organization, public_id: UUID) -> Attachment:
    """An attachment for the applicant or the programme's issuer; anyone else gets a 404."""
    qs = Attachment.objects.filter(Q(application__buyer=organization) | Q(application__program__issuer=organization))
    return get_object_or_404(qs, public_id=public_id)


def application_review_checks(application: Application, *, at: datetime | None = None) -> list[rules.Check]:
    at = ensure_utc(at or utcnow())
    program = application.program
    terms = program_terms(program)
    firm = firm_facts(application.buyer)
    providers = list(application.planned_providers.all())
    facts = firm_facts_map([p.pk for p in providers])
    duplicates: list[str] = []
    other_grants = Grant.objects.filter(buyer=application.buyer, status=GrantStatus.ACTIVE).select_related("program")
    other_grants = other_grants.exclude(application=application)
    for grant in other_grants:
        same_ref = application.contract_reference and (
            grant.application.contract_reference.casefold() == application.contract_reference.casefold()
        )
        if same_ref or grant.program.voucher_type == program.voucher_type:
            duplicates.append(
                _("Active grant in “%(program)s” (%(reference)s)")
                % {"program": grant.program.name, "reference": grant.application.contract_reference or "-"}
            )
    if application.contract_reference:
        for other in (
            Application.objects.filter(
                buyer=application.buyer,
                contract_reference__iexact=application.contract_reference,
                status__in=OPEN_APPLICATION_STATUSES,
            )
            .exclude(pk=application.pk)
            .select_related("program")
        ):
            duplicates.append(
                _("Open application for the same contract in “%(program)s”") % {"program": other.program.name}
            )
    used = annual_used_or_committed_minor(program=program, buyer=application.buyer, at=at)
    return rules.review_checks(
        terms=terms,
        firm=firm,
        at=at,
        requested_minor=application.requested_minor,
        annual_used_minor=used,
        providers=[(p.name, p.pk, facts.get(p.pk)) for p in providers],
        duplicates=duplicates,
    )


def provider_choices() -> QuerySet[Organization]:
    return Organization.objects.filter(kind=OrganizationKind.PROVIDER).order_by("name")


# --- Grants and redemptions -------------------------------------------------------------------------------


def grant_list_for_issuer(issuer: Organization, *, program: Program | None = None) -> QuerySet[Grant]:
    qs = Grant.objects.filter(program__issuer=issuer).select_related("program", "buyer")
    return qs.filter(program=program) if program else qs


def grant_get_for_issuer(issuer: Organization, public_id: UUID) -> Grant:
    return get_object_or_404(grant_list_for_issuer(issuer), public_id=public_id)


def grant_list_for_buyer(buyer: Organization) -> QuerySet[Grant]:
    return Grant.objects.filter(buyer=buyer).select_related("program", "program__issuer")


def redemption_list_for_issuer(
    issuer: Organization, *, program: Program | None = None, settlement_status: str | None = None
) -> QuerySet[Redemption]:
    qs = (
        Redemption.objects.filter(program__issuer=issuer)
        .select_related("program", "buyer", "grant")
        .prefetch_related("lines__provider")
    )
    if program is not None:
        qs = qs.filter(program=program)
    if settlement_status:
        qs = qs.filter(settlement_status=settlement_status)
    return qs


def redemption_get_for_issuer(issuer: Organization, public_id: UUID) -> Redemption:
    return get_object_or_404(redemption_list_for_issuer(issuer), public_id=public_id)


def redemption_list_for_buyer(buyer: Organization) -> QuerySet[Redemption]:
    return Redemption.objects.filter(buyer=buyer).select_related("program")


def payee_name(redemption: Redemption) -> str:
    """Who the bureau pays: the buyer (reimbursement), the provider(s) (direct), or the platform that deducted
    the subsidy at checkout."""
    if redemption.settlement_mode == "pay_provider":
        return "、".join(sorted({line.provider.name for line in redemption.lines.all()}))
    if redemption.settlement_mode == "deduct_at_checkout":
        return "platform"
    return redemption.buyer.name


def grant_states(
    *,
    grants: list[Grant],
    programs: dict[int, Program],
    usage: dict[int, tuple[int, int | None]],
    buyer_facts: rules.FirmFacts | None,
    allowed: dict[int, set[int]],
    at: datetime,
) -> list[rules.GrantState]:
    """The grants as the subsidy formula sees them. ``usage``: programme id -> (used this year, annual cap)."""
    states = []
    for grant in grants:
        program = programs[grant.program_id]
        terms = program_terms(program)
        domestic, other = rules.effective_ratios(terms, buyer_facts, at)
        used, cap = usage.get(program.pk, (0, program.cap_per_firm_year_minor))
        cap_app = program.cap_per_application_minor
        states.append(
            rules.GrantState(
                grant_id=grant.pk,
                program_id=program.pk,
                currency=program.currency,
                ratio_domestic=domestic,
                ratio_other=other,
                grant_left_minor=grant.amount_minor - grant.redeemed_minor,
                program_left_minor=program.budget_minor - program.redeemed_minor,
                annual_left_minor=None if cap is None else cap - used,
                cap_per_application_left_minor=None if cap_app is None else cap_app - grant.redeemed_minor,
                compute_only=program.compute_only,
                stacking_allowed=program.stacking_allowed,
                restrict_providers=program.restrict_providers,
                allowed_provider_ids=frozenset(allowed.get(program.pk, ())),
                ratio_model=rules.effective_model_ratio(terms, buyer_facts, at),
            )
        )
    return states


def voucher_subsidy_quote(
    *, buyer: Organization, lines: list[rules.EligibleLine], at: datetime | None = None
) -> rules.SubsidyPlan:
    """What the buyer's grants would give these lines now, without reserving anything (for "this bid would cost
    ¥X after your voucher"). The reservation at invoicing may give less if other invoices spend first."""
    at = ensure_utc(at or utcnow())
    grants = list(
        Grant.objects.filter(buyer=buyer, status=GrantStatus.ACTIVE, expires_at__gt=at)
        .select_related("program")
        .order_by("expires_at", "id")
    )
    if not grants:
        return rules.SubsidyPlan((), ())
    facts = firm_facts(buyer)
    provider_facts = firm_facts_map({line.provider_id for line in lines})
    related = frozenset(
        pk for pk, f in provider_facts.items() if facts is not None and rules.related_party_links(facts, f)
    )
    allowed = allowed_provider_ids({g.program_id for g in grants})
    year = rules.fiscal_year(at)
    usage = {
        row.program_id: row
        for row in FirmYearUsage.objects.filter(buyer=buyer, year=year, program_id__in=[g.program_id for g in grants])
    }
    states = grant_states(
        grants=grants,
        programs={g.program_id: g.program for g in grants},
        usage={pk: (row.used_minor, row.cap_minor) for pk, row in usage.items()},
        buyer_facts=facts,
        allowed=allowed,
        at=at,
    )
    return rules.plan_subsidy(lines, states, related_provider_ids=related)


APPLICATION_STATUS_ORDER = [s.value for s in ApplicationStatus]


@dataclass(frozen=True)
class SettledRedemption:
    public_id: UUID
    issuer_id: int
    settlement_mode: str
    currency: str
    amount_minor: int
    released_minor: int
    fiscal_reference: str


def redemptions_settled_for_billing() -> list[SettledRedemption]:
    """Redemptions their issuer has paid (marked with a fiscal reference): billing books the cash received."""
    rows = Redemption.objects.filter(settlement_status=SettlementStatus.PAID).values_list(
        "public_id", "program__issuer_id", "settlement_mode", "currency", "amount_minor", "released_minor",
        "fiscal_reference",
    )  # fmt: skip
    return [SettledRedemption(*row) for row in rows]


@dataclass(frozen=True)
class ReleasedSubsidy:
    issuer_id: int
    settlement_mode: str
    amount_minor: int


def releases_for_reference(*, buyer: Organization, invoice_reference: str, reference: str) -> list[ReleasedSubsidy]:
    """What one release (a void or a credit note, by its reference) gave back, per redemption."""
    from vouchers.models import RedemptionRelease

    rows = RedemptionRelease.objects.filter(
        redemption__buyer=buyer, redemption__invoice_reference=invoice_reference, reference=reference
    ).values_list("redemption__program__issuer_id", "redemption__settlement_mode", "amount_minor")
    return [ReleasedSubsidy(*row) for row in rows]


@dataclass(frozen=True)
class BidQuote:
    amount_minor: int
    subsidy_minor: int
    programs: tuple[str, ...]

    @property
    def after_subsidy_minor(self) -> int:
        return self.amount_minor - self.subsidy_minor


def bid_voucher_quote(
    *, buyer: Organization, amount_minor: int, provider_public_id: UUID, chip_domestic: bool
) -> BidQuote | None:
    """The subsidy the buyer's grants would give a bid costing ``amount_minor`` at that provider, now (nothing
    reserved); None when the buyer holds no usable grant or the amount is not positive."""
    provider = Organization.objects.filter(public_id=provider_public_id, kind=OrganizationKind.PROVIDER).first()
    if provider is None or amount_minor <= 0:
        return None
    line = rules.EligibleLine(
        amount_minor=amount_minor,
        currency="CNY",
        provider_id=provider.pk,
        chip_domestic=chip_domestic,
        compute_only=True,
    )
    plan = voucher_subsidy_quote(buyer=buyer, lines=[line])
    if not plan.grants:
        return None
    names = Program.objects.filter(pk__in=[g.program_id for g in plan.grants]).values_list("name", flat=True)
    return BidQuote(amount_minor, plan.total_minor, tuple(names))


# --- Redemptions by hub -----------------------------------------------------------------------------------

UNKNOWN_HUB = "unknown"


def _subject_key(value: Any) -> str | None:
    try:
        return str(value if isinstance(value, UUID) else UUID(str(value)))
    except ValueError:
        return None


def _split_evenly(amount: int, parts: int) -> list[int]:
    """``amount`` in ``parts`` integer shares that sum to it exactly (the remainder to the first shares)."""
    base, rest = divmod(amount, parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def redemption_breakdown_by_hub(program: Program) -> list[dict[str, Any]]:
    """Subsidy by 东数西算 hub, from each redemption line's evidence subjects (lease or token-contract public
    ids) -> pool -> site -> hub. A line whose subjects lie in several hubs is split equally among its subjects;
    a line without subjects, or whose subject is unknown or in a site without a hub, counts as the unknown hub
    (code ``"unknown"``). Rows: code, name_zh, name_en, amount (minor units), lines; largest first."""
    from marketplace import selectors as market

    lines = list(RedemptionLine.objects.filter(redemption__program=program).values_list("subsidy_minor", "evidence"))
    subjects_of: list[list[str]] = []
    every: set[str] = set()
    for _amount, evidence in lines:
        raw = evidence.get("subjects") if isinstance(evidence, dict) else None
        keys = [k for k in (_subject_key(v) for v in (raw if isinstance(raw, list) else [])) if k]
        subjects_of.append(keys)
        every.update(keys)
    hubs = market.hubs_for_subjects(public_ids=every)
    rows: dict[str, dict[str, Any]] = {}

    def add(hub: Any, amount: int, line_seen: set[str]) -> None:
        code = hub.code if hub is not None else UNKNOWN_HUB
        row = rows.setdefault(
            code,
            {
                "code": code,
                "name_zh": hub.name_zh if hub is not None else "",
                "name_en": hub.name_en if hub is not None else "",
                "amount": 0,
                "lines": 0,
            },
        )
        row["amount"] += amount
        if code not in line_seen:
            row["lines"] += 1
            line_seen.add(code)

    for (amount, _evidence), keys in zip(lines, subjects_of, strict=True):
        seen: set[str] = set()
        if not keys:
            add(None, amount, seen)
            continue
        for key, part in zip(keys, _split_evenly(amount, len(keys)), strict=True):
            add(hubs.get(key), part, seen)
    return sorted(rows.values(), key=lambda r: (-r["amount"], r["code"] == UNKNOWN_HUB, r["code"]))


# --- Flagged cases for the reviewer -----------------------------------------------------------------------

# Refusal codes voucher_subsidy_reserve stores in Redemption.evidence["refusals"] that a reviewer should see
# (the others, such as cap_reached or fully_subsidised, are the caps working as intended).
FLAGGED_REFUSAL_CODES = ("related_party", "provider_not_listed", "stacking", "not_compute", "currency")
# Evidence keys that count as metered evidence on a redemption line.
METERED_EVIDENCE_KEYS = ("subjects", "usage_batches", "accelerator_seconds", "tokens")
EXPIRY_WARNING_DAYS = 30
UNUSED_SHARE_FLAGGED = Decimal("0.5")
FLAG_LIMIT = 200


class FlagKind:
    REFUSAL = "refusal"
    EXPIRING_UNUSED = "expiring_unused"
    ANNUAL_CAP = "annual_cap"
    NO_EVIDENCE = "no_evidence"


@dataclass(frozen=True)
class FlaggedCase:
    kind: str
    program: Program
    buyer_name: str
    at: datetime | None  # when it happened or is due
    amount_minor: int | None
    codes: tuple[str, ...] = ()
    reference: str = ""  # invoice reference (redemptions)
    grant_public_id: UUID | None = None
    redemption_public_id: UUID | None = None
    year: int | None = None
    cap_minor: int | None = None


def refusal_label(code: str) -> str:
    labels = {
        "related_party": _("related-party provider"),
        "provider_not_listed": _("provider not on the programme's list"),
        "stacking": _("another programme already subsidised the line"),
        "not_compute": _("not compute (storage, network or security)"),
        "currency": _("other currency"),
    }
    return str(labels.get(code, code))


def _has_metered_evidence(evidence: Any) -> bool:
    return isinstance(evidence, dict) and any(evidence.get(key) for key in METERED_EVIDENCE_KEYS)


def _refused_invoices(scope: Q) -> list[FlaggedCase]:
    """One case per (programme, buyer, invoice) with refused lines, newest first; the subsidy the invoice kept
    from that programme beside it (0 when it was refused outright)."""
    cases: dict[tuple[int, int, str], FlaggedCase] = {}
    for refusal in LineRefusal.objects.filter(scope).select_related("program", "buyer")[: FLAG_LIMIT * 4]:
        key = (refusal.program_id, refusal.buyer_id, refusal.invoice_reference)
        case = cases.get(key)
        codes = tuple(sorted({*(case.codes if case else ()), refusal.code}))
        cases[key] = FlaggedCase(
            kind=FlagKind.REFUSAL,
            program=refusal.program,
            buyer_name=refusal.buyer.name,
            at=case.at if case else refusal.refused_at,
            amount_minor=0,
            codes=codes,
            reference=refusal.invoice_reference,
        )
    kept = {
        (row["program_id"], row["buyer_id"], row["invoice_reference"]): row["net"]
        for row in Redemption.objects.filter(
            program_id__in={k[0] for k in cases}, invoice_reference__in={k[2] for k in cases}
        )
        .values("program_id", "buyer_id", "invoice_reference")
        .annotate(net=Sum(F("amount_minor") - F("released_minor")))
    }
    return [replace(case, amount_minor=kept.get(key, 0)) for key, case in cases.items()][:FLAG_LIMIT]


def flagged_cases(
    issuer: Organization, *, program: Program | None = None, at: datetime | None = None
) -> dict[str, list[FlaggedCase]]:
    """What the issuer's reviewers should look at, by kind (every list newest or most urgent first, at most
    FLAG_LIMIT each): redemptions whose invoice had lines refused for a reviewer-relevant reason (related party,
    provider not listed, stacking, ...); active grants expiring within EXPIRY_WARNING_DAYS with more than half
    unused; buyers who exhausted a programme's annual cap this fiscal year; redemptions with a line (or no line)
    without metered evidence. Only the issuer's programmes; ``program`` narrows to one of them."""
    at = ensure_utc(at or utcnow())
    scope = Q(program__issuer=issuer)
    if program is not None:
        scope &= Q(program=program)

    refusals = _refused_invoices(scope)

    expiring = [
        FlaggedCase(
            kind=FlagKind.EXPIRING_UNUSED,
            program=grant.program,
            buyer_name=grant.buyer.name,
            at=grant.expires_at,
            amount_minor=grant.left_minor,
            grant_public_id=grant.public_id,
            cap_minor=grant.amount_minor,
        )
        for grant in Grant.objects.filter(
            scope,
            status=GrantStatus.ACTIVE,
            expires_at__gt=at,
            expires_at__lte=at + timedelta(days=EXPIRY_WARNING_DAYS),
        )
        .select_related("program", "buyer")
        .order_by("expires_at", "id")[:FLAG_LIMIT]
        if Decimal(grant.left_minor) > UNUSED_SHARE_FLAGGED * grant.amount_minor
    ]

    capped = [
        FlaggedCase(
            kind=FlagKind.ANNUAL_CAP,
            program=row.program,
            buyer_name=row.buyer.name,
            at=None,
            amount_minor=row.used_minor,
            year=row.year,
            cap_minor=row.cap_minor,
        )
        for row in FirmYearUsage.objects.filter(
            scope, year=rules.fiscal_year(at), cap_minor__isnull=False, used_minor__gte=F("cap_minor")
        )
        .select_related("program", "buyer")
        .order_by("program_id", "buyer__name")[:FLAG_LIMIT]
    ]

    no_evidence: list[FlaggedCase] = []
    candidates = (
        Redemption.objects.filter(scope)
        .exclude(released_minor=F("amount_minor"))
        .select_related("program", "buyer")
        .prefetch_related("lines")
        .order_by("-reserved_at", "-id")
    )
    for redemption in candidates.iterator(chunk_size=500):
        lines = list(redemption.lines.all())
        if lines and all(_has_metered_evidence(line.evidence) for line in lines):
            continue
        no_evidence.append(
            FlaggedCase(
                kind=FlagKind.NO_EVIDENCE,
                program=redemption.program,
                buyer_name=redemption.buyer.name,
                at=redemption.reserved_at,
                amount_minor=redemption.net_minor,
                reference=redemption.invoice_reference,
                redemption_public_id=redemption.public_id,
            )
        )
        if len(no_evidence) >= FLAG_LIMIT:
            break
    return {
        FlagKind.REFUSAL: refusals[:FLAG_LIMIT],
        FlagKind.EXPIRING_UNUSED: expiring,
        FlagKind.ANNUAL_CAP: capped,
        FlagKind.NO_EVIDENCE: no_evidence,
    }


@dataclass(frozen=True)
class LineEvidence:
    line: RedemptionLine
    period: Window | None
    subjects: list[Any]  # metering.selectors.SubjectEvidence


def redemption_evidence(redemption: Redemption) -> list[LineEvidence]:
    """Each subsidised line of a redemption with the metered usage behind it: the leases and token contracts
    named in its evidence, their usage over the invoice's period and the signed batches anyone can re-verify."""
    from metering import selectors as metering_selectors

    out = []
    for line in redemption.lines.select_related("provider").order_by("id"):
        evidence = line.evidence if isinstance(line.evidence, dict) else {}
        raw = evidence.get("subjects")
        subjects = [k for k in (_subject_key(v) for v in (raw if isinstance(raw, list) else [])) if k]
        period = _evidence_period(evidence.get("period"))
        out.append(LineEvidence(line, period, metering_selectors.usage_evidence(subject_ids=subjects, window=period)))
    return out


def _evidence_period(raw: Any) -> Window | None:
    if not (isinstance(raw, list) and len(raw) == 2):
        return None
    try:
        return Window(parse_rfc3339(str(raw[0])), parse_rfc3339(str(raw[1])))
    except ValueError:
        return None
