"""The only module that talks to Stripe (DESIGN.md §4.5).

Every function takes keyword-only arguments and returns small frozen dataclasses, never stripe objects, so
that services, tests and the reconciliation job depend on this module's shapes only.

Configuration (config/settings.py): ``STRIPE_API_KEY``, ``STRIPE_API_BASE`` (empty in production: the real
Stripe; ``http://127.0.0.1:PORT`` for devtools/stripe_server.py, which is localstripe plus a fake of the
Connect endpoints), ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_TIMEOUT_SECONDS``, ``STRIPE_MAX_NETWORK_RETRIES``.

Retries: the library retries network errors, 409 and 5xx up to ``STRIPE_MAX_NETWORK_RETRIES`` times. That is
safe only because every POST here carries the caller's idempotency key: Stripe replays the first answer to a
repeated key, so a retried create can never charge, refund or transfer twice. Callers pass a key derived from
their own business row (e.g. ``payment-attempt-<id>``), so that a worker that died after the call and retries
the whole task gets the same Stripe object back.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from core.errors import ApplicationError

log = logging.getLogger(__name__)

WEBHOOK_TOLERANCE_SECONDS = 300

# --- Errors ----------------------------------------------------------------------------------------------


class PaymentDeclined(ApplicationError):
    """The card was declined (shown to the buyer beside the card field). The intent can be retried."""

    status_code = 402

    def __init__(self, *, code: str, decline_code: str | None, payment_intent_id: str | None, message: str) -> None:
        super().__init__("card_declined", _("Your card was declined."), field="card")
        self.stripe_code = code
        self.decline_code = decline_code
        self.payment_intent_id = payment_intent_id
        self.stripe_message = message


class PaymentProviderUnavailable(ApplicationError):
    """Stripe could not be reached (after the bounded retries) or answered 5xx: retry later with the same key."""

    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__("payment_provider_unavailable", _("The payment provider is unavailable; try again later."))
        self.detail = detail


class StripeRequestError(Exception):
    """Stripe refused the request (a bug or a state conflict on our side): not retryable as is."""

    def __init__(self, *, http_status: int | None, code: str | None, param: str | None, message: str) -> None:
        super().__init__(f"Stripe refused the request ({http_status} {code or ''} {param or ''}): {message}")
        self.http_status = http_status
        self.code = code
        self.param = param
        self.message = message


class IdempotencyKeyReused(StripeRequestError):
    """The same idempotency key was sent earlier with other parameters: the caller derives keys wrongly."""


class WebhookSignatureInvalid(Exception):
    """A webhook whose signature does not verify, whose timestamp is outside the tolerance, or is not JSON."""


# --- Results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentIntentResult:
    id: str
    client_secret: str
    status: str  # requires_payment_method, requires_confirmation, requires_action, processing, succeeded, ...
    amount_minor: int
    currency: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    latest_charge_id: str | None = None
    last_error_code: str | None = None


@dataclass(frozen=True)
class RefundResult:
    id: str
    payment_intent_id: str | None
    charge_id: str | None
    amount_minor: int
    currency: str
    status: str
    created: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChargeResult:
    id: str
    payment_intent_id: str | None
    amount_minor: int
    amount_refunded_minor: int
    currency: str
    status: str  # succeeded, pending, failed
    captured: bool
    created: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectedAccountResult:
    id: str
    email: str | None
    country: str
    default_currency: str | None
    payouts_enabled: bool
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferResult:
    id: str
    amount_minor: int
    currency: str
    destination: str
    transfer_group: str | None
    amount_reversed_minor: int
    reversed: bool
    created: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    source_transaction: str | None = None


@dataclass(frozen=True)
class BalanceResult:
    available_minor: Mapping[str, int]  # currency -> amount
    pending_minor: Mapping[str, int]


@dataclass(frozen=True)
class TransferReversalResult:
    id: str
    transfer_id: str
    amount_minor: int
    currency: str
    created: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


# --- The client ------------------------------------------------------------------------------------------


@functools.cache
def _client_for(api_key: str, api_base: str, timeout: float, retries: int) -> stripe.StripeClient:
    base_addresses: dict[str, str] = {}
    if api_base:
        base_addresses = {"api": api_base.rstrip("/"), "files": api_base.rstrip("/"), "connect": api_base.rstrip("/")}
    return stripe.StripeClient(
        api_key,
        base_addresses=base_addresses,  # type: ignore[arg-type]
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def client() -> stripe.StripeClient:
    """The StripeClient for the current settings (tests that override settings get their own)."""
    return _client_for(
        settings.STRIPE_API_KEY,
        settings.STRIPE_API_BASE or "",
        float(settings.STRIPE_TIMEOUT_SECONDS),
        int(settings.STRIPE_MAX_NETWORK_RETRIES),
    )


def _options(idempotency_key: str) -> dict[str, Any]:
    if not idempotency_key or len(idempotency_key) > 255:
        raise ValueError("an idempotency key of 1 to 255 characters is required")
    return {"idempotency_key": idempotency_key}


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one library call, turning its exceptions into ours."""
    try:
        return fn(*args, **kwargs)
    except stripe.CardError as exc:
        body = exc.json_body if isinstance(exc.json_body, dict) else {}
        error = body.get("error") or {}
        pi = error.get("payment_intent")
        raise PaymentDeclined(
            code=exc.code or "card_declined",
            decline_code=error.get("decline_code"),
            payment_intent_id=pi.get("id") if isinstance(pi, Mapping) else None,
            message=exc.user_message or str(exc),
        ) from exc
    except stripe.IdempotencyError as exc:
        raise IdempotencyKeyReused(
            http_status=exc.http_status, code="idempotency_error", param=None, message=exc.user_message or str(exc)
        ) from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise PaymentProviderUnavailable(str(exc)) from exc
    except stripe.StripeError as exc:
        if exc.http_status is None or exc.http_status >= 500 or exc.http_status == 409:
            raise PaymentProviderUnavailable(str(exc)) from exc
        raise StripeRequestError(
            http_status=exc.http_status,
            code=exc.code,
            param=getattr(exc, "param", None),
            message=exc.user_message or str(exc),
        ) from exc


