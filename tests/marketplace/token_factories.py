"""Token-market objects for tests (direct model writes: fast, no audit rows)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from accounts.models import Organization
from core.timeutils import month_start, utcnow
from marketplace.models import ServedModel, TokenBid, TokenContract, TokenEndpoint
from tests.marketplace.factories import make_listed_pool


def served_model(name: str = "Qwen3-32B") -> ServedModel:
    """A catalog entry; the catalog is loaded again when a transactional test's flush emptied it."""
    from marketplace.served_models import load

    if not ServedModel.objects.filter(name=name).exists():
        load(ServedModel)
    return ServedModel.objects.get(name=name)


def next_month():
    start = month_start(utcnow())
    return (start + timedelta(days=32)).replace(day=1).date()


def make_endpoint(provider: Organization, throughput: int = 1000, **fields: object) -> TokenEndpoint:
    import uuid

    pool: Any = fields.pop("pool", None) or make_listed_pool(provider, name=f"推理池 {uuid.uuid4().hex[:6]}")
    values: dict[str, object] = {
        "served_model": served_model(),
        "price_input": Decimal("2"),
        "price_output": Decimal("8"),
        "throughput_tokens_per_s": throughput,
    }
    values.update(fields)
    return TokenEndpoint.objects.create(organization=provider, pool=pool, **values)


def make_token_bid(buyer: Organization, **fields: object) -> TokenBid:
    values: dict[str, object] = {
        "served_model": served_model(),
        "limit_input": Decimal("4"),
        "limit_output": Decimal("16"),
        "monthly_tokens": 1_000_000,
        "start_month": next_month(),
        "months": 3,
        "expires_at": utcnow() + timedelta(days=7),
    }
    values.update(fields)
    return TokenBid.objects.create(organization=buyer, **values)


def make_token_contract(provider: Organization, buyer: Organization, **fields: object) -> TokenContract:
    """A pending contract, written directly (no matching); the endpoint's committed volume includes it."""
    endpoint = make_endpoint(provider)
    bid = make_token_bid(buyer, status="filled")
    start = fields.pop("start", None) or month_start(utcnow())
    values: dict[str, object] = {
        "start": start,
        "end": start + timedelta(days=90),  # type: ignore[operator]
        "status": "pending",
        "monthly_tokens": bid.monthly_tokens,
    }
    values.update(fields)
    contract = TokenContract.objects.create(
        bid=bid,
        endpoint=endpoint,
        buyer=buyer,
        provider=provider,
        served_model=endpoint.served_model,
        price_input=endpoint.price_input,
        price_output=endpoint.price_output,
        confirm_by=utcnow() + timedelta(hours=24),
        **values,
    )
    TokenEndpoint.objects.filter(pk=endpoint.pk).update(committed_monthly_tokens=contract.monthly_tokens)
    return contract
