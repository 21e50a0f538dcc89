"""The token market on PostgreSQL: endpoints and token bids through the services, matching into pending token
contracts, confirm / reject / expiry, bad input, the capacity invariant (CHECK + conditional UPDATE) and a race."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connections, transaction

from core.audit import AuditLog
from core.errors import ApplicationError, ValidationFailed
from core.models import OutboxMessage
from core.timeutils import month_start, utcnow
from marketplace import services, tasks
from marketplace.models import (
    SECONDS_PER_TOKEN_MONTH,
    ServedModel,
    TokenBid,
    TokenContract,
    TokenContractEvent,
    TokenEndpoint,
)
from tests.marketplace.factories import accelerator, make_listed_pool, make_pool, make_site
from tests.marketplace.token_factories import (
    make_endpoint,
    make_token_contract,
    next_month,
    served_model,
)


def endpoint_input(pool, **overrides) -> services.TokenEndpointInput:
    values: dict = {
        "pool_id": pool.public_id,
        "served_model": served_model().public_id,
        "price_input": Decimal("2"),
        "price_output": Decimal("8"),
        "throughput_tokens_per_s": 1000,
    }
    values.update(overrides)
    return services.TokenEndpointInput(**values)


def bid_input(**overrides) -> services.TokenBidInput:
    values: dict = {
        "served_model": served_model().public_id,
        "limit_input": Decimal("4"),
        "limit_output": Decimal("16"),
        "monthly_tokens": 500_000_000,
        "start_month": next_month(),
        "months": 3,
    }
    values.update(overrides)
    return services.TokenBidInput(**values)


def codes(excinfo) -> set[str]:
    return {e.code for e in excinfo.value.errors}


@pytest.fixture
def buyer(make_org):
    return make_org("buyer")


@pytest.fixture
def provider(make_org):
    return make_org("provider")


def test_the_catalog_is_loaded_from_the_csv_with_sources(db):
    served_model()  # the data migration loaded it; a transactional test's flush may have emptied it since
    names = set(ServedModel.objects.values_list("name", flat=True))
    assert {"Qwen3-32B", "Qwen3-235B-A22B", "DeepSeek-V3", "DeepSeek-R1", "GLM-4.5", "Kimi-K2-Instruct"} <= names
    assert all(m.source_url.startswith("https://huggingface.co/") for m in ServedModel.objects.all())
    v3 = ServedModel.objects.get(name="DeepSeek-V3")
    assert (v3.parameters_b, v3.active_parameters_b) == (Decimal(671), Decimal(37))


@pytest.mark.django_db
def test_a_bid_matches_the_cheapest_blended_endpoint_into_a_pending_contract(provider, buyer):
    pool = make_listed_pool(provider, count=8)
    cheap_input = services.token_endpoint_create(
        organization=provider,
        actor=None,
        data=endpoint_input(pool, price_input=Decimal("1"), price_output=Decimal("15")),
    )
    balanced = services.token_endpoint_create(organization=provider, actor=None, data=endpoint_input(pool))
    assert cheap_input.status == balanced.status == "open"

    bid = services.token_bid_create(organization=buyer, actor=None, data=bid_input())
    assert bid.status == "filled"
    contract = TokenContract.objects.get(bid=bid)
    # 3:1 blended: balanced (3 x 2 + 8) / 4 = 3.5 beats cheap_input (3 x 1 + 15) / 4 = 4.5; the trade is at the
    # resting endpoint's prices, not the bid's limits.
    assert contract.endpoint == balanced
    assert (contract.price_input, contract.price_output) == (Decimal(2), Decimal(8))
    assert (contract.buyer, contract.provider, contract.status) == (buyer, provider, "pending")
    first = next_month()
    assert contract.start == datetime(first.year, first.month, 1, tzinfo=UTC)
    assert (contract.end.day, contract.end.hour) == (1, 0)
    assert round((contract.end - contract.start).days / 30) == 3  # three whole months
    balanced.refresh_from_db()
    assert balanced.committed_monthly_tokens == 500_000_000
    assert TokenContractEvent.objects.filter(contract=contract, to_status="pending").exists()
    assert AuditLog.objects.filter(action="token_contract.created").count() == 1
    assert OutboxMessage.objects.filter(task_name="marketplace.tasks.token_contract_notify").count() == 1


@pytest.mark.django_db
def test_an_endpoint_arriving_fills_resting_bids_at_their_limits(provider, buyer):
    pool = make_listed_pool(provider)  # supply exists (else the bids could never be served), no endpoint yet
    low = services.token_bid_create(organization=buyer, actor=None, data=bid_input(limit_input=Decimal("3")))
    high = services.token_bid_create(organization=buyer, actor=None, data=bid_input(limit_input=Decimal("5")))
    assert low.status == high.status == "open"  # nothing to match yet: they rest
    # Capacity for one bid only: the higher blended limit wins, at its own limits.
    throughput = -(-500_000_000 // SECONDS_PER_TOKEN_MONTH)
    endpoint = services.token_endpoint_create(
        organization=provider,
        actor=None,
        data=endpoint_input(pool, throughput_tokens_per_s=throughput),
    )
    contract = TokenContract.objects.get()
    assert contract.bid == high
    assert (contract.price_input, contract.price_output) == (Decimal(5), Decimal(16))
    assert endpoint.committed_monthly_tokens == 500_000_000
    low.refresh_from_db()
    assert low.status == "open"


@pytest.mark.django_db
def test_limits_other_models_and_constraints_are_never_traded_through(provider, buyer):
    pool = make_listed_pool(provider)
    services.token_endpoint_create(organization=provider, actor=None, data=endpoint_input(pool))
    above = services.token_bid_create(organization=buyer, actor=None, data=bid_input(limit_output=Decimal("7.99")))
    other = services.token_bid_create(
        organization=buyer, actor=None, data=bid_input(served_model=served_model("DeepSeek-V3").public_id)
    )
    assert above.status == other.status == "open"
    assert not TokenContract.objects.exists()


@pytest.mark.django_db
def test_bad_input_is_refused_field_by_field_and_nothing_is_saved(provider, buyer, make_org):
    foreign_pool = make_listed_pool(make_org("provider"))
    draft_pool = make_pool(make_site(provider), name="草稿")  # a draft: not listed
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_endpoint_create(
            organization=provider,
            actor=None,
            data=endpoint_input(
                foreign_pool,
                served_model="GPT-9",
                price_input=Decimal(0),
                price_output=Decimal(-1),
                throughput_tokens_per_s=0,
                currency="USD",
            ),
        )
    assert codes(excinfo) == {
        "unknown_pool",
        "unknown_model",
        "price_not_positive",
        "throughput_not_positive",
        "unknown_currency",
    }
    fields = {e.field for e in excinfo.value.errors}
    assert fields == {"pool", "served_model", "price_input", "price_output", "throughput_tokens_per_s", "currency"}
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_endpoint_create(organization=provider, actor=None, data=endpoint_input(draft_pool))
    assert codes(excinfo) == {"pool_not_listed"}
    with pytest.raises(ApplicationError):
        services.token_endpoint_create(organization=buyer, actor=None, data=endpoint_input(draft_pool))

    past = (month_start(utcnow()) - timedelta(days=1)).replace(day=1).date()
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_bid_create(
            organization=buyer,
            actor=None,
            data=bid_input(
                served_model=None,
                limit_input=None,
                limit_output=Decimal("0.0000001"),
                monthly_tokens=0,
                start_month=past,
                months=0,
                input_weight=0,
                output_weight=0,
                hubs=("XX",),
                expires_at=utcnow() - timedelta(minutes=1),
            ),
        )
    assert codes(excinfo) == {
        "required",
        "price_precision",
        "volume_not_positive",
        "month_in_past",
        "months_range",
        "weights_zero",
        "unknown_hub",
        "expiry_in_past",
    }
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_bid_create(
            organization=buyer, actor=None, data=bid_input(start_month=next_month().replace(day=15))
        )
    assert codes(excinfo) == {"not_first_of_month"}
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_bid_create(
            organization=buyer, actor=None, data=bid_input(expires_at=utcnow() + timedelta(days=400), months=1)
        )
    assert codes(excinfo) == {"expiry_after_term"}
    with pytest.raises(ApplicationError):
        services.token_bid_create(organization=provider, actor=None, data=bid_input())
    assert not TokenEndpoint.objects.exists()
    assert not TokenBid.objects.exists()


@pytest.mark.django_db
def test_constraints_nothing_could_satisfy_are_refused(provider, buyer):
    make_listed_pool(provider)  # an H100 (not domestic) at a site outside the hubs
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_bid_create(organization=buyer, actor=None, data=bid_input(domestic_only=True))
    assert codes(excinfo) == {"unsatisfiable"}
    with pytest.raises(ValidationFailed) as excinfo:
        services.token_bid_create(organization=buyer, actor=None, data=bid_input(hubs=("gz",)))
    assert codes(excinfo) == {"unsatisfiable"}
    assert not TokenBid.objects.exists()


@pytest.mark.django_db
def test_a_domestic_only_bid_skips_a_cheaper_foreign_endpoint(provider, buyer):
    foreign = make_listed_pool(provider, name="H100")
    ascend = make_listed_pool(provider, name="昇腾", model=accelerator("Huawei", "Ascend 910C"))
    services.token_endpoint_create(organization=provider, actor=None, data=endpoint_input(foreign))
    domestic = services.token_endpoint_create(
        organization=provider, actor=None, data=endpoint_input(ascend, price_input=Decimal("3"))
    )
    bid = services.token_bid_create(organization=buyer, actor=None, data=bid_input(domestic_only=True))
    assert TokenContract.objects.get(bid=bid).endpoint == domestic


@pytest.mark.django_db
def test_confirm_reject_and_the_deadline(provider, buyer, make_org):
    endpoint = services.token_endpoint_create(
        organization=provider, actor=None, data=endpoint_input(make_listed_pool(provider))
    )
    first = services.token_bid_create(organization=buyer, actor=None, data=bid_input())
    second = services.token_bid_create(organization=buyer, actor=None, data=bid_input())
    a, b = TokenContract.objects.get(bid=first), TokenContract.objects.get(bid=second)
    endpoint.refresh_from_db()
    assert endpoint.committed_monthly_tokens == 1_000_000_000

    with pytest.raises(ApplicationError) as error:
        services.token_contract_confirm(organization=make_org("provider"), actor=None, contract=a)
    assert error.value.status_code == 404
    with pytest.raises(ApplicationError):
        services.token_contract_confirm(organization=buyer, actor=None, contract=a)

    assert services.token_contract_confirm(organization=provider, actor=None, contract=a).status == "active"
    rejected = services.token_contract_reject(organization=provider, actor=None, contract=b, note="维护窗口")
    assert rejected.status == "cancelled"
    endpoint.refresh_from_db()
    second.refresh_from_db()
    assert endpoint.committed_monthly_tokens == 500_000_000  # the rejected volume is back
    assert second.status == "open"  # the bid rests again
    assert [e.to_status for e in rejected.events.all()] == ["pending", "cancelled"]
    with pytest.raises(ApplicationError) as error:
        services.token_contract_confirm(organization=provider, actor=None, contract=b)
    assert error.value.code == "not_pending"

    late = make_token_contract(provider, buyer)
    with pytest.raises(ApplicationError) as error:
        services.token_contract_confirm(
            organization=provider, actor=None, contract=late, now=late.confirm_by + timedelta(seconds=1)
        )
    assert error.value.code == "confirmation_expired"


@pytest.mark.django_db
def test_the_expiry_tasks(provider, buyer):
    late = make_token_contract(provider, buyer)
    TokenContract.objects.filter(pk=late.pk).update(confirm_by=utcnow() - timedelta(minutes=1))
    assert tasks.token_contract_expire_unconfirmed() == 1
    assert tasks.token_contract_expire_unconfirmed() == 0
    late.refresh_from_db()
    late.endpoint.refresh_from_db()
    late.bid.refresh_from_db()
    assert late.status == "cancelled"
    assert late.endpoint.committed_monthly_tokens == 0
    assert late.bid.status == "open"

    TokenBid.objects.filter(pk=late.bid.pk).update(expires_at=utcnow() - timedelta(seconds=1))
    done = make_token_contract(provider, buyer, status="active", start=month_start(utcnow()) - timedelta(days=62))
    TokenContract.objects.filter(pk=done.pk).update(end=month_start(utcnow()))
    assert tasks.token_market_expire_due() == 2  # one bid expired, one contract completed
    assert tasks.token_market_expire_due() == 0
    late.bid.refresh_from_db()
    done.refresh_from_db()
    done.endpoint.refresh_from_db()
    assert (late.bid.status, done.status, done.endpoint.committed_monthly_tokens) == ("expired", "completed", 0)


@pytest.mark.django_db
def test_pause_resume_close(provider, buyer):
    endpoint = services.token_endpoint_create(
        organization=provider, actor=None, data=endpoint_input(make_listed_pool(provider))
    )
    services.token_endpoint_pause(organization=provider, actor=None, endpoint=endpoint)
    bid = services.token_bid_create(organization=buyer, actor=None, data=bid_input())
    assert bid.status == "open"  # a paused endpoint does not sell
    resumed = services.token_endpoint_resume(organization=provider, actor=None, endpoint=endpoint)
    assert resumed.committed_monthly_tokens == 500_000_000  # resuming matched the resting bid
    closed = services.token_endpoint_close(organization=provider, actor=None, endpoint=endpoint)
    assert closed.status == "closed"
    with pytest.raises(ApplicationError) as error:
        services.token_endpoint_resume(organization=provider, actor=None, endpoint=endpoint)
    assert error.value.status_code == 409
    bid.refresh_from_db()
    cancelled = services.token_bid_create(organization=buyer, actor=None, data=bid_input())
    assert services.token_bid_cancel(organization=buyer, actor=None, bid=cancelled).status == "cancelled"
    with pytest.raises(ApplicationError):
        services.token_bid_cancel(organization=buyer, actor=None, bid=bid)  # filled: not open


@pytest.mark.django_db
def test_the_database_refuses_committing_beyond_capacity(provider):
    endpoint = make_endpoint(provider, throughput=1)
    capacity = SECONDS_PER_TOKEN_MONTH
    with pytest.raises(IntegrityError, match="token_endpoint_within_capacity"), transaction.atomic():
        TokenEndpoint.objects.filter(pk=endpoint.pk).update(committed_monthly_tokens=capacity + 1)
    with transaction.atomic():
        services.token_endpoint_commit(endpoint_id=endpoint.pk, monthly_tokens=capacity)
    with pytest.raises(ApplicationError) as error, transaction.atomic():
        services.token_endpoint_commit(endpoint_id=endpoint.pk, monthly_tokens=1)
    assert error.value.code == "capacity_conflict"
    endpoint.refresh_from_db()
    assert endpoint.committed_monthly_tokens == capacity


@pytest.mark.django_db(transaction=True)
def test_racing_50_token_bids_against_capacity_for_10_makes_exactly_10_contracts(make_org):
    provider = make_org("provider")
    volume = 100 * SECONDS_PER_TOKEN_MONTH  # 100 tokens/s for a month
    endpoint = services.token_endpoint_create(
        organization=provider,
        actor=None,
        data=endpoint_input(make_listed_pool(provider), throughput_tokens_per_s=1000),  # room for 10 bids
    )
    buyers = [make_org("buyer") for _ in range(10)]
    data = bid_input(monthly_tokens=volume)
    barrier = threading.Barrier(50)
    connections_free = threading.Semaphore(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def place(index: int) -> None:
        try:
            barrier.wait()
            with connections_free:
                try:
                    bid = services.token_bid_create(organization=buyers[index % 10], actor=None, data=data)
                finally:
                    connections.close_all()
            with lock:
                outcomes.append(bid.status)
        except Exception as error:
            with lock:
                outcomes.append(repr(error))

    threads = [threading.Thread(target=place, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(set(outcomes)) == ["filled", "open"], outcomes[:5]
    assert outcomes.count("filled") == 10
    assert TokenContract.objects.count() == 10
    endpoint.refresh_from_db()
    assert endpoint.committed_monthly_tokens == endpoint.capacity_monthly_tokens == 10 * volume


@pytest.mark.django_db(transaction=True)
def test_the_conditional_update_alone_holds_under_concurrency(make_org):
    """Without the model lock: 30 threads commit volume to one endpoint with room for 10; exactly 10 succeed."""
    provider = make_org("provider")
    endpoint = make_endpoint(provider, throughput=10)
    barrier = threading.Barrier(30)
    connections_free = threading.Semaphore(20)
    results: list[bool] = []
    lock = threading.Lock()

    def commit() -> None:
        barrier.wait()
        with connections_free:
            try:
                with transaction.atomic():
                    services.token_endpoint_commit(endpoint_id=endpoint.pk, monthly_tokens=SECONDS_PER_TOKEN_MONTH)
                ok = True
            except ApplicationError:
                ok = False
            finally:
                connections.close_all()
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=commit) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 10
    endpoint.refresh_from_db()
    assert endpoint.committed_monthly_tokens == 10 * SECONDS_PER_TOKEN_MONTH