def _plain(obj: Any) -> dict[str, Any]:
    """A stripe object as plain dicts (StripeObject is not a dict since stripe 15)."""
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else dict(obj)


def _ts(value: int | None) -> datetime:
    return datetime.fromtimestamp(int(value or 0), tz=UTC)


def _metadata(obj: Any) -> dict[str, str]:
    metadata = obj.get("metadata") or {}
    return {str(k): str(v) for k, v in dict(metadata).items()}


def _id_of(value: Any) -> str | None:
    """An id that Stripe may return expanded (localstripe always expands ``latest_charge``)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return str(value.get("id")) if value.get("id") else None


def _payment_intent(obj: Any) -> PaymentIntentResult:
    obj = _plain(obj)
    error = obj.get("last_payment_error")
    return PaymentIntentResult(
        id=obj["id"],
        client_secret=obj.get("client_secret") or "",
        status=obj["status"],
        amount_minor=int(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        metadata=_metadata(obj),
        latest_charge_id=_id_of(obj.get("latest_charge")),
        last_error_code=(error.get("decline_code") or error.get("code")) if error else None,
    )


def _refund(obj: Any) -> RefundResult:
    obj = _plain(obj)
    return RefundResult(
        id=obj["id"],
        payment_intent_id=_id_of(obj.get("payment_intent")),
        charge_id=_id_of(obj.get("charge")),
        amount_minor=int(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        status=obj.get("status") or "succeeded",
        created=_ts(obj.get("created")),
        metadata=_metadata(obj),
    )


def _charge(obj: Any) -> ChargeResult:
    obj = _plain(obj)
    return ChargeResult(
        id=obj["id"],
        payment_intent_id=_id_of(obj.get("payment_intent")),
        amount_minor=int(obj["amount"]),
        amount_refunded_minor=int(obj.get("amount_refunded") or 0),
        currency=str(obj["currency"]).lower(),
        status=obj["status"],
        captured=bool(obj.get("captured")),
        created=_ts(obj.get("created")),
        metadata=_metadata(obj),
    )


def _account(obj: Any) -> ConnectedAccountResult:
    obj = _plain(obj)
    return ConnectedAccountResult(
        id=obj["id"],
        email=obj.get("email"),
        country=obj.get("country") or "",
        default_currency=obj.get("default_currency"),
        payouts_enabled=bool(obj.get("payouts_enabled")),
        metadata=_metadata(obj),
    )


def _transfer(obj: Any) -> TransferResult:
    obj = _plain(obj)
    return TransferResult(
        id=obj["id"],
        amount_minor=int(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        destination=str(_id_of(obj.get("destination"))),
        transfer_group=obj.get("transfer_group"),
        amount_reversed_minor=int(obj.get("amount_reversed") or 0),
        reversed=bool(obj.get("reversed")),
        created=_ts(obj.get("created")),
        metadata=_metadata(obj),
        source_transaction=_id_of(obj.get("source_transaction")),
    )


def _reversal(obj: Any) -> TransferReversalResult:
    obj = _plain(obj)
    return TransferReversalResult(
        id=obj["id"],
        transfer_id=str(_id_of(obj.get("transfer"))),
        amount_minor=int(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        created=_ts(obj.get("created")),
        metadata=_metadata(obj),
    )


def _created_range(created_gte: datetime | None, created_lt: datetime | None) -> dict[str, int]:
    """Stripe's ``created`` is whole seconds: widen the window to whole seconds (floor the start, ceil the end)
    so that an object of the window's first or last second is never left out; callers match by id anyway."""
    created: dict[str, int] = {}
    if created_gte is not None:
        created["gte"] = math.floor(created_gte.timestamp())
    if created_lt is not None:
        created["lt"] = math.ceil(created_lt.timestamp())
    return created


