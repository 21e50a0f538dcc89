"""Rating: usage and contracts in, priced invoice lines out. Pure (no ORM), Decimal throughout.

One rounding per line (``core.money.line_amount_minor`` / ``to_minor``, ROUND_HALF_UP), never a rounding of a
rounded figure:
- reserved capacity: the accelerator-hours contracted inside the period x the lease's price per
  accelerator-hour (a lease is charged for the capacity it holds, used or not);
- SLA credit: ``- sla_credit_ratio x`` the capacity charge of the period, computed from the exact product;
- dispute credit: ``- credited accelerator-hours x price``;
- token contracts: metered input and output tokens x the price per million tokens;
- adjustments: re-rated amount of a closed period minus what was invoiced for it (late records).
The invoice totals (``invoice_totals``): subtotal = sum of the lines above; VAT = subtotal x rate, rounded once;
total = subtotal + VAT; subsidy from the voucher service reduces the amount due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol
from uuid import UUID

from core.money import from_minor, line_amount_minor, to_minor

SECONDS_PER_HOUR = 3600
TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True)
class LeaseCharge:
    """What rating needs to know about one lease in one period."""

    lease_public_id: UUID
    provider_id: int
    pool_id: int
    pool_name: str
    accelerator_model: str
    chip_domestic: bool
    currency: str
    price_per_accelerator_hour: Decimal
    scu_per_accelerator_hour: Decimal | None
    contracted_accelerator_seconds: int
    sla_credit_ratio: Decimal = Decimal(0)
    dispute_credit_accelerator_seconds: int = 0
    energy_wh: int = 0
    availability: Decimal | None = None


@dataclass(frozen=True)
class TokenCharge:
    contract_public_id: UUID
    provider_id: int
    pool_id: int | None
    model_name: str
    chip_domestic: bool
    currency: str
    price_per_million_in: Decimal
    price_per_million_out: Decimal
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class Adjustment:
    """A closed period re-rated after late usage: ``amount_minor`` is the difference to add (may be negative)."""

    subject_public_id: UUID
    provider_id: int
    pool_id: int | None
    chip_domestic: bool
    currency: str
    amount_minor: int
    reference: str  # the number of the invoice the difference corrects
    adjusts: str = ""  # that invoice's public id (how later runs count this adjustment as invoiced)


@dataclass(frozen=True)
class RatedLine:
    kind: str
    description_key: str
    description_params: dict[str, Any]
    subject_public_id: UUID | None
    provider_id: int | None
    pool_id: int | None
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount_minor: int
    chip_domestic: bool = False
    accelerator_hours: Decimal = Decimal(0)
    scu_hours: Decimal = Decimal(0)
    energy_wh: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def compute(self) -> bool:
        """A compute line (capacity, tokens and their credits and adjustments): what a voucher may subsidise."""
        return self.kind != "subsidy"


@dataclass(frozen=True)
class Totals:
    subtotal_minor: int
    vat_minor: int
    total_minor: int
    subsidy_minor: int
    amount_due_minor: int


def _hours(seconds: int) -> Decimal:
    return Decimal(seconds) / SECONDS_PER_HOUR


def _exact_hours(seconds: int) -> Fraction:
    return Fraction(seconds, SECONDS_PER_HOUR)


def rate_lease(charge: LeaseCharge) -> list[RatedLine]:
    if charge.contracted_accelerator_seconds < 0 or charge.dispute_credit_accelerator_seconds < 0:
        raise ValueError("accelerator-seconds cannot be negative")
    if not Decimal(0) <= charge.sla_credit_ratio <= Decimal(1):
        raise ValueError("the SLA credit ratio is a fraction between 0 and 1")
    if charge.contracted_accelerator_seconds == 0:
        return []
    price = charge.price_per_accelerator_hour
    hours = _hours(charge.contracted_accelerator_seconds)
    scu_hours = hours * charge.scu_per_accelerator_hour if charge.scu_per_accelerator_hour is not None else Decimal(0)
    common: dict[str, Any] = {
        "subject_public_id": charge.lease_public_id,
        "provider_id": charge.provider_id,
        "pool_id": charge.pool_id,
        "chip_domestic": charge.chip_domestic,
    }
    # Amounts from exact hours (seconds / 3600 as a fraction): a 28-digit Decimal of 30,000 s / 3,600 is just
    # below 8⅓, which turned an exact half fen into a round-down (found by the Hypothesis test in test_rating).
    capacity_minor = line_amount_minor(_exact_hours(charge.contracted_accelerator_seconds), price, charge.currency)
    lines = [
        RatedLine(
            kind="capacity",
            description_key="capacity",
            description_params={"pool": charge.pool_name, "model": charge.accelerator_model},
            quantity=hours,
            unit="accelerator-hour",
            unit_price=price,
            amount_minor=capacity_minor,
            accelerator_hours=hours,
            scu_hours=scu_hours,
            energy_wh=charge.energy_wh,
            details={
                "scu_per_accelerator_hour": str(charge.scu_per_accelerator_hour)
                if charge.scu_per_accelerator_hour is not None
                else None,
                "availability": str(charge.availability) if charge.availability is not None else None,
            },
            **common,
        )
    ]
    if charge.sla_credit_ratio > 0:
        # ratio x hours x price from the exact product: one rounding, not a ratio of the rounded capacity line.
        exact = (
            Fraction(charge.sla_credit_ratio) * _exact_hours(charge.contracted_accelerator_seconds) * Fraction(price)
        )
        credit_minor = -to_minor(exact, charge.currency)
        credit_minor = max(credit_minor, -capacity_minor)
        if credit_minor:
            lines.append(
                RatedLine(
                    kind="sla_credit",
                    description_key="sla_credit",
                    description_params={
                        "ratio_pct": str((charge.sla_credit_ratio * 100).normalize()),
                        "availability_pct": str((charge.availability * 100).quantize(Decimal("0.01")))
                        if charge.availability is not None
                        else "",
                    },
                    quantity=charge.sla_credit_ratio,
                    unit="ratio",
                    unit_price=-Decimal(capacity_minor),
                    amount_minor=credit_minor,
                    **common,
                )
            )
    if charge.dispute_credit_accelerator_seconds > 0:
        credit_seconds = min(charge.dispute_credit_accelerator_seconds, charge.contracted_accelerator_seconds)
        credit_hours = _hours(credit_seconds)
        lines.append(
            RatedLine(
                kind="dispute_credit",
                description_key="dispute_credit",
                description_params={},
                quantity=credit_hours,
                unit="accelerator-hour",
                unit_price=-price,
                amount_minor=line_amount_minor(_exact_hours(credit_seconds), -price, charge.currency),
                **common,
            )
        )
    return lines


def rate_tokens(charge: TokenCharge) -> list[RatedLine]:
    if charge.tokens_in < 0 or charge.tokens_out < 0:
        raise ValueError("token counts cannot be negative")
    lines = []
    for kind, tokens, price in (
        ("tokens_in", charge.tokens_in, charge.price_per_million_in),
        ("tokens_out", charge.tokens_out, charge.price_per_million_out),
    ):
        if tokens == 0:
            continue
        millions = Decimal(tokens) / TOKENS_PER_PRICE_UNIT
        lines.append(
            RatedLine(
                kind=kind,
                description_key=kind,
                description_params={"model": charge.model_name},
                subject_public_id=charge.contract_public_id,
                provider_id=charge.provider_id,
                pool_id=charge.pool_id,
                quantity=millions,
                unit="million tokens",
                unit_price=price,
                amount_minor=line_amount_minor(millions, price, charge.currency),
                chip_domestic=charge.chip_domestic,
                details={"tokens": tokens},
            )
        )
    return lines


def rate_adjustment(adjustment: Adjustment) -> list[RatedLine]:
    if adjustment.amount_minor == 0:
        return []
    return [
        RatedLine(
            kind="adjustment",
            description_key="adjustment",
            description_params={"reference": adjustment.reference},
            subject_public_id=adjustment.subject_public_id,
            provider_id=adjustment.provider_id,
            pool_id=adjustment.pool_id,
            quantity=Decimal(1),
            unit="adjustment",
            unit_price=Decimal(adjustment.amount_minor),
            amount_minor=adjustment.amount_minor,
            chip_domestic=adjustment.chip_domestic,
            details={"adjusts": adjustment.adjusts},
        )
    ]


def rate_period(
    leases: Iterable[LeaseCharge], tokens: Iterable[TokenCharge] = (), adjustments: Iterable[Adjustment] = ()
) -> list[RatedLine]:
    """Every line of one buyer's period, in a stable order (leases, then token contracts, then adjustments)."""
    lines: list[RatedLine] = []
    for lease in sorted(leases, key=lambda c: str(c.lease_public_id)):
        lines.extend(rate_lease(lease))
    for contract in sorted(tokens, key=lambda c: str(c.contract_public_id)):
        lines.extend(rate_tokens(contract))
    for adjustment in sorted(adjustments, key=lambda a: (str(a.subject_public_id), a.reference)):
        lines.extend(rate_adjustment(adjustment))
    return lines


