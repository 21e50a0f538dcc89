"""Programme templates reproducing real compute-voucher rules (shared/data/voucher_programs.md).

A template fixes the rules the policy text states; the issuer supplies what it does not (document number where
not public, budget where not published, the validity window of its own round). ``None`` means the text does not
say; the issuer can tighten anything after creating the programme.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.translation import gettext_lazy as _

YUAN = 100  # minor units per yuan (CNY)
WAN = 10_000 * YUAN
YI = 100_000_000 * YUAN


@dataclass(frozen=True)
class ProgramTemplate:
    key: str
    title: object  # lazy translation, for the picker
    name: str
    legal_basis: str
    source: str
    voucher_type: str
    ratio_domestic: Decimal
    ratio_other: Decimal
    settlement_mode: str
    default_budget_minor: int | None = None
    ratio_startup: Decimal | None = None
    ratio_sme: Decimal | None = None
    ratio_model: Decimal | None = None  # model/API usage (product tier); None: the chip-origin ratios
    cap_per_application_minor: int | None = None
    cap_per_firm_year_minor: int | None = None
    eligible_provinces: tuple[str, ...] = ()
    eligible_cities: tuple[str, ...] = ()
    eligible_size_classes: tuple[str, ...] = ()
    eligible_industries: tuple[str, ...] = ()
    restrict_providers: bool = False
    compute_only: bool = True
    stacking_allowed: bool = False
    notes: tuple[str, ...] = field(default=())


PROGRAM_TEMPLATES: dict[str, ProgramTemplate] = {
    t.key: t
    for t in [
        ProgramTemplate(
            key="beijing-compute",
            title=_("Beijing compute voucher (20%, ¥2M per firm per year)"),
            name="北京市人工智能算力券",
            legal_basis="《人工智能算力券实施方案(2023—2025年)》",
            source="北京市经济和信息化局, 2023-10 (voucher_programs.md: Beijing)",
            voucher_type="compute",
            ratio_domestic=Decimal("0.20"),
            ratio_other=Decimal("0.20"),
            cap_per_firm_year_minor=200 * WAN,
            eligible_provinces=("11",),
            eligible_industries=("software", "industry"),
            restrict_providers=True,  # the 算力伙伴 (compute partner) list
            compute_only=True,  # excluding storage, network and security services
            stacking_allowed=False,  # no other municipal compute subsidy for the same work
            settlement_mode="reimburse_buyer",  # apply with the contract, then request payout with invoice
            notes=(
                "≤ 20% of the compute contract per application; one application per contract",
                "contracts signed on or after 2023-09-01 with a term of at most one year",
                "budget not published: set it from the bureau's appropriation",
            ),
        ),
        ProgramTemplate(
            key="shanghai-compute",
            # No "%" in the msgid: gettext tools read "% o" as a placeholder and refuse translations of it.
            title=_("Shanghai compute voucher (30 percent of rent)"),
            name="上海市算力券",
            legal_basis="《进一步扩大人工智能应用的若干措施》",
            source="上海市经济和信息化委员会, 2025-07-28 (voucher_programs.md: Shanghai)",
            voucher_type="compute",
            default_budget_minor=6 * YI,
            ratio_domestic=Decimal("0.30"),
            ratio_other=Decimal("0.30"),
            eligible_provinces=("31",),
            compute_only=True,
            stacking_allowed=False,
            settlement_mode="deduct_at_checkout",
            notes=(
                "early-stage and small firms may also be recommended for the national 智能券 (up to 100% of rent "
                "for one year with the district): a separate programme",
                "settlement not stated in the text: deduct at checkout chosen",
            ),
        ),
        ProgramTemplate(
            key="shanghai-model",
            title=_("Shanghai model voucher (50%, ¥5M cap)"),
            name="上海市模型券",
            legal_basis="《进一步扩大人工智能应用的若干措施》",
            source="上海市经济和信息化委员会, 2025-07-28 (voucher_programs.md: Shanghai)",
            voucher_type="model",
            default_budget_minor=3 * YI,
            ratio_domestic=Decimal("0.50"),
            ratio_other=Decimal("0.50"),
            ratio_model=Decimal("0.50"),  # third-party model APIs or private deployment: up to 50%
            cap_per_application_minor=500 * WAN,
            eligible_provinces=("31",),
            compute_only=False,
            stacking_allowed=False,
            settlement_mode="deduct_at_checkout",
        ),
        ProgramTemplate(
            key="shenzhen-training",
            title=_("Shenzhen training voucher 训力券 (50%, start-ups 60%)"),
            name="深圳市训力券",
            legal_basis="《打造人工智能先锋城市的若干措施》",
            source="深圳市工业和信息化局, 2024-12-18, valid two years (voucher_programs.md: Shenzhen)",
            voucher_type="compute",
            default_budget_minor=5 * YI,
            ratio_domestic=Decimal("0.50"),
            ratio_other=Decimal("0.50"),
            ratio_startup=Decimal("0.60"),
            cap_per_firm_year_minor=1000 * WAN,
            eligible_provinces=("44",),
            eligible_cities=("深圳市",),
            compute_only=True,
            stacking_allowed=False,
            settlement_mode="reimburse_buyer",
            notes=("run by 市科技创新局; for renting compute for large-model training",),
        ),
        ProgramTemplate(
            key="hangzhou-compute",
            title=_("Hangzhou compute voucher (domestic 30%, other 20%, ¥8M per firm per year)"),
            name="杭州市算力券",
            legal_basis="《支持人工智能全产业链高质量发展若干措施》",
            source="杭州市 (voucher_programs.md: Hangzhou)",
            voucher_type="compute",
            default_budget_minor=25_000 * WAN,
            ratio_domestic=Decimal("0.30"),
            ratio_other=Decimal("0.20"),
            ratio_model=Decimal("0.30"),  # MaaS on a filed multimodal foundation model: 30%
            cap_per_firm_year_minor=800 * WAN,
            eligible_provinces=("33",),
            eligible_cities=("杭州市",),
            restrict_providers=True,  # planned 智算中心 and 算力撮合 partners
            compute_only=True,
            stacking_allowed=False,
            settlement_mode="pay_provider",
            notes=("MaaS or agent development on a filed multimodal foundation model: 30%",),
        ),
    ]
}


def template_choices() -> list[tuple[str, object]]:
    return [(t.key, t.title) for t in PROGRAM_TEMPLATES.values()]