def _check_amount(amount_minor: int) -> None:
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise ValueError(f"amount_minor must be a positive int, not {amount_minor!r}")


def _str_metadata(metadata: Mapping[str, object] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata or {}).items()}


# --- Payments --------------------------------------------------------------------------------------------


def payment_intent_create(
    *,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    metadata: Mapping[str, object],
    customer: str | None = None,
) -> PaymentIntentResult:
    """A card PaymentIntent the buyer confirms in the browser (static/billing/pay.js) with its client secret."""
    _check_amount(amount_minor)
    params: dict[str, Any] = {
        "amount": amount_minor,
        "currency": currency.lower(),
        "metadata": _str_metadata(metadata),
        "payment_method_types": ["card"],
    }
    if customer:
        params["customer"] = customer
    obj = _call(client().v1.payment_intents.create, params=params, options=_options(idempotency_key))
    return _payment_intent(obj)


def payment_intent_retrieve(*, payment_intent_id: str) -> PaymentIntentResult:
    return _payment_intent(_call(client().v1.payment_intents.retrieve, payment_intent_id))


def payment_intent_confirm(*, payment_intent_id: str, payment_method: str, idempotency_key: str) -> PaymentIntentResult:
    """Confirm on the server side (tests, and off-session payments); the portal confirms with Stripe.js."""
    obj = _call(
        client().v1.payment_intents.confirm,
        payment_intent_id,
        params={"payment_method": payment_method},
        options=_options(idempotency_key),
    )
    return _payment_intent(obj)


def payment_intent_cancel(*, payment_intent_id: str, idempotency_key: str) -> PaymentIntentResult:
    obj = _call(client().v1.payment_intents.cancel, payment_intent_id, options=_options(idempotency_key))
    return _payment_intent(obj)


def refund_create(
    *,
    payment_intent_id: str,
    amount_minor: int,
    idempotency_key: str,
    metadata: Mapping[str, object] | None = None,
) -> RefundResult:
    _check_amount(amount_minor)
    params: dict[str, Any] = {"payment_intent": payment_intent_id, "amount": amount_minor}
    if metadata:
        params["metadata"] = _str_metadata(metadata)
    obj = _call(client().v1.refunds.create, params=params, options=_options(idempotency_key))
    return _refund(obj)


# --- Connect ---------------------------------------------------------------------------------------------


def connected_account_create(
    *,
    idempotency_key: str,
    email: str,
    country: str,
    metadata: Mapping[str, object],
    account_type: str = "express",
) -> ConnectedAccountResult:
    params: dict[str, Any] = {
        "type": account_type,
        "country": country.upper(),
        "email": email,
        "metadata": _str_metadata(metadata),
        "capabilities": {"transfers": {"requested": True}},
    }
    obj = _call(client().v1.accounts.create, params=params, options=_options(idempotency_key))
    return _account(obj)


def connected_account_retrieve(*, account_id: str) -> ConnectedAccountResult:
    return _account(_call(client().v1.accounts.retrieve, account_id))


def transfer_create(
    *,
    amount_minor: int,
    currency: str,
    destination: str,
    transfer_group: str,
    idempotency_key: str,
    metadata: Mapping[str, object],
    source_transaction: str | None = None,
) -> TransferResult:
    """A Connect transfer to a connected account.

    Pass the buyer's charge as ``source_transaction`` when paying out of a particular payment: Stripe then
    lets the transfer draw on that charge's funds while they are still pending (without it, a transfer
    fails with ``balance_insufficient`` until the platform's available balance covers it).
    """
    _check_amount(amount_minor)
    params: dict[str, Any] = {
        "amount": amount_minor,
        "currency": currency.lower(),
        "destination": destination,
        "transfer_group": transfer_group,
        "metadata": _str_metadata(metadata),
    }
    if source_transaction:
        params["source_transaction"] = source_transaction
    obj = _call(client().v1.transfers.create, params=params, options=_options(idempotency_key))
    return _transfer(obj)


def transfer_retrieve(*, transfer_id: str) -> TransferResult:
    return _transfer(_call(client().v1.transfers.retrieve, transfer_id))


