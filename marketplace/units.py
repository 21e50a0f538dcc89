"""Standard compute units (算力度量标准化): a pure, versioned normalisation. No ORM, no floats.

Two units, both per accelerator and hour:

- **SCU-hour** (标准算力·时): 1 PFLOPS of dense FP16/BF16 for one hour. An accelerator attested at 900 TFLOPS
  delivers 0.9 SCU per hour.
- **BWU-hour**: 1 TB/s of memory bandwidth for one hour (memory-bound LLM serving).

Attested (measured) figures win over datasheet figures; a figure computed from the datasheet says so
(``basis="datasheet"``), and every figure carries the formula version that produced it, so a price shown in a
normalised unit can always say which version and basis it used. The H100-equivalent is for familiarity only
(the reference is the H100 SXM5 datasheet peak) and is never used to price anything.

Exactness: SCU and BWU are exact Decimal operations (a shift of the decimal point, a multiplication by the
count). Only ratios (H100-equivalent, measured/declared) divide; they are rounded once, ROUND_HALF_UP, to
``RATIO_PLACES`` places, which keeps them monotone.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

FORMULA_VERSION = "scu-bwu/2025.1"

# The reference accelerator for H100-equivalents: NVIDIA H100 SXM5, dense FP16/BF16 and HBM3 bandwidth.
H100_REFERENCE_TFLOPS = Decimal("989")
H100_REFERENCE_TBPS = Decimal("3.35")

RATIO_PLACES = Decimal("0.0001")
# Measured figures above this multiple of the datasheet peak are implausible: staff review them first.
MAX_PLAUSIBLE_RATIO = Decimal("1.5")


class Basis(StrEnum):
    ATTESTED = "attested"
    DATASHEET = "datasheet"


class Unit(StrEnum):
    SCU = "SCU"  # per hour: PFLOPS dense FP16/BF16
    BWU = "BWU"  # per hour: TB/s memory bandwidth
    H100E = "H100e"  # H100 SXM5 equivalents (familiarity only)


@dataclass(frozen=True, slots=True)
class Figure:
    """One normalised number with its provenance."""

    value: Decimal
    unit: Unit
    basis: Basis
    formula_version: str = FORMULA_VERSION

    def scaled(self, factor: int) -> Figure:
        return Figure(self.value * factor, self.unit, self.basis, self.formula_version)

    def as_dict(self) -> dict[str, str]:
        return {
            "value": format(self.value.normalize(), "f"),
            "unit": self.unit.value,
            "basis": self.basis.value,
            "formula_version": self.formula_version,
        }


@dataclass(frozen=True, slots=True)
class Normalised:
    """SCU, BWU and H100-equivalents per accelerator-hour; ``None`` where no figure is known."""

    scu: Figure | None
    bwu: Figure | None
    h100e: Figure | None

    @property
    def verified(self) -> bool:
        return any(f is not None and f.basis is Basis.ATTESTED for f in (self.scu, self.bwu))

    def for_count(self, count: int) -> Normalised:
        """The same figures for ``count`` accelerators (a pool's total per hour)."""
        if count < 0:
            raise ValueError("count must not be negative")
        return Normalised(
            scu=self.scu.scaled(count) if self.scu else None,
            bwu=self.bwu.scaled(count) if self.bwu else None,
            h100e=self.h100e.scaled(count) if self.h100e else None,
        )


def _positive(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if not isinstance(value, Decimal):
        raise TypeError("figures are Decimals, never floats")
    if not value.is_finite() or value <= 0:
        return None
    return value


def dense_half_precision_peak(*, bf16_tflops: Decimal | None, fp16_tflops: Decimal | None) -> Decimal | None:
    """The datasheet's dense FP16/BF16 peak: the larger of the two that are known (unknown stays unknown)."""
    known = [v for v in (_positive(bf16_tflops), _positive(fp16_tflops)) if v is not None]
    return max(known) if known else None


def scu_per_hour(tflops: Decimal) -> Decimal:
    """TFLOPS -> SCU per accelerator-hour (PFLOPS): an exact shift of the decimal point."""
    return tflops.scaleb(-3)


def bwu_per_hour(tbps: Decimal) -> Decimal:
    """TB/s -> BWU per accelerator-hour: one TB/s is one BWU."""
    return tbps + Decimal(0)


def ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator, rounded once (ROUND_HALF_UP) to four places."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    return (numerator / denominator).quantize(RATIO_PLACES, rounding=ROUND_HALF_UP)


def h100_equivalent(tflops: Decimal) -> Decimal:
    return ratio(tflops, H100_REFERENCE_TFLOPS)


def measured_to_declared(measured: Decimal, declared: Decimal | None) -> Decimal | None:
    """The attestation ratio; ``None`` when the datasheet does not say (many domestic chips)."""
    declared = _positive(declared)
    return None if declared is None else ratio(measured, declared)


def is_implausible(measured: Decimal, declared: Decimal | None) -> bool:
    """More than 1.5 x the datasheet peak: flagged for staff review, never silently accepted."""
    declared = _positive(declared)
    return declared is not None and measured > declared * MAX_PLAUSIBLE_RATIO


def normalise(
    *,
    datasheet_tflops: Decimal | None,
    datasheet_tbps: Decimal | None,
    attested_tflops: Decimal | None = None,
    attested_tbps: Decimal | None = None,
) -> Normalised:
    """Per-accelerator SCU, BWU and H100e per hour. Each figure takes the attested value when there is one."""
    scu = bwu = h100e = None
    tflops, tflops_basis = _pick(attested_tflops, datasheet_tflops)
    if tflops is not None:
        scu = Figure(scu_per_hour(tflops), Unit.SCU, tflops_basis)
        h100e = Figure(h100_equivalent(tflops), Unit.H100E, tflops_basis)
    tbps, tbps_basis = _pick(attested_tbps, datasheet_tbps)
    if tbps is not None:
        bwu = Figure(bwu_per_hour(tbps), Unit.BWU, tbps_basis)
    return Normalised(scu=scu, bwu=bwu, h100e=h100e)


def _pick(attested: Decimal | None, datasheet: Decimal | None) -> tuple[Decimal | None, Basis]:
    value = _positive(attested)
    if value is not None:
        return value, Basis.ATTESTED
    return _positive(datasheet), Basis.DATASHEET


def to_micro(value: Decimal) -> int:
    """Units x 1e6 as an int (the matching engine's exact representation), rounded half up."""
    return int((value * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
