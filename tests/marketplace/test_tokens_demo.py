"""The token demo: endpoints on the demo pools, matched, confirmed and resting token bids; idempotent."""

from __future__ import annotations

import pytest

from marketplace.models import TokenBid, TokenContract, TokenEndpoint
from tests.marketplace.token_factories import served_model

pytestmark = pytest.mark.django_db


def test_seed_opens_endpoints_matches_some_bids_and_is_idempotent():
    from accounts import demo as accounts_demo
    from marketplace import demo, demo_tokens

    served_model()
    accounts_demo.seed()
    demo.seed()
    demo_tokens.seed()
    counts = (TokenEndpoint.objects.count(), TokenBid.objects.count(), TokenContract.objects.count())
    demo_tokens.seed()
    assert (TokenEndpoint.objects.count(), TokenBid.objects.count(), TokenContract.objects.count()) == counts
    assert TokenEndpoint.objects.count() == len(demo_tokens.ENDPOINTS)
    assert TokenBid.objects.filter(status="open").count() == 2  # below every ask; domestic Kimi-K2: none yet
    assert set(TokenContract.objects.values_list("status", flat=True)) == {"active", "pending"}
    # The Qwen3-32B bid took the cheaper domestic endpoint (blended 2.625 < 2.8), at its prices.
    qwen = TokenContract.objects.get(served_model__name="Qwen3-32B")
    assert (qwen.endpoint.pool.name, str(qwen.price_input), str(qwen.price_output)) == (
        "沐曦 C550 池",
        "1.5000000000",
        "6.0000000000",
    )
    for endpoint in TokenEndpoint.objects.all():
        assert endpoint.committed_monthly_tokens <= endpoint.capacity_monthly_tokens
