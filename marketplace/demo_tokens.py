"""The demo world, token part: model endpoints on the demo providers' pools, buyers' token bids (some matched into
contracts, some confirmed, some resting). Idempotent. Runs after ``marketplace.demo`` (it needs the pools).

Prices are in yuan per million tokens, in the range of Chinese model APIs' list prices (input 1.5-4, output 6-16).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import transaction

from accounts.models import Organization, Role, User
from core.timeutils import month_start, utcnow
from marketplace import services
from marketplace.models import EndpointStatus, Pool, ServedModel, TokenBid, TokenContract, TokenEndpoint


@dataclass(frozen=True)
class DemoEndpoint:
    pool: str
    model: str
    price_input: str
    price_output: str
    throughput: int  # tokens/s


@dataclass(frozen=True)
class DemoTokenBid:
    buyer: str
    model: str
    limit_input: str
    limit_output: str
    monthly_millions: int
    months: int
    domestic_only: bool = False
    confirm: bool = False  # the provider confirms the contract the bid matches


ENDPOINTS = [
    DemoEndpoint("B栋 昇腾 910B", "DeepSeek-V3", "1.8", "7.2", 20_000),
    DemoEndpoint("H20 推理池", "DeepSeek-R1", "3.6", "14.4", 15_000),
    DemoEndpoint("H20 推理池", "Qwen3-235B-A22B", "1.8", "7", 12_000),
    DemoEndpoint("MI300X 大显存池", "Kimi-K2-Instruct", "3.8", "15", 8_000),
    DemoEndpoint("L40S 推理池", "Qwen3-32B", "1.6", "6.4", 10_000),
    DemoEndpoint("昇腾 910C 超节点", "GLM-4.5", "1.9", "7.6", 10_000),
    DemoEndpoint("沐曦 C550 池", "Qwen3-32B", "1.5", "6", 6_000),
]

TOKEN_BIDS = [
    DemoTokenBid("杭州智造精密机械有限公司", "Qwen3-32B", "2", "8", 800, 6, confirm=True),
    DemoTokenBid("深圳微视智能科技有限公司", "DeepSeek-V3", "2", "8", 3_000, 3),
    DemoTokenBid("成都天府人工智能研究院有限公司", "GLM-4.5", "2.5", "10", 1_500, 12, confirm=True),
    DemoTokenBid("成都天府人工智能研究院有限公司", "DeepSeek-R1", "3", "12", 600, 3),  # below every ask: rests
    DemoTokenBid("北京灵巧机器人科技有限公司", "Kimi-K2-Instruct", "4", "16", 400, 6, domestic_only=True),  # rests
]


def _owner(organization: Organization) -> User:
    membership = organization.memberships.filter(role=Role.OWNER).select_related("user").first()
    assert membership is not None, f"{organization} has no owner"
    return membership.user


def _next_month():
    return (month_start(utcnow()) + timedelta(days=32)).replace(day=1).date()


def seed() -> None:
    with transaction.atomic():
        for spec in ENDPOINTS:
            pool = Pool.objects.select_related("organization").filter(name=spec.pool).first()
            model = ServedModel.objects.filter(name=spec.model).first()
            if pool is None or model is None:
                continue  # the supply demo or the catalog changed: nothing to demo
            if (
                TokenEndpoint.objects.filter(pool=pool, served_model=model)
                .exclude(status=EndpointStatus.CLOSED)
                .exists()
            ):
                continue
            services.token_endpoint_create(
                organization=pool.organization,
                actor=_owner(pool.organization),
                data=services.TokenEndpointInput(
                    pool_id=pool.public_id,
                    served_model=model.public_id,
                    price_input=Decimal(spec.price_input),
                    price_output=Decimal(spec.price_output),
                    throughput_tokens_per_s=spec.throughput,
                ),
            )
        for bid_spec in TOKEN_BIDS:
            buyer = Organization.objects.filter(name=bid_spec.buyer).first()
            model = ServedModel.objects.filter(name=bid_spec.model).first()
            volume = bid_spec.monthly_millions * 1_000_000
            if buyer is None or model is None:
                continue
            if TokenBid.objects.filter(organization=buyer, served_model=model, monthly_tokens=volume).exists():
                continue
            bid = services.token_bid_create(
                organization=buyer,
                actor=_owner(buyer),
                data=services.TokenBidInput(
                    served_model=model.public_id,
                    limit_input=Decimal(bid_spec.limit_input),
                    limit_output=Decimal(bid_spec.limit_output),
                    monthly_tokens=volume,
                    start_month=_next_month(),
                    months=bid_spec.months,
                    domestic_only=bid_spec.domestic_only,
                    expires_at=utcnow() + timedelta(days=14),
                ),
            )
            contract = TokenContract.objects.select_related("provider").filter(bid=bid).first()
            if bid_spec.confirm and contract is not None:
                services.token_contract_confirm(
                    organization=contract.provider, actor=_owner(contract.provider), contract=contract
                )