def vat_minor(subtotal_minor: int, vat_rate: Decimal, currency: str) -> int:
    """VAT on the subtotal, rounded once. A negative subtotal (credits above charges) carries negative VAT."""
    if vat_rate < 0:
        raise ValueError("the VAT rate cannot be negative")
    return line_amount_minor(from_minor(subtotal_minor, currency), vat_rate, currency)


class PricedLine(Protocol):
    """A rated line or a stored invoice line: all the totals need."""

    @property
    def kind(self) -> str: ...

    @property
    def amount_minor(self) -> int: ...


def invoice_totals(
    lines: Sequence[PricedLine], *, vat_rate: Decimal, currency: str, subsidy_deducted_minor: int = 0
) -> Totals:
    subtotal = sum(line.amount_minor for line in lines if line.kind != "subsidy")
    vat = vat_minor(subtotal, vat_rate, currency)
    total = subtotal + vat
    if subsidy_deducted_minor < 0 or subsidy_deducted_minor > max(total, 0):
        raise ValueError("the subsidy deducted must be between zero and the invoice total")
    return Totals(
        subtotal_minor=subtotal,
        vat_minor=vat,
        total_minor=total,
        subsidy_minor=subsidy_deducted_minor,
        amount_due_minor=total - subsidy_deducted_minor,
    )


def fee_split(amount_minor: int, fee_rate: Decimal, currency: str) -> tuple[int, int]:
    """(fee, net) of a provider's gross amount: the fee rounded once, the net the exact rest."""
    if not Decimal(0) <= fee_rate < Decimal(1):
        raise ValueError("the fee rate is a fraction in [0, 1)")
    fee = line_amount_minor(from_minor(amount_minor, currency), fee_rate, currency)
    return fee, amount_minor - fee