def transfer_reversal_create(
    *,
    transfer_id: str,
    amount_minor: int,
    idempotency_key: str,
    metadata: Mapping[str, object] | None = None,
) -> TransferReversalResult:
    _check_amount(amount_minor)
    params: dict[str, Any] = {"amount": amount_minor}
    if metadata:
        params["metadata"] = _str_metadata(metadata)
    obj = _call(client().v1.transfers.reversals.create, transfer_id, params=params, options=_options(idempotency_key))
    return _reversal(obj)


def balance_retrieve() -> BalanceResult:
    """The platform's Stripe balance per currency (for the reconciliation report)."""
    obj = _plain(_call(client().v1.balance.retrieve))

    def by_currency(entries: Any) -> dict[str, int]:
        result: dict[str, int] = {}
        for entry in entries or []:
            currency = str(entry["currency"]).lower()
            result[currency] = result.get(currency, 0) + int(entry["amount"])
        return result

    return BalanceResult(
        available_minor=by_currency(obj.get("available")), pending_minor=by_currency(obj.get("pending"))
    )


# --- Listing for the reconciliation job (auto-paging; each page is one request) ---------------------------


def _iterate(list_fn: Any, params: dict[str, Any], convert: Any) -> Iterator[Any]:
    page = _call(list_fn, params={**params, "limit": 100})
    iterator = page.auto_paging_iter()
    while True:
        try:
            obj = _call(next, iterator)
        except StopIteration:
            return
        yield convert(obj)


def transfer_list(
    *,
    transfer_group: str | None = None,
    destination: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> Iterator[TransferResult]:
    """Transfers, newest first, filtered by group, destination and a half-open UTC window of creation."""
    params: dict[str, Any] = {}
    if transfer_group:
        params["transfer_group"] = transfer_group
    if destination:
        params["destination"] = destination
    if created := _created_range(created_gte, created_lt):
        params["created"] = created
    return _iterate(client().v1.transfers.list, params, _transfer)


def _filter_created(items: Iterator[Any], created_gte: datetime | None, created_lt: datetime | None) -> Iterator[Any]:
    bounds = _created_range(created_gte, created_lt)
    for item in items:
        created = int(item.created.timestamp())
        if "gte" in bounds and created < bounds["gte"]:
            continue
        if "lt" in bounds and created >= bounds["lt"]:
            continue
        yield item


def charge_list(*, created_gte: datetime | None = None, created_lt: datetime | None = None) -> Iterator[ChargeResult]:
    """Charges in a half-open UTC window of creation.

    The window is applied here as well as asked of Stripe, since localstripe supports only ``created[gt]``
    (and answers 500 to ``gte``/``lt``): against it we ask for ``gt`` = start - 1 s and filter the end here.
    """
    params: dict[str, Any] = {}
    if settings.STRIPE_API_BASE and created_gte is not None:
        params["created"] = {"gt": int(created_gte.timestamp()) - 1}
    elif created := _created_range(created_gte, created_lt):
        params["created"] = created
    return _filter_created(_iterate(client().v1.charges.list, params, _charge), created_gte, created_lt)


def refund_list(*, created_gte: datetime | None = None, created_lt: datetime | None = None) -> Iterator[RefundResult]:
    """Refunds in a half-open UTC window of creation (localstripe has no ``created`` filter: filtered here)."""
    params: dict[str, Any] = {}
    if not settings.STRIPE_API_BASE and (created := _created_range(created_gte, created_lt)):
        params["created"] = created
    return _filter_created(_iterate(client().v1.refunds.list, params, _refund), created_gte, created_lt)


# --- Webhooks --------------------------------------------------------------------------------------------


def webhook_event_construct(*, payload: bytes, signature_header: str) -> dict[str, Any]:
    """The verified event as a plain dict (``id``, ``type``, ``created``, ``data.object``...).

    Raises WebhookSignatureInvalid for a bad or missing signature, a timestamp more than 300 s away, or a
    payload that is not an event. Stripe signs ``t.payload`` with HMAC-SHA256 under the endpoint's secret.
    """
    try:
        event = stripe.Webhook.construct_event(
            payload,
            signature_header or "",
            settings.STRIPE_WEBHOOK_SECRET,
            tolerance=WEBHOOK_TOLERANCE_SECONDS,
        )
    except stripe.SignatureVerificationError as exc:
        raise WebhookSignatureInvalid(str(exc)) from exc
    except ValueError as exc:  # not JSON
        raise WebhookSignatureInvalid(f"invalid payload: {exc}") from exc
    result = event.to_dict()
    if not isinstance(result.get("id"), str) or not isinstance(result.get("type"), str):
        raise WebhookSignatureInvalid("payload is not a Stripe event")
    return result
