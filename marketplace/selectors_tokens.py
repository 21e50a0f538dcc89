"""Reads of the token market: served models (public), endpoints, token bids and contracts (tenant-scoped).

A separate module from ``marketplace.selectors`` only to keep parallel work apart; other apps may call it like
the app's selectors. Every tenant read takes the organisation; another tenant's object is a 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import Organization
from marketplace import token_matching
from marketplace.models import (
    EndpointStatus,
    LeaseStatus,
    OrderStatus,
    PoolStatus,
    ServedModel,
    SiteStatus,
    TokenBid,
    TokenContract,
    TokenEndpoint,
)

MICRO = Decimal(1_000_000)


def _get(queryset: QuerySet, public_id: UUID | str) -> object:
    try:
        return queryset.get(public_id=public_id)
    except (queryset.model.DoesNotExist, ValueError, ValidationError):
        raise Http404 from None


def served_model_list() -> QuerySet[ServedModel]:
    return ServedModel.objects.all()


def token_endpoint_list(organization: Organization, *, status: str | None = None) -> QuerySet[TokenEndpoint]:
    endpoints = TokenEndpoint.objects.filter(organization=organization).select_related(
        "pool__site", "pool__accelerator_model", "served_model"
    )
    return endpoints.filter(status=status) if status else endpoints


def token_endpoint_get(organization: Organization, public_id: UUID | str) -> TokenEndpoint:
    return _get(token_endpoint_list(organization), public_id)  # type: ignore[return-value]


def token_bid_list(organization: Organization, *, status: str | None = None) -> QuerySet[TokenBid]:
    bids = TokenBid.objects.filter(organization=organization).select_related("served_model").prefetch_related("hubs")
    return bids.filter(status=status) if status else bids


def token_bid_get(organization: Organization, public_id: UUID | str) -> TokenBid:
    return _get(token_bid_list(organization), public_id)  # type: ignore[return-value]


def token_contract_list(organization: Organization, *, status: str | None = None) -> QuerySet[TokenContract]:
    """Token contracts the organisation bought or sold."""
    contracts = TokenContract.objects.filter(Q(buyer=organization) | Q(provider=organization)).select_related(
        "served_model", "buyer", "provider", "bid", "endpoint__pool__site"
    )
    return contracts.filter(status=status) if status else contracts


def token_contract_get(organization: Organization, public_id: UUID | str) -> TokenContract:
    return _get(token_contract_list(organization).prefetch_related("events"), public_id)  # type: ignore[return-value]


def token_contract_get_as_provider(organization: Organization, public_id: UUID | str) -> TokenContract:
    return _get(token_contract_list(organization).filter(provider=organization), public_id)  # type: ignore[return-value]


def token_contract_facts_for_provider(organization: Organization, public_ids: Iterable[str]) -> QuerySet[TokenContract]:
    """The provider's usable (not cancelled) token contracts among these ids, for metering."""
    return TokenContract.objects.filter(provider=organization, public_id__in=list(public_ids)).exclude(
        status=LeaseStatus.CANCELLED
    )


def token_market_summary(organization: Organization) -> dict[str, int]:
    """Counts for the portal pages' headers."""
    return {
        "open_endpoints": TokenEndpoint.objects.filter(organization=organization, status=EndpointStatus.OPEN).count(),
        "open_bids": TokenBid.objects.filter(organization=organization, status=OrderStatus.OPEN).count(),
        "pending_contracts": token_contract_list(organization, status=LeaseStatus.PENDING).count(),
    }


@dataclass(frozen=True)
class TokenQuote:
    """An open endpoint as a token bid would see it: its blended price for the bid's mix, and why it would not
    match (over a limit, not enough volume left, outside the constraints) or whether it is the one that would."""

    endpoint: TokenEndpoint
    blended: Decimal  # yuan per million tokens of the bid's mix
    within_limits: bool
    has_volume: bool
    meets_constraints: bool
    chosen: bool


def _engine_endpoint(endpoint: TokenEndpoint) -> token_matching.Endpoint:
    pool = endpoint.pool
    return token_matching.Endpoint(
        endpoint_id=str(endpoint.pk),
        model=str(endpoint.served_model_id),
        price_input=int(endpoint.price_input * MICRO),
        price_output=int(endpoint.price_output * MICRO),
        capacity_tokens=endpoint.capacity_monthly_tokens,
        committed_tokens=endpoint.committed_monthly_tokens,
        arrival=int(endpoint.created_at.timestamp() * 1_000_000),
        domestic=pool.accelerator_model.domestic,
        hub=pool.site.hub.code if pool.site.hub else None,
    )


def token_quotes(
    *,
    served_model: ServedModel,
    limit_input: Decimal | None,
    limit_output: Decimal | None,
    monthly_tokens: int,
    input_weight: int,
    output_weight: int,
    domestic_only: bool = False,
    hubs: frozenset[str] | None = None,
    limit: int = 10,
) -> list[TokenQuote]:
    """The open endpoints of a model ranked by blended price for a bid's mix, for the bid form's live panel.
    Public market information: prices, volume left and location, as on the capacity market page."""
    if input_weight + output_weight <= 0 or not (
        0 <= input_weight <= token_matching.MAX_WEIGHT and 0 <= output_weight <= token_matching.MAX_WEIGHT
    ):
        input_weight, output_weight = token_matching.DEFAULT_INPUT_WEIGHT, token_matching.DEFAULT_OUTPUT_WEIGHT
    endpoints = list(
        TokenEndpoint.objects.filter(
            served_model=served_model,
            status=EndpointStatus.OPEN,
            pool__status=PoolStatus.LISTED,
            pool__site__status=SiteStatus.ACTIVE,
        ).select_related("organization", "pool__site__hub", "pool__accelerator_model", "served_model")
    )
    big = 10**15  # "no limit" while the buyer has not typed one
    bid = token_matching.Bid(
        bid_id="preview",
        model=str(served_model.pk),
        limit_input=int(limit_input * MICRO) if limit_input and limit_input > 0 else big,
        limit_output=int(limit_output * MICRO) if limit_output and limit_output > 0 else big,
        monthly_tokens=max(monthly_tokens, 1),
        input_weight=input_weight,
        output_weight=output_weight,
        domestic_only=domestic_only,
        hubs=hubs or None,
    )
    engines = {str(e.pk): _engine_endpoint(e) for e in endpoints}
    trade = token_matching.match_bid(bid, engines.values())
    quotes = []
    for endpoint in endpoints:
        engine = engines[str(endpoint.pk)]
        quotes.append(
            TokenQuote(
                endpoint=endpoint,
                blended=(endpoint.price_input * input_weight + endpoint.price_output * output_weight)
                / (input_weight + output_weight),
                within_limits=engine.price_input <= bid.limit_input and engine.price_output <= bid.limit_output,
                has_volume=bid.monthly_tokens <= engine.remaining,
                meets_constraints=(not domestic_only or engine.domestic) and (not hubs or engine.hub in hubs),
                chosen=trade is not None and trade.endpoint_id == str(endpoint.pk),
            )
        )
    quotes.sort(key=lambda q: (not q.chosen, q.blended, q.endpoint.created_at))
    return quotes[:limit]
