"""The market portal: the market page (filters, units, sort, paging, htmx), the bid form with its live preview,
my bids and my offers with cancel, the order-book depth, and the latency tier in bid placement."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from marketplace import selectors, services
from marketplace.models import Bid, Cluster, Offer, OrderStatus
from tests.marketplace.factories import (
    accelerator,
    make_attestation,
    make_bid,
    make_offer,
    make_pool,
    make_site,
    next_hour,
)

pytestmark = pytest.mark.django_db

ASCEND_910B = "Ascend 910B (SKU not specified; figure as listed by one cloud provider)"


@pytest.fixture
def market(make_org):
    """Three pools: H100 in Ningxia (verified, green), H20 in Shanghai, Ascend 910B in Guizhou; one offer each."""
    west = make_org("provider", name="西部算力")
    east = make_org("provider", name="东部算力")
    nx = make_site(
        west,
        "中卫",
        province="64",
        green_share_pct=Decimal(65),
        pue=Decimal("1.15"),
        hub=Cluster.objects.get(name_zh="中卫数据中心集群").hub,
    )
    gz = make_site(west, "贵安", province="52", green_share_pct=Decimal(45), pue=Decimal("1.20"))
    sh = make_site(east, "临港", province="31", green_share_pct=Decimal(20), pue=Decimal("1.30"))
    h100 = make_pool(nx, "H100 池", accelerator_count=64, status="listed")
    pool = h100
    pool.current_attestation = make_attestation(h100, tflops="900", tbps="3.0")
    pool.verified = True
    pool.save()
    h20 = make_pool(sh, "H20 池", model=accelerator("NVIDIA", "H20"), accelerator_count=32, status="listed")
    ascend = make_pool(gz, "昇腾池", model=accelerator("Huawei", ASCEND_910B), accelerator_count=16, status="listed")
    offers = {
        "h100": make_offer(h100, accelerators=16, ask="18"),  # 20 ¥/SCU-h, 6 ¥/BWU-h
        "h20": make_offer(h20, accelerators=8, ask="6"),  # 40.5 ¥/SCU-h (148 TFLOPS), 1.5 ¥/BWU-h
        "ascend": make_offer(ascend, accelerators=8, ask="7"),
    }
    return {"west": west, "east": east, "offers": offers}


def rows(html: str) -> list[str]:
    return [chunk.split("</tr>")[0] for chunk in html.split('data-testid="market-row"')[1:]]


def test_buyer_sees_every_open_offer_sorted_by_price_in_the_chosen_unit(market, make_org, client_for):
    buyer = make_org("buyer")
    client = client_for(buyer.owner)
    by_hour = rows(client.get("/market/", {"unit": "acc_hour"}).content.decode())
    assert len(by_hour) == 3
    assert "H20" in by_hour[0]
    assert "H100" in by_hour[2]
    scu_page = client.get("/market/", {"unit": "scu_hour"}).content.decode()
    assert '<option value="scu_hour" selected>' in scu_page  # the filter form keeps the choice
    by_scu = rows(scu_page)
    assert "H100" in by_scu[0]  # 18 / 0.9 = 20 ¥/SCU-hour beats the H20's 6 / 0.148
    assert "¥20.00" in by_scu[0]
    by_bwu = rows(client.get("/market/", {"unit": "bwu_hour", "sort": "-price"}).content.decode())
    assert "H100" in by_bwu[0]  # 6 ¥/BWU-hour is the dearest per TB/s


def test_filters_narrow_the_table(market, make_org, client_for):
    client = client_for(make_org("buyer").owner)

    def count(**params):
        return len(rows(client.get("/market/", params).content.decode()))

    assert count(domestic="on") == 1
    assert count(verified="on") == 1
    assert count(hub="nx") == 1
    assert count(min_green="40") == 2
    assert count(max_pue="1.2") == 2
    assert count(vendor="NVIDIA") == 2
    assert count(province="31") == 1
    assert count(model=str(accelerator("NVIDIA", "H20").public_id)) == 1
    assert count(sort="-green", unit="junk", min_green="abc") == 3  # bad values are ignored, not errors


def test_inference_honours_the_latency_tier_and_training_goes_anywhere(market, make_org, client_for):
    client = client_for(make_org("buyer").owner)
    near_shanghai = rows(
        client.get("/market/", {"workload": "inference", "tier": "region", "near": "31"}).content.decode()
    )
    assert len(near_shanghai) == 1
    assert "H20" in near_shanghai[0]
    near = rows(client.get("/market/", {"workload": "inference", "tier": "near", "near": "31"}).content.decode())
    assert len(near) == 2  # Guizhou is within 20 ms of Shanghai; Ningxia is not
    training = rows(client.get("/market/", {"workload": "training", "tier": "region", "near": "31"}).content.decode())
    assert len(training) == 3


def test_closed_offers_and_unlisted_pools_are_not_on_the_market(market, make_org, client_for):
    offers = market["offers"]
    Offer.objects.filter(pk=offers["h100"].pk).update(status=OrderStatus.CANCELLED)
    offers["h20"].pool.status = "suspended"
    offers["h20"].pool.save()
    html = client_for(make_org("buyer").owner).get("/market/").content.decode()
    assert len(rows(html)) == 1
    assert "Ascend 910B" in rows(html)[0]


def test_htmx_gets_the_table_only_and_pages_are_sql_sized(market, make_org, client_for, django_assert_max_num_queries):
    pool = market["offers"]["ascend"].pool
    for hour in range(40):
        make_offer(pool, accelerators=1, ask=str(8 + hour), start=next_hour(2 + hour), hours=2)
    client = client_for(make_org("buyer").owner)
    partial = client.get("/market/", {"unit": "scu_hour", "page": "2"}, HTTP_HX_REQUEST="true")
    html = partial.content.decode()
    assert "<html" not in html
    assert 'data-testid="market-table"' in html
    assert "43" in html.split('data-testid="market-count"')[1][:80]
    assert len(rows(html)) == 18  # 43 offers, 25 a page
    past_the_end = client.get("/market/", {"page": "99"}, HTTP_HX_REQUEST="true").content.decode()
    assert len(rows(past_the_end)) == 18  # the last page
    with django_assert_max_num_queries(12):  # no query per row
        client.get("/market/", {"page": "1"})


def test_providers_see_the_market_issuers_do_not(market, make_org, client_for):
    assert client_for(market["west"].owner).get("/market/").status_code == 200
    assert client_for(make_org("issuer").owner).get("/market/").status_code == 403


def test_the_selector_annotates_prices_in_sql():
    filters = selectors.MarketFilters(unit="scu_hour")
    sql = str(selectors.offer_market_list(filters=filters).query)
    assert "COALESCE" in sql
    assert "GREATEST" in sql
    assert "ORDER BY" in sql


# --- Bids -----------------------------------------------------------------------------------------------


def bid_form(**overrides):
    start = next_hour(2)
    data = {
        "accelerators": "8",
        "hours": "12",
        "earliest_start": start.strftime("%Y-%m-%dT%H:%M"),
        "latest_end": (start + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
        "limit_price": "24",
        "price_unit": "scu_hour",
        "workload": "training",
        "latency_tier": "any",
        "buyer_province": "31",
    }
    data.update(overrides)
    return data


@pytest.fixture
def utc_portal(settings):
    settings.PORTAL_TIME_ZONE = "UTC"


def test_bid_preview_converts_the_limit_and_counts_matching_offers(market, make_org, client_for):
    client = client_for(make_org("buyer").owner)
    html = client.post("/market/bids/preview/", bid_form()).content.decode()
    assert 'data-testid="price-conversions"' in html
    assert "¥24.00" in html  # the limit itself in its unit
    assert 'data-testid="match-count"' in html
    count = html.split('data-testid="match-count"><strong>')[1].split("<")[0]
    assert count == "1"  # the H100 at 20 ¥/SCU-hour; the Ascend's 7 / 0.28 = 25 is above the limit
    none = client.post("/market/bids/preview/", bid_form(limit_price="5")).content.decode()
    assert 'data-testid="no-match"' in none
    errors = client.post("/market/bids/preview/", bid_form(accelerators="-1")).content.decode()
    assert 'id="fb-accelerators"' in errors
    assert 'data-state="invalid"' in errors


def test_buyer_places_a_bid_that_matches_and_sees_it_in_my_bids(market, make_org, client_for, utc_portal):
    buyer = make_org("buyer")
    client = client_for(buyer.owner)
    assert client.get("/market/bids/new/").status_code == 200
    response = client.post("/market/bids/new/", bid_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    bid = Bid.objects.get(organization=buyer)
    assert bid.filled_accelerators == 8  # matched against the H100 offer
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="bid-row"' in page
    assert "8 / 8" in page


def test_unsatisfiable_constraints_are_refused_clearly(market, make_org, client_for, utc_portal):
    client = client_for(make_org("buyer").owner)
    response = client.post("/market/bids/new/", bid_form(min_green_share_pct="99"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="bid-form-error"' in html
    assert not Bid.objects.exists()
    too_many = client.post("/market/bids/new/", bid_form(accelerators="500")).content.decode()
    assert 'data-field-error="accelerators"' in too_many


def test_inference_bid_with_a_latency_tier_becomes_a_province_set(market, make_org):
    buyer = make_org("buyer")
    start = next_hour(2)
    data = services.BidInput(
        accelerators=4,
        hours=4,
        earliest_start=start,
        latest_end=start + timedelta(hours=8),
        limit_price=Decimal("30"),
        workload="inference",
        latency_tier="region",
        buyer_province="31",
    )
    bid = services.bid_create(organization=buyer, actor=buyer.owner, data=data)
    assert "31" in bid.provinces
    assert "64" not in bid.provinces
    assert bid.leases.get().pool.site.province == "31"  # the Shanghai H20, not the cheaper western pools
    training = services.bid_create(
        organization=buyer,
        actor=buyer.owner,
        data=services.BidInput(
            accelerators=1,
            hours=1,
            earliest_start=start,
            latest_end=start + timedelta(hours=2),
            limit_price=Decimal("30"),
            workload="training",
            latency_tier="region",
            buyer_province="31",
        ),
    )
    assert training.provinces == []


def test_latency_tier_errors(market, make_org):
    from core.errors import ValidationFailed

    buyer = make_org("buyer")
    start = next_hour(2)
    base = {
        "accelerators": 1,
        "hours": 1,
        "earliest_start": start,
        "latest_end": start + timedelta(hours=2),
        "limit_price": Decimal("30"),
        "workload": "inference",
    }
    with pytest.raises(ValidationFailed) as no_province:
        services.bid_create(organization=buyer, actor=buyer.owner, data=services.BidInput(**base, latency_tier="near"))
    assert no_province.value.errors[0].field == "buyer_province"
    with pytest.raises(ValidationFailed) as outside:
        services.bid_create(
            organization=buyer,
            actor=buyer.owner,
            data=services.BidInput(**base, latency_tier="region", buyer_province="31", provinces=("64",)),
        )
    assert outside.value.errors[0].field == "latency_tier"
    with pytest.raises(ValidationFailed):
        services.bid_create(organization=buyer, actor=buyer.owner, data=services.BidInput(**base, latency_tier="x"))


def test_my_bids_cancel_and_another_tenants_bid_is_404(market, make_org, client_for):
    buyer = make_org("buyer")
    bid = make_bid(buyer, accelerators=2, limit="1")
    client = client_for(buyer.owner)
    assert 'data-testid="cancel-bid"' in client.get("/market/bids/").content.decode()
    assert client.post(f"/market/bids/{bid.public_id}/cancel/").status_code == 302
    bid.refresh_from_db()
    assert bid.status == OrderStatus.CANCELLED
    assert 'data-testid="cancel-bid"' not in client.get("/market/bids/").content.decode()
    other = client_for(make_org("buyer").owner)
    assert other.post(f"/market/bids/{bid.public_id}/cancel/").status_code == 404


def test_my_offers_show_sold_and_withdraw(market, client_for):
    west = market["west"]
    client = client_for(west.owner)
    html = client.get("/market/offers/").content.decode()
    assert html.count('data-testid="offer-row"') == 2
    offer = market["offers"]["h100"]
    assert client.post(f"/market/offers/{offer.public_id}/cancel/").status_code == 302
    offer.refresh_from_db()
    assert offer.status == OrderStatus.CANCELLED
    assert client_for(market["east"].owner).post(f"/market/offers/{offer.public_id}/cancel/").status_code == 404


def test_depth_chart_cumulates_bids_and_asks(market, make_org, client_for):
    buyer = make_org("buyer")
    make_bid(buyer, accelerators=3, limit="5")
    make_bid(buyer, accelerators=2, limit="4")
    h20 = accelerator("NVIDIA", "H20")
    depth = selectors.market_depth(accelerator_model=h20, unit="acc_hour")
    assert [(level.price, level.cumulative) for level in depth["bids"]] == [
        (Decimal("5.00"), 3),
        (Decimal("4.00"), 5),
    ]
    assert [(level.price, level.cumulative) for level in depth["asks"]] == [(Decimal("6.00"), 8)]
    html = client_for(buyer.owner).get("/market/depth/", {"model": str(h20.public_id), "unit": "bwu_hour"})
    assert html.status_code == 200
    assert 'data-testid="depth-chart"' in html.content.decode()


def test_demo_market_is_live_matched_and_idempotent():
    import time

    from accounts import demo as accounts_demo
    from marketplace import demo
    from marketplace.models import Lease

    accounts_demo.seed()
    began = time.perf_counter()
    demo.seed()
    elapsed = time.perf_counter() - began
    open_offers = Offer.objects.filter(status=OrderStatus.OPEN)
    assert open_offers.count() >= 200
    assert open_offers.values("pool__site__hub").distinct().count() >= 8
    assert open_offers.values("pool__accelerator_model__vendor").distinct().count() >= 8
    assert Bid.objects.filter(status=OrderStatus.OPEN).count() >= 20  # resting bids for the order book
    assert Lease.objects.filter(status="active").exists()  # matched and confirmed
    assert Lease.objects.filter(status="pending").exists()
    # The eastern buyer's green, domestic training bid went west.
    green_bid = Bid.objects.filter(domestic_only=True, min_green_share_pct=50).get()
    assert green_bid.leases.get().pool.site.hub.side == "west"
    counts = (Offer.objects.count(), Bid.objects.count(), Lease.objects.count())
    demo.seed()
    assert (Offer.objects.count(), Bid.objects.count(), Lease.objects.count()) == counts
    assert elapsed < 60  # ~10 s on a quiet 2-core machine


# --- What is left of an offer ---------------------------------------------------------------------------


def _lease_on(offer, buyer, accelerators, start, hours, status="pending"):
    from marketplace.models import Lease

    return Lease.objects.create(
        bid=make_bid(buyer, accelerators=accelerators, earliest_start=start, hours=hours),
        offer=offer,
        pool=offer.pool,
        buyer=buyer,
        provider=offer.organization,
        accelerators=accelerators,
        start=start,
        end=start + timedelta(hours=hours),
        price=offer.ask,
        confirm_by=start,
        status=status,
    )


def test_the_market_shows_and_filters_on_the_accelerators_left_unleased(
    market, make_org, client_for, django_assert_max_num_queries
):
    buyer = make_org("buyer")
    h100 = market["offers"]["h100"]  # 16 accelerators for 24 h
    start = h100.start
    _lease_on(h100, buyer, 6, start, 4)  # back to back: the peak is 6 + 4, not the sum of all leases
    _lease_on(h100, buyer, 4, start, 8)
    _lease_on(h100, buyer, 6, start + timedelta(hours=4), 4, status="active")
    _lease_on(h100, buyer, 16, start, 24, status="cancelled")  # a rejected lease leaves nothing sold
    client = client_for(buyer.owner)

    html = client.get("/market/", {"sort": "-price"}).content.decode()
    h100_row = next(r for r in rows(html) if "H100" in r)
    assert 'data-remaining="6"' in h100_row  # 16 - (6 + 4)
    assert 'data-offered="16"' in h100_row  # "of 16" beside it
    h20_row = next(r for r in rows(html) if "H20" in r)
    assert 'data-remaining="8"' in h20_row  # nothing sold: no "of"
    assert "data-offered" not in h20_row

    def shown(**params):
        return [r.split("</td>")[0] for r in rows(client.get("/market/", params).content.decode())]

    assert len(shown(min_free="6")) == 3
    assert len(shown(min_free="7")) == 2  # the H100 offer is 16 big but has only 6 left
    assert all("H100" not in r for r in shown(min_free="7"))
    with django_assert_max_num_queries(12):
        client.get("/market/", {"min_free": "7", "unit": "scu_hour"})

    filters = selectors.MarketFilters(min_accelerators=7)
    assert h100.pk not in set(selectors.offer_market_list(filters=filters).values_list("id", flat=True))


def test_the_depth_chart_counts_what_is_left(market, make_org):
    buyer = make_org("buyer")
    h100 = market["offers"]["h100"]
    _lease_on(h100, buyer, 10, h100.start, 24)
    depth = selectors.market_depth(accelerator_model=h100.pool.accelerator_model, unit="acc_hour")
    assert [level.accelerators for level in depth["asks"]] == [6]


def test_the_phone_summary_bar_follows_the_live_preview(market, make_org, client_for):
    """Below lg the live panel is under the long form: a compact bar pinned to the bottom of the screen carries
    the count and the cheapest match, swapped out of band by every preview, with its own submit button."""
    client = client_for(make_org("buyer").owner)
    page = client.get("/market/bids/new/").content.decode()
    bar = page.split('<div id="bid-summary"')[1][:1500]
    assert "fixed-bottom d-lg-none" in bar[:80]
    assert 'form="bid-form"' in bar  # it submits the form from anywhere on the page
    assert "hx-swap-oob" not in bar

    html = client.post("/market/bids/preview/", bid_form()).content.decode()
    summary = html.split('<div id="bid-summary"')[1]
    assert 'hx-swap-oob="true"' in summary[:200]
    assert 'data-testid="bid-summary-count"' in summary
    assert "¥20.00" in summary  # the H100's price per SCU-hour, the cheapest match
    none = client.post("/market/bids/preview/", bid_form(limit_price="5")).content.decode()
    assert 'data-testid="bid-summary-none"' in none.split('<div id="bid-summary"')[1]
