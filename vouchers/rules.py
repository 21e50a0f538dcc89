"""Voucher rules as pure functions (no ORM): eligibility, related parties, the subsidy formula.

The services load the facts from the database, call these functions, and write what they decide. Keeping the
rules here means they can be tested exhaustively (and by Hypothesis) without a database.

The subsidy of one grant on one invoice is
``min(ratio x eligible amount, cap per application left, annual cap left, grant left, programme budget left)``,
with the ratio x amount rounded once per invoice line (``core.money.line_amount_minor``, ROUND_HALF_UP).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.utils.translation import gettext as _

from core.money import format_money, from_minor, line_amount_minor
from core.timeutils import ensure_utc

FISCAL_ZONE = ZoneInfo("Asia/Shanghai")
SME_SIZE_CLASSES = frozenset({"medium", "small", "micro"})


def fiscal_year(at: datetime) -> int:
    """The calendar (fiscal) year of an instant as a Chinese bureau counts it: in Asia/Shanghai."""
    return ensure_utc(at).astimezone(FISCAL_ZONE).year


# --- Facts ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    name: str
    uscc: str = ""


@dataclass(frozen=True)
class FirmFacts:
    """What the company profile says about a firm (buyer or provider)."""

    uscc: str
    legal_representative: str
    province: str = ""
    city: str = ""
    size_class: str = ""
    industry: str = ""
    founded_on: date | None = None
    shareholders: tuple[Holder, ...] = ()


@dataclass(frozen=True)
class ProgramTerms:
    currency: str
    status: str
    valid_from: datetime
    valid_until: datetime
    budget_minor: int
    committed_minor: int
    ratio_domestic: Decimal
    ratio_other: Decimal
    ratio_startup: Decimal | None = None
    ratio_sme: Decimal | None = None
    ratio_model: Decimal | None = None  # product tier for model/API usage; None: the chip-origin ratios
    startup_max_age_years: int = 3
    cap_per_application_minor: int | None = None
    cap_per_firm_year_minor: int | None = None
    eligible_provinces: tuple[str, ...] = ()
    eligible_cities: tuple[str, ...] = ()
    eligible_size_classes: tuple[str, ...] = ()
    eligible_industries: tuple[str, ...] = ()
    restrict_providers: bool = False
    allowed_provider_ids: frozenset[int] = frozenset()
    compute_only: bool = True
    stacking_allowed: bool = False


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    field: str | None = None


# --- Eligibility of a firm for a programme ----------------------------------------------------------------


def _norm_city(value: str) -> str:
    value = re.sub(r"\s+", "", value).casefold()
    for suffix in ("市", "city"):
        if value.endswith(suffix) and len(value) > len(suffix):
            value = value[: -len(suffix)]
    return value


def _norm_name(value: str) -> str:
    return re.sub(r"\s+", "", value).casefold()


def is_startup(terms: ProgramTerms, firm: FirmFacts, at: datetime) -> bool:
    if firm.founded_on is None:
        return False
    day = ensure_utc(at).astimezone(FISCAL_ZONE).date()
    founded = firm.founded_on
    try:
        limit = founded.replace(year=founded.year + terms.startup_max_age_years)
    except ValueError:  # 29 February
        limit = founded.replace(year=founded.year + terms.startup_max_age_years, day=28)
    return founded <= day < limit


def is_sme(firm: FirmFacts) -> bool:
    return firm.size_class in SME_SIZE_CLASSES


def program_problems(terms: ProgramTerms, at: datetime) -> list[Problem]:
    """Whether the programme takes applications at all at ``at``."""
    at = ensure_utc(at)
    if terms.status != "open":
        return [Problem("program_closed", _("This programme is not taking applications."))]
    if at < terms.valid_from:
        return [
            Problem("program_not_started", _("This programme opens on %(date)s.") % {"date": _day(terms.valid_from)})
        ]
    if at >= terms.valid_until:
        return [Problem("program_expired", _("This programme ended on %(date)s.") % {"date": _day(terms.valid_until)})]
    if terms.committed_minor >= terms.budget_minor:
        return [Problem("program_exhausted", _("This programme's budget is fully committed."))]
    return []


def _day(value: datetime) -> str:
    return ensure_utc(value).astimezone(FISCAL_ZONE).strftime("%Y-%m-%d")


def firm_problems(terms: ProgramTerms, firm: FirmFacts | None) -> list[Problem]:
    """Why a firm may not apply (empty: it may). Province, city, size class, industry."""
    if firm is None:
        return [Problem("no_company_profile", _("Fill in your company profile first: eligibility depends on it."))]
    problems: list[Problem] = []
    if terms.eligible_provinces and firm.province not in terms.eligible_provinces:
        problems.append(
            Problem("province_not_eligible", _("Only firms registered in the programme's province(s) may apply."))
        )
    if terms.eligible_cities and _norm_city(firm.city) not in {_norm_city(c) for c in terms.eligible_cities}:
        problems.append(
            Problem(
                "city_not_eligible",
                _("Only firms registered in %(cities)s may apply.") % {"cities": "、".join(terms.eligible_cities)},
            )
        )
    if terms.eligible_size_classes and firm.size_class not in terms.eligible_size_classes:
        problems.append(
            Problem("size_class_not_eligible", _("Your firm's size class is not eligible for this programme."))
        )
    if terms.eligible_industries and firm.industry not in terms.eligible_industries:
        problems.append(Problem("industry_not_eligible", _("Your industry is not eligible for this programme.")))
    return problems


def amount_problems(terms: ProgramTerms, *, requested_minor: int, annual_used_minor: int) -> list[Problem]:
    """A requested (or approved) amount against the caps and what the budget has left."""
    field_name = "requested_amount"
    if requested_minor <= 0:
        return [Problem("amount_not_positive", _("Enter an amount greater than zero."), field_name)]
    problems: list[Problem] = []
    money = lambda minor: format_money(minor, terms.currency)  # noqa: E731
    if terms.cap_per_application_minor is not None and requested_minor > terms.cap_per_application_minor:
        problems.append(
            Problem(
                "above_cap_per_application",
                _("The cap per application is %(cap)s.") % {"cap": money(terms.cap_per_application_minor)},
                field_name,
            )
        )
    if terms.cap_per_firm_year_minor is not None:
        left = max(terms.cap_per_firm_year_minor - annual_used_minor, 0)
        if requested_minor > left:
            problems.append(
                Problem(
                    "above_annual_cap",
                    _("The cap per firm per year is %(cap)s; %(left)s of it is left for you this year.")
                    % {"cap": money(terms.cap_per_firm_year_minor), "left": money(left)},
                    field_name,
                )
            )
    budget_left = terms.budget_minor - terms.committed_minor
    if requested_minor > budget_left:
        problems.append(
            Problem(
                "above_budget_left",
                _("The programme has %(left)s of its budget left.") % {"left": money(max(budget_left, 0))},
                field_name,
            )
        )
    return problems


# --- Related parties --------------------------------------------------------------------------------------


def related_party_links(buyer: FirmFacts, provider: FirmFacts) -> list[str]:
    """How two firms are related (empty: not related). Codes: same_uscc, same_legal_representative,
    owns_the_other (one is a shareholder of the other), shared_shareholder (a common shareholder, by 统一社会信用代码
    for companies, by name for natural persons)."""
    links: list[str] = []
    if buyer.uscc and buyer.uscc.upper() == provider.uscc.upper():
        links.append("same_uscc")
    if buyer.legal_representative and _norm_name(buyer.legal_representative) == _norm_name(
        provider.legal_representative
    ):
        links.append("same_legal_representative")
    buyer_holders = {h.uscc.upper() for h in buyer.shareholders if h.uscc}
    provider_holders = {h.uscc.upper() for h in provider.shareholders if h.uscc}
    if (provider.uscc and provider.uscc.upper() in buyer_holders) or (
        buyer.uscc and buyer.uscc.upper() in provider_holders
    ):
        links.append("owns_the_other")
    buyer_people = {_norm_name(h.name) for h in buyer.shareholders if not h.uscc and h.name.strip()}
    provider_people = {_norm_name(h.name) for h in provider.shareholders if not h.uscc and h.name.strip()}
    if (buyer_holders & provider_holders) or (buyer_people & provider_people):
        links.append("shared_shareholder")
    return links


def related_party_message(links: Sequence[str]) -> str:
    labels = {
        "same_uscc": _("the same unified social credit code"),
        "same_legal_representative": _("the same legal representative"),
        "owns_the_other": _("one is a shareholder of the other"),
        "shared_shareholder": _("a common shareholder"),
    }
    return "; ".join(str(labels.get(code, code)) for code in links)


# --- The subsidy formula ----------------------------------------------------------------------------------


PRODUCT_COMPUTE = "compute"
PRODUCT_MODEL = "model"
PRODUCTS = frozenset({PRODUCT_COMPUTE, PRODUCT_MODEL})


@dataclass(frozen=True)
class EligibleLine:
    """One invoice line billing asks a subsidy for. ``provider_id`` is the provider organisation's id.
    ``product``: "compute" (accelerator capacity, the default) or "model" (model/API token usage), which a
    programme may subsidise at its own ratio."""

    amount_minor: int
    currency: str
    provider_id: int
    chip_domestic: bool
    compute_only: bool
    evidence: Mapping[str, Any] = field(default_factory=dict)
    product: str = PRODUCT_COMPUTE

    def __post_init__(self) -> None:
        if self.product not in PRODUCTS:
            raise ValueError(f"EligibleLine.product must be one of {sorted(PRODUCTS)}, not {self.product!r}")


@dataclass(frozen=True)
class GrantState:
    """A grant as the formula sees it, with the counters it may spend (None: no such cap)."""

    grant_id: int
    program_id: int
    currency: str
    ratio_domestic: Decimal  # the effective ratios for this firm (firm tiers applied)
    ratio_other: Decimal
    grant_left_minor: int
    program_left_minor: int
    annual_left_minor: int | None = None
    cap_per_application_left_minor: int | None = None
    compute_only: bool = True
    stacking_allowed: bool = False
    restrict_providers: bool = False
    allowed_provider_ids: frozenset[int] = frozenset()
    ratio_model: Decimal | None = None  # effective model/API ratio (firm tiers applied); None: chip-origin ratios

    def ratio_for(self, line: EligibleLine) -> Decimal:
        """The ratio of one line: the product tier for model usage when the programme sets one, else the
        chip-origin ratio."""
        if line.product == PRODUCT_MODEL and self.ratio_model is not None:
            return self.ratio_model
        return self.ratio_domestic if line.chip_domestic else self.ratio_other


@dataclass(frozen=True)
class LinePlan:
    line_index: int
    ratio: Decimal
    raw_minor: int  # ratio x amount, rounded once
    subsidy_minor: int  # after the caps


@dataclass(frozen=True)
class GrantPlan:
    grant_id: int
    program_id: int
    eligible_minor: int
    amount_minor: int
    lines: tuple[LinePlan, ...]


@dataclass(frozen=True)
class Refusal:
    line_index: int
    grant_id: int | None
    code: str


@dataclass(frozen=True)
class SubsidyPlan:
    grants: tuple[GrantPlan, ...]
    refusals: tuple[Refusal, ...]

    @property
    def total_minor(self) -> int:
        return sum(g.amount_minor for g in self.grants)


def _firm_tier(terms: ProgramTerms, firm: FirmFacts | None, at: datetime) -> Decimal:
    """The start-up or SME ratio the firm qualifies for (the higher), 0 if none."""
    tier = Decimal(0)
    if firm is not None:
        if terms.ratio_startup is not None and is_startup(terms, firm, at):
            tier = max(tier, terms.ratio_startup)
        if terms.ratio_sme is not None and is_sme(firm):
            tier = max(tier, terms.ratio_sme)
    return tier


def effective_ratios(terms: ProgramTerms, firm: FirmFacts | None, at: datetime) -> tuple[Decimal, Decimal]:
    """(domestic, other) ratios for a firm: the chip-origin ratio, raised to the start-up or SME ratio if higher."""
    tier = _firm_tier(terms, firm, at)
    return max(terms.ratio_domestic, tier), max(terms.ratio_other, tier)


def effective_model_ratio(terms: ProgramTerms, firm: FirmFacts | None, at: datetime) -> Decimal | None:
    """The model/API (token usage) ratio for a firm, raised to the start-up or SME ratio if higher; None when
    the programme sets no product tier (model usage then gets the chip-origin ratios)."""
    if terms.ratio_model is None:
        return None
    return max(terms.ratio_model, _firm_tier(terms, firm, at))


def _cap(*values: int | None) -> int:
    present = [v for v in values if v is not None]
    return max(min(present), 0)


def plan_subsidy(
    lines: Sequence[EligibleLine], grants: Sequence[GrantState], *, related_provider_ids: frozenset[int] = frozenset()
) -> SubsidyPlan:
    """Which grant subsidises which line and by how much, within every cap.

    Grants are used in the order given (the services pass the soonest-expiring first). A line subsidised by a
    programme that forbids stacking gets nothing from another programme, and a programme that forbids stacking
    skips lines another programme already subsidised. Lines of related-party providers are refused.
    """
    refusals: list[Refusal] = []
    residual = [line.amount_minor for line in lines]
    exclusive_taken = [False] * len(lines)
    taken = [False] * len(lines)
    program_left: dict[int, int] = {}
    annual_left: dict[int, int | None] = {}
    for grant in grants:
        program_left.setdefault(grant.program_id, grant.program_left_minor)
        annual_left.setdefault(grant.program_id, grant.annual_left_minor)

    usable: list[int] = []
    for index, line in enumerate(lines):
        if line.amount_minor <= 0:
            refusals.append(Refusal(index, None, "not_positive"))
        elif line.provider_id in related_provider_ids:
            refusals.append(Refusal(index, None, "related_party"))
        else:
            usable.append(index)

    plans: list[GrantPlan] = []
    for grant in grants:
        candidates: list[tuple[int, Decimal, int]] = []
        for index in usable:
            line = lines[index]
            code = None
            if line.currency != grant.currency:
                code = "currency"
            elif grant.compute_only and not line.compute_only:
                code = "not_compute"
            elif grant.restrict_providers and line.provider_id not in grant.allowed_provider_ids:
                code = "provider_not_listed"
            elif exclusive_taken[index] or (not grant.stacking_allowed and taken[index]):
                code = "stacking"
            elif residual[index] <= 0:
                code = "fully_subsidised"
            if code:
                refusals.append(Refusal(index, grant.grant_id, code))
                continue
            ratio = grant.ratio_for(line)
            raw = min(
                line_amount_minor(from_minor(line.amount_minor, line.currency), ratio, line.currency), residual[index]
            )
            if raw > 0:
                candidates.append((index, ratio, raw))
        total_raw = sum(raw for _i, _r, raw in candidates)
        if total_raw <= 0:
            continue
        amount = _cap(
            total_raw,
            grant.grant_left_minor,
            grant.cap_per_application_left_minor,
            annual_left[grant.program_id],
            program_left[grant.program_id],
        )
        if amount <= 0:
            for index, _ratio, _raw in candidates:
                refusals.append(Refusal(index, grant.grant_id, "cap_reached"))
            continue
        # Fill lines in order up to the grant's cap, so a grant that runs out leaves the remaining lines free
        # for the next grant (which matters when programmes may not stack).
        parts: list[int] = []
        left = amount
        for _index, _ratio, raw in candidates:
            part = min(raw, left)
            parts.append(part)
            left -= part
        line_plans = []
        for (index, ratio, raw), part in zip(candidates, parts, strict=True):
            if part <= 0:
                continue
            line_plans.append(LinePlan(index, ratio, raw, part))
            residual[index] -= part
            taken[index] = True
            if not grant.stacking_allowed:
                exclusive_taken[index] = True
        program_left[grant.program_id] -= amount
        if annual_left[grant.program_id] is not None:
            annual_left[grant.program_id] = annual_left[grant.program_id] - amount  # type: ignore[operator]
        plans.append(
            GrantPlan(
                grant_id=grant.grant_id,
                program_id=grant.program_id,
                eligible_minor=sum(lines[lp.line_index].amount_minor for lp in line_plans),
                amount_minor=amount,
                lines=tuple(line_plans),
            )
        )
    return SubsidyPlan(grants=tuple(plans), refusals=tuple(refusals))


# --- Review checks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    code: str
    title: str
    status: str  # "ok", "warn", "fail"
    details: tuple[str, ...] = ()


def review_checks(
    *,
    terms: ProgramTerms,
    firm: FirmFacts | None,
    at: datetime,
    requested_minor: int,
    annual_used_minor: int,
    providers: Sequence[tuple[str, int, FirmFacts | None]],
    duplicates: Sequence[str],
) -> list[Check]:
    """The automatic checks shown to the reviewer. ``providers``: (name, id, facts) of the named providers;
    ``duplicates``: descriptions of other open grants or applications for the same purpose."""
    checks: list[Check] = []
    problems = program_problems(terms, at) + firm_problems(terms, firm)
    checks.append(
        Check(
            "eligibility",
            _("Eligibility rules"),
            "fail" if problems else "ok",
            tuple(p.message for p in problems) or (_("Registration place, size class and industry match."),),
        )
    )
    related: list[str] = []
    unlisted: list[str] = []
    for name, provider_id, facts in providers:
        if firm is not None and facts is not None:
            links = related_party_links(firm, facts)
            if links:
                related.append(f"{name}: {related_party_message(links)}")
        if terms.restrict_providers and provider_id not in terms.allowed_provider_ids:
            unlisted.append(name)
    details = tuple(related) or (
        (_("No named provider shares a credit code, legal representative or shareholder with the applicant."),)
        if providers
        else (_("No provider named: every redemption is checked again at invoicing."),)
    )
    checks.append(Check("related_parties", _("Related parties"), "fail" if related else "ok", details))
    if terms.restrict_providers:
        checks.append(
            Check(
                "provider_list",
                _("Provider allow-list"),
                "warn" if unlisted else "ok",
                tuple(_("Not on the programme's list: %(name)s") % {"name": n} for n in unlisted)
                or (_("Every named provider is on the programme's list."),),
            )
        )
    checks.append(
        Check(
            "duplicate_subsidy",
            _("Duplicate subsidy"),
            "warn" if duplicates else "ok",
            tuple(duplicates) or (_("No other open grant or application for the same purpose."),),
        )
    )
    money = lambda minor: format_money(minor, terms.currency)  # noqa: E731
    amount = amount_problems(terms, requested_minor=requested_minor, annual_used_minor=annual_used_minor)
    if terms.cap_per_firm_year_minor is not None:
        used_line = _("Used this year: %(used)s of %(cap)s.") % {
            "used": money(annual_used_minor),
            "cap": money(terms.cap_per_firm_year_minor),
        }
    else:
        used_line = _("Used this year: %(used)s (no annual cap).") % {"used": money(annual_used_minor)}
    checks.append(
        Check("caps", _("Caps and budget"), "fail" if amount else "ok", (used_line, *(p.message for p in amount)))
    )
    return checks
