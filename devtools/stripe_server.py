"""A local Stripe for development and tests: localstripe plus a small fake of the Connect endpoints it lacks.

Run it as ``python -m devtools.stripe_server --port 8420`` (loopback only). It prints
``stripe server ready on http://127.0.0.1:PORT`` once it accepts connections. The official ``stripe`` library
pointed at it (``StripeClient(base_addresses={"api": url})``) sees Stripe's request and response shapes.

What this adds to localstripe 1.15.10 (DESIGN.md §4.5):

- Connect: ``POST/GET /v1/accounts``, ``GET/POST /v1/accounts/{id}``, ``POST/GET /v1/transfers`` (list filters
  ``destination``, ``transfer_group``, ``created[gt|gte|lt|lte]``), ``GET/POST /v1/transfers/{id}``,
  ``POST/GET /v1/transfers/{id}/reversals``; ``transfer.created``, ``transfer.reversed`` and ``transfer.updated``
  events are stored and sent to the registered webhooks like localstripe's own.
- The ``Idempotency-Key`` header on every POST (localstripe ignores it): the same key replays the first response
  (``Idempotent-Replayed: true``), the same key with other parameters is a 400 ``idempotency_error``, a key
  whose first request is still running is a 409 ``idempotency_key_in_use`` (the library retries it). Keys are
  scoped by API key, as Stripe scopes them by account. Validation errors (400) are not stored, as at Stripe.
- ``POST /v1/payment_intents/{id}/confirm`` with ``payment_method`` or ``payment_method_data`` (localstripe
  answers 500 "Not implemented"), authenticated by the secret key or, from the browser, by the publishable
  key with the intent's ``client_secret`` as Stripe.js does. A declined card is a 402 ``card_error`` whose body
  carries the ``payment_intent``, as at Stripe.
- Test cards that Stripe declines when charged (4000000000000002 and the other decline cards) are declined
  by confirm; localstripe declined them only when attached to a customer.
- ``/js.stripe.com/v3/``: localstripe's fake Stripe.js, whose ``confirmCardPayment`` only handles 3-D Secure,
  extended so that ``confirmCardPayment(clientSecret, {payment_method: {card: cardElement}})`` pays with the
  card typed into the fake card Element (then 3-D Secure if the card asks for it).
- ``charge.refunded`` and ``payment_intent.canceled`` events, which localstripe does not send; refunds beyond
  the unrefunded amount of the charge are refused (localstripe refunded any amount, any number of times).
- ``GET /v1/balance`` in Stripe's shape, computed from charges, refunds, transfers and reversals.
- ``source_transaction`` on transfers is checked (the charge exists, the amount does not exceed it).
- Its store lives in memory, or in ``--data-file`` (localstripe pickles to the fixed ``/tmp/localstripe.pickle``,
  which two servers on one machine would share and overwrite).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import pickle  # nosec B403  # localstripe keeps its store as a pickle of our own file
import re
import secrets
import signal
import socket
import string
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

# localstripe's store pickles itself to a fixed /tmp path on every write: replace that before anything is stored.
from localstripe import resources as ls

_DATA_FILE: Path | None = None


def _store_dump(self: ls.Store) -> None:
    if _DATA_FILE is None:
        return
    tmp = _DATA_FILE.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(_DATA_FILE)


def _store_load(self: ls.Store) -> None:
    if _DATA_FILE is None or not _DATA_FILE.exists():
        return
    with _DATA_FILE.open("rb") as f:
        old = pickle.load(f)  # noqa: S301  (our own file)  # nosec B301
    dict.clear(self)
    dict.update(self, old)


ls.Store.dump_to_disk = _store_dump
ls.Store.try_load_from_disk = _store_load

from localstripe import server as ls_server  # noqa: E402
from localstripe import webhooks as ls_webhooks  # noqa: E402
from localstripe.errors import UserError  # noqa: E402

log = logging.getLogger("devtools.stripe_server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# --- Stripe-shaped errors --------------------------------------------------------------------------------


def _error_response(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    error.update(extra or {})
    return ls_server.json_response({"error": error}, status=status, headers=headers)


class StripeError(Exception):
    def __init__(self, status: int, message: str, **kwargs: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kwargs = kwargs

    def response(self) -> web.Response:
        return _error_response(self.status, self.message, **self.kwargs)


def _missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _no_such(kind: str, id_: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{id_}'", code="resource_missing", param=param)


# --- Fidelity fixes to localstripe -----------------------------------------------------------------------

_DECLINED_ON_CHARGE = {
    "4000000000000002": ("card_declined", "generic_decline"),
    "4000000000009995": ("card_declined", "insufficient_funds"),
    "4000000000009987": ("card_declined", "lost_card"),
    "4000000000009979": ("card_declined", "stolen_card"),
    "4000000000000069": ("expired_card", None),
    "4000000000000127": ("incorrect_cvc", None),
    "4000000000000119": ("processing_error", None),
    "4242424242424241": ("incorrect_number", None),
}
_original_charging_is_declined = ls.PaymentMethod._charging_is_declined


def _charging_is_declined(self: Any) -> bool:
    if getattr(self, "type", None) == "card" and getattr(self, "_card_number", None) in _DECLINED_ON_CHARGE:
        return True
    return bool(_original_charging_is_declined(self))


ls.PaymentMethod._charging_is_declined = _charging_is_declined
ls.Card._charging_is_declined = _charging_is_declined

# --- Small helpers ---------------------------------------------------------------------------------------


def _random_id(prefix: str, n: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


class _Exported:
    """Lets a plain dict be the data of a localstripe Event (which calls ``_export``)."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = obj

    def _export(self, expand: object = None) -> dict[str, Any]:
        return copy.deepcopy(self._obj)


def _emit(event_type: str, obj: dict[str, Any]) -> None:
    ls.schedule_webhook(ls.Event(event_type, _Exported(obj)))


async def _params(request: web.Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(ls_server.unflatten_data(request.query) or {})
    return dict(await ls_server.get_post_data(request) or {})


def _int_param(data: dict[str, Any], name: str, *, required: bool, minimum: int = 0) -> int | None:
    value = data.pop(name, None)
    if value is None or value == "":
        if required:
            raise _missing(name)
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StripeError(400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=name) from None
    if number < minimum:
        raise StripeError(
            400, f"This value must be greater than or equal to {minimum}.", code="parameter_invalid_integer", param=name
        )
    return number


def _str_param(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.pop(name, None)
    if value is None or value == "":
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {value!r}", code="parameter_invalid_string", param=name)
    return value


def _currency(data: dict[str, Any]) -> str:
    currency = _str_param(data, "currency", required=True)
    assert currency is not None
    if not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise StripeError(400, f"Invalid currency: {currency}.", code="invalid_currency", param="currency")
    return currency.lower()


def _metadata(data: dict[str, Any], current: dict[str, str] | None = None) -> dict[str, str]:
    value = data.pop("metadata", None)
    result = dict(current or {})
    if value is None or value == "":
        return result if value is None else {}
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid object", code="parameter_invalid_object", param="metadata")
    for key, item in value.items():
        if item == "" or item is None:
            result.pop(key, None)
        else:
            result[str(key)] = str(item)
    if len(result) > 50:
        raise StripeError(400, "Metadata can have up to 50 keys.", code="parameter_invalid_object", param="metadata")
    return result


def _no_unknown(data: dict[str, Any]) -> None:
    data.pop("expand", None)
    if data:
        name = sorted(data)[0]
        raise StripeError(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def _created_filter(value: Any) -> Callable[[int], bool]:
    if value is None:
        return lambda _created: True
    if isinstance(value, str):
        exact = int(value)
        return lambda created: created == exact
    if not isinstance(value, dict) or not set(value) <= {"gt", "gte", "lt", "lte"}:
        raise StripeError(400, "Invalid created filter", code="parameter_invalid_object", param="created")
    bounds = {op: int(v) for op, v in value.items()}

    def check(created: int) -> bool:
        return (
            created > bounds.get("gt", -1)
            and created >= bounds.get("gte", -1)
            and created < bounds.get("lt", sys.maxsize)
            and created <= bounds.get("lte", sys.maxsize)
        )

    return check


def _page(objects: list[dict[str, Any]], data: dict[str, Any], url: str) -> dict[str, Any]:
    """Stripe's list envelope over objects sorted newest first (cursor pagination by id)."""
    limit = _int_param(data, "limit", required=False, minimum=1) or 10
    limit = min(limit, 100)
    starting_after = _str_param(data, "starting_after")
    ending_before = _str_param(data, "ending_before")
    ids = [obj["id"] for obj in objects]
    if starting_after:
        if starting_after not in ids:
            raise _no_such("object", starting_after, "starting_after")
        window = objects[ids.index(starting_after) + 1 :]
        page, has_more = window[:limit], len(window) > limit
    elif ending_before:
        if ending_before not in ids:
            raise _no_such("object", ending_before, "ending_before")
        window = objects[: ids.index(ending_before)]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = objects[:limit], len(objects) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


def _stored(kind: str) -> list[dict[str, Any]]:
    """Our objects of a kind, newest first (the store keeps insertion order)."""
    prefix = f"x_{kind}:"
    return [value for key, value in reversed(list(ls.store.items())) if key.startswith(prefix)]


def _get(kind: str, id_: str, label: str) -> dict[str, Any]:
    obj = ls.store.get(f"x_{kind}:{id_}")
    if obj is None:
        raise _no_such(label, id_)
    return obj


def _put(kind: str, obj: dict[str, Any]) -> None:
    ls.store[f"x_{kind}:{obj['id']}"] = obj  # the store's __setitem__ persists it


_EXPANDABLE = {"destination": "account", "transfer": "transfer"}


def _export(obj: dict[str, Any], expand: Any) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    for path in expand or []:
        field = str(path).split(".")[0]
        if field.startswith("data") and result.get("object") == "list":
            continue
        kind = _EXPANDABLE.get(field)
        if kind is None or field not in result:
            raise StripeError(400, f"This property cannot be expanded ({field}).", param="expand")
        value = result[field]
        if isinstance(value, str):
            stored = ls.store.get(f"x_{kind}:{value}")
            if stored is not None:
                result[field] = copy.deepcopy(stored)
    return result


def _json(obj: dict[str, Any]) -> web.Response:
    return ls_server.json_response(obj)


# --- Connect: accounts -----------------------------------------------------------------------------------

_DEFAULT_CURRENCY = {"US": "usd", "CN": "cny", "HK": "hkd", "SG": "sgd", "JP": "jpy", "GB": "gbp", "CA": "cad"}
_EURO = {"AT", "BE", "DE", "ES", "FI", "FR", "IE", "IT", "LU", "NL", "PT"}


async def account_create(request: web.Request) -> web.Response:
    data = await _params(request)
    expand = data.get("expand")
    type_ = _str_param(data, "type")
    controller = data.pop("controller", None)
    if type_ is None and controller is None:
        raise _missing("type")
    if type_ is not None and type_ not in {"custom", "express", "standard"}:
        raise StripeError(400, "Invalid type: must be one of custom, express, or standard", param="type")
    country = (_str_param(data, "country") or "US").upper()
    requested = data.pop("capabilities", None) or {}
    capabilities = {name: "active" for name in (requested if isinstance(requested, dict) else {})}
    capabilities.setdefault("transfers", "active")
    account = {
        "id": _random_id("acct_", 16),
        "object": "account",
        "type": type_ or "custom",
        "country": country,
        "email": _str_param(data, "email"),
        "business_type": _str_param(data, "business_type"),
        "business_profile": data.pop("business_profile", None) or {},
        "capabilities": capabilities,
        "charges_enabled": True,
        "payouts_enabled": True,
        "details_submitted": True,
        "default_currency": _DEFAULT_CURRENCY.get(country, "eur" if country in _EURO else "usd"),
        "metadata": _metadata(data),
        "requirements": {"currently_due": [], "eventually_due": [], "past_due": [], "disabled_reason": None},
        "settings": data.pop("settings", None) or {},
        "tos_acceptance": data.pop("tos_acceptance", None) or {},
        "controller": controller,
        "created": int(time.time()),
        "livemode": False,
    }
    for ignored in ("company", "individual", "external_account"):
        data.pop(ignored, None)
    _no_unknown(data)
    _put("account", account)
    return _json(_export(account, expand))


async def account_list(request: web.Request) -> web.Response:
    data = await _params(request)
    data.pop("expand", None)
    matches = _created_filter(data.pop("created", None))
    objects = [a for a in _stored("account") if matches(a["created"])]
    page = _page(objects, data, "/v1/accounts")
    _no_unknown(data)
    return _json(page)


async def account_retrieve(request: web.Request) -> web.Response:
    data = await _params(request)
    account = _get("account", request.match_info["id"], "account")
    return _json(_export(account, data.get("expand")))


async def account_update(request: web.Request) -> web.Response:
    data = await _params(request)
    expand = data.get("expand")
    account = copy.deepcopy(_get("account", request.match_info["id"], "account"))
    account["metadata"] = _metadata(data, account["metadata"])
    for field in ("email", "business_type"):
        if field in data:
            account[field] = _str_param(data, field)
    for field in ("business_profile", "settings", "tos_acceptance"):
        if field in data:
            account[field] = data.pop(field) or {}
    _no_unknown(data)
    _put("account", account)
    _emit("account.updated", account)
    return _json(_export(account, expand))


# --- Connect: transfers and reversals --------------------------------------------------------------------


def _reversals_list(transfer_id: str) -> dict[str, Any]:
    reversals = [r for r in _stored("transfer_reversal") if r["transfer"] == transfer_id]
    return {
        "object": "list",
        "data": reversals[:10],
        "has_more": len(reversals) > 10,
        "total_count": len(reversals),
        "url": f"/v1/transfers/{transfer_id}/reversals",
    }


def _transfer_view(transfer: dict[str, Any]) -> dict[str, Any]:
    view = copy.deepcopy(transfer)
    view["reversals"] = _reversals_list(transfer["id"])
    return view


async def transfer_create(request: web.Request) -> web.Response:
    data = await _params(request)
    expand = data.get("expand")
    amount = _int_param(data, "amount", required=True, minimum=1)
    currency = _currency(data)
    destination = _str_param(data, "destination", required=True)
    assert destination is not None
    if f"x_account:{destination}" not in ls.store:
        raise StripeError(400, f"No such destination: '{destination}'", code="resource_missing", param="destination")
    source_transaction = _str_param(data, "source_transaction")
    if source_transaction is not None:
        charge = ls.store.get(f"charge:{source_transaction}")
        if charge is None:
            raise StripeError(
                400, f"No such charge: '{source_transaction}'", code="resource_missing", param="source_transaction"
            )
        if amount > charge.amount:
            raise StripeError(
                400,
                "The transfer amount cannot exceed the amount of its source transaction.",
                code="transfer_source_balance_parameters_mismatch",
                param="amount",
            )
    transfer = {
        "id": _random_id("tr_"),
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": _random_id("txn_"),
        "created": int(time.time()),
        "currency": currency,
        "description": _str_param(data, "description"),
        "destination": destination,
        "destination_payment": _random_id("py_"),
        "livemode": False,
        "metadata": _metadata(data),
        "reversed": False,
        "source_transaction": source_transaction,
        "source_type": _str_param(data, "source_type") or "card",
        "transfer_group": _str_param(data, "transfer_group"),
    }
    _no_unknown(data)
    _put("transfer", transfer)
    _emit("transfer.created", _transfer_view(transfer))
    return _json(_export(_transfer_view(transfer), expand))


async def transfer_list(request: web.Request) -> web.Response:
    data = await _params(request)
    data.pop("expand", None)
    matches = _created_filter(data.pop("created", None))
    destination = _str_param(data, "destination")
    group = _str_param(data, "transfer_group")
    objects = [
        _transfer_view(t)
        for t in _stored("transfer")
        if matches(t["created"])
        and (destination is None or t["destination"] == destination)
        and (group is None or t["transfer_group"] == group)
    ]
    page = _page(objects, data, "/v1/transfers")
    _no_unknown(data)
    return _json(page)


async def transfer_retrieve(request: web.Request) -> web.Response:
    data = await _params(request)
    transfer = _get("transfer", request.match_info["id"], "transfer")
    return _json(_export(_transfer_view(transfer), data.get("expand")))


async def transfer_update(request: web.Request) -> web.Response:
    data = await _params(request)
    expand = data.get("expand")
    transfer = copy.deepcopy(_get("transfer", request.match_info["id"], "transfer"))
    transfer["metadata"] = _metadata(data, transfer["metadata"])
    if "description" in data:
        transfer["description"] = _str_param(data, "description")
    _no_unknown(data)
    _put("transfer", transfer)
    _emit("transfer.updated", _transfer_view(transfer))
    return _json(_export(_transfer_view(transfer), expand))


async def reversal_create(request: web.Request) -> web.Response:
    data = await _params(request)
    expand = data.get("expand")
    transfer = copy.deepcopy(_get("transfer", request.match_info["id"], "transfer"))
    remaining = transfer["amount"] - transfer["amount_reversed"]
    amount = _int_param(data, "amount", required=False, minimum=1)
    if amount is None:
        amount = remaining
    if remaining <= 0:
        raise StripeError(
            400, f"Transfer {transfer['id']} has already been fully reversed.", code="transfer_already_reversed"
        )
    if amount > remaining:
        raise StripeError(
            400,
            f"You have requested a reversal of {amount}, which exceeds the unreversed amount of {remaining} "
            f"on transfer {transfer['id']}.",
            code="amount_too_large",
            param="amount",
        )
    data.pop("refund_application_fee", None)
    reversal = {
        "id": _random_id("trr_"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": _random_id("txn_"),
        "created": int(time.time()),
        "currency": transfer["currency"],
        "destination_payment_refund": _random_id("pyr_"),
        "metadata": _metadata(data),
        "source_refund": None,
        "transfer": transfer["id"],
    }
    data.pop("description", None)
    _no_unknown(data)
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    _put("transfer_reversal", reversal)
    _put("transfer", transfer)
    _emit("transfer.reversed", _transfer_view(transfer))
    return _json(_export(reversal, expand))


async def reversal_list(request: web.Request) -> web.Response:
    data = await _params(request)
    data.pop("expand", None)
    transfer_id = _get("transfer", request.match_info["id"], "transfer")["id"]
    objects = [r for r in _stored("transfer_reversal") if r["transfer"] == transfer_id]
    page = _page(objects, data, f"/v1/transfers/{transfer_id}/reversals")
    _no_unknown(data)
    return _json(page)


# --- PaymentIntent confirm with a payment method (and from Stripe.js) -------------------------------------


async def payment_intent_confirm(request: web.Request, pi_id: str) -> web.Response:
    data = await ls_server.get_post_data(request, remove_auth=False) or {}
    data = dict(data)
    key = data.pop("key", None)
    client_secret = data.pop("client_secret", None)
    for ignored in ("payment_user_agent", "referrer", "use_stripe_sdk", "return_url", "receipt_email", "mandate_data"):
        data.pop(ignored, None)
    expand = data.pop("expand", None)
    try:
        intent = ls.PaymentIntent._api_retrieve(pi_id)
    except UserError:
        raise _no_such("payment_intent", pi_id) from None
    if ls_server.get_api_key(request) is None:
        # From the browser: the publishable key and the intent's client secret, as Stripe.js sends them.
        if not (isinstance(key, str) and key.startswith("pk_")):
            raise StripeError(401, "You did not provide an API key.")
        if client_secret != intent.client_secret:
            raise StripeError(
                400,
                "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
                code="payment_intent_invalid_parameter",
                param="client_secret",
            )
    payment_method = data.pop("payment_method", None)
    payment_method_data = data.pop("payment_method_data", None)
    _no_unknown(data)
    if intent.status not in ("requires_payment_method", "requires_confirmation"):
        raise StripeError(
            400,
            f"This PaymentIntent's status is {intent.status}, so it cannot be confirmed.",
            code="payment_intent_unexpected_state",
            extra={"payment_intent": intent._export()},
        )
    if payment_method_data:
        if not isinstance(payment_method_data, dict):
            raise StripeError(400, "Invalid object", code="parameter_invalid_object", param="payment_method_data")
        try:
            payment_method = ls.PaymentMethod._api_create(**payment_method_data).id
        except (UserError, TypeError) as exc:
            expiry = isinstance(exc, UserError) and exc.body["error"].get("code") == "invalid_expiry_year"
            raise StripeError(
                402,
                "Your card's expiration year is invalid." if expiry else "Your card number is incorrect.",
                type_="card_error",
                code="invalid_expiry_year" if expiry else "incorrect_number",
                param="payment_method_data[card][exp_year]" if expiry else "payment_method_data[card][number]",
            ) from None
    if payment_method:
        pm = ls.PaymentMethod._api_retrieve(str(payment_method))
        if intent.status == "requires_payment_method":
            intent.latest_charge = None  # a new attempt after a decline (Stripe keeps the failed charge listed)
        intent.payment_method = pm.id
    if intent.payment_method is None:
        raise StripeError(
            400,
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            code="payment_intent_unexpected_state",
            extra={"payment_intent": intent._export()},
        )
    try:
        ls.PaymentIntent._api_confirm(pi_id)
    except UserError as exc:
        if exc.code != 402:
            raise
        failed = intent.latest_charge
        code = exc.body["error"].get("code", "card_declined")
        card_number = getattr(ls.PaymentMethod._api_retrieve(intent.payment_method), "_card_number", "")
        decline = _DECLINED_ON_CHARGE.get(card_number)
        extra: dict[str, Any] = {"payment_intent": intent._export(), "charge": failed.id if failed else None}
        if decline and decline[1]:
            extra["decline_code"] = decline[1]
        raise StripeError(
            402, exc.body["error"].get("message", "Your card was declined."), type_="card_error", code=code, extra=extra
        ) from None
    return _json(intent._export(expand=expand))


_JS_EXTENSION = r"""
// --- devtools/stripe_server.py: confirmCardPayment with the fake card Element, as Stripe.js does ---
(function () {
  const localstripeFactory = Stripe;
  Stripe = function (apiKey, options) {
    const stripe = localstripeFactory(apiKey, options);
    const authenticate = stripe.confirmCardPayment;
    stripe.confirmCardPayment = async function (clientSecret, data) {
      const card = data && data.payment_method && data.payment_method.card;
      if (!card || !(card instanceof Element)) {
        return authenticate(clientSecret, data);  // localstripe's own: 3-D Secure of an intent already confirmed
      }
      if (!card.value || !card.value.card) {
        return {error: {type: 'validation_error', code: 'incomplete_number',
                        message: 'Your card number is incomplete.'}};
      }
      const pi = clientSecret.match(/^(pi_\w+)_secret_/)[1];
      const params = new URLSearchParams();
      params.append('key', apiKey);
      params.append('client_secret', clientSecret);
      params.append('payment_method_data[type]', 'card');
      Object.keys(card.value.card).forEach(field => {
        params.append('payment_method_data[card][' + field + ']', card.value.card[field]);
      });
      if (card.value.postal_code) {
        params.append('payment_method_data[billing_details][address][postal_code]', card.value.postal_code);
      }
      try {
        const response = await fetch(`${LOCALSTRIPE_BASE_API}/v1/payment_intents/${pi}/confirm`, {
          method: 'POST',
          headers: {'Content-Type': 'application/x-www-form-urlencoded'},
          body: params.toString(),
        });
        const body = await response.json().catch(() => ({}));
        if (response.status !== 200 || body.error) {
          return {error: body.error || {message: 'HTTP ' + response.status}};
        }
        if (body.status === 'requires_action') {
          return authenticate(clientSecret, data);
        }
        return {paymentIntent: body};
      } catch (err) {
        return {error: {type: 'api_connection_error', message: String(err)}};
      }
    };
    return stripe;
  };
})();
"""


async def stripe_js(request: web.Request) -> web.Response:
    original = (Path(ls_server.__file__).parent / "localstripe-v3.js").read_text()
    # localstripe declares a global ``class Element``, which shadows the DOM's Element and breaks Bootstrap's
    # JavaScript on the pay page: give it a name of its own.
    for code in ("class Element ", "new Element(", "instanceof Element)"):
        original = original.replace(code, code.replace("Element", "LocalStripeElement"))
    extension = _JS_EXTENSION.replace("instanceof Element)", "instanceof LocalStripeElement)")
    return web.Response(text=original + extension, content_type="application/javascript")


async def balance_retrieve(request: web.Request) -> web.Response:
    """Stripe's shape (lists per currency; localstripe answers a fixed 2000 EUR as dicts without ``object``).

    Available = captured charges - refunds - transfers + transfer reversals, per currency. Stripe would keep
    new charges pending for days; here they are available at once and transfers are never refused for balance.
    """
    if ls_server.get_api_key(request) is None:
        raise StripeError(401, "You did not provide an API key.")
    totals: dict[str, int] = {}
    for key, obj in list(ls.store.items()):
        if key.startswith("charge:") and obj.status == "succeeded" and obj.captured:
            totals[obj.currency] = totals.get(obj.currency, 0) + obj.amount
        elif key.startswith("refund:") and obj.status == "succeeded":
            totals[obj.currency] = totals.get(obj.currency, 0) - obj.amount
        elif key.startswith("x_transfer:"):
            totals[obj["currency"]] = totals.get(obj["currency"], 0) - obj["amount"] + obj["amount_reversed"]
    currencies = sorted(totals) or ["usd"]
    return _json(
        {
            "object": "balance",
            "available": [
                {"amount": totals.get(c, 0), "currency": c, "source_types": {"card": totals.get(c, 0)}}
                for c in currencies
            ],
            "pending": [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies],
            "livemode": False,
        }
    )


# --- Missing events for refunds and cancellations --------------------------------------------------------


async def refund_create(request: web.Request, handler: Handler) -> web.StreamResponse:
    """localstripe refunds any amount any number of times: refuse what Stripe refuses, then send the event."""
    data = dict(await ls_server.get_post_data(request) or {})
    charge_id = data.get("charge")
    if data.get("payment_intent"):
        intent = ls.store.get(f"payment_intent:{data['payment_intent']}")
        charge_id = intent.latest_charge.id if intent is not None and intent.latest_charge is not None else None
    charge = ls.store.get(f"charge:{charge_id}") if charge_id else None
    if charge is not None and charge.status == "succeeded":
        remaining = charge.amount - charge.amount_refunded
        if remaining <= 0:
            raise StripeError(400, f"Charge {charge.id} has already been refunded.", code="charge_already_refunded")
        amount = ls.try_convert_to_int(data.get("amount", remaining))
        if isinstance(amount, int) and amount > remaining:
            raise StripeError(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
                code="amount_too_large",
                param="amount",
            )
    response = await handler(request)
    if response.status == 200 and isinstance(response, web.Response) and response.body:
        refund = json.loads(bytes(response.body))  # type: ignore[arg-type]
        charge = ls.Charge._api_retrieve(refund["charge"])
        ls.schedule_webhook(ls.Event("charge.refunded", charge))
    return response


async def payment_intent_cancel(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status == 200:
        intent = ls.PaymentIntent._api_retrieve(request.match_info.get("id") or request.path.split("/")[3])
        ls.schedule_webhook(ls.Event("payment_intent.canceled", intent))
    return response


# --- Idempotency-Key -------------------------------------------------------------------------------------

_in_flight: set[str] = set()


async def _with_idempotency(
    request: web.Request, call: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await call()
    scope = request.headers.get("Authorization", "") or "anonymous"
    slot = "x_idempotency:" + hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()
    body = await request.read()
    fingerprint = hashlib.sha256(f"{request.method} {request.path}\0".encode() + body).hexdigest()
    saved = ls.store.get(slot)
    if saved is not None:
        if saved["fingerprint"] != fingerprint:
            return _error_response(
                400,
                f"Keys for idempotent requests can only be used with the same parameters they were first used with. "
                f"Try using a key other than '{key}' if you meant to execute a different request.",
                type_="idempotency_error",
            )
        return web.Response(
            body=saved["body"],
            status=saved["status"],
            content_type="application/json",
            headers={"Idempotency-Key": key, "Idempotent-Replayed": "true"},
        )
    if slot in _in_flight:
        return _error_response(
            409,
            "There is currently another in-progress request using this Idempotent Key (that probably means you "
            "submitted twice, and the other request is still going through): " + key + ". Please try again later.",
            type_="idempotency_error",
            code="idempotency_key_in_use",
            headers={"Stripe-Should-Retry": "true"},
        )
    _in_flight.add(slot)
    try:
        try:
            response = await call()
        except StripeError as exc:
            response = exc.response()
        except UserError as exc:
            response = exc.to_response()
        # As at Stripe: a request that failed validation (400) or authentication stored nothing.
        if response.status not in (400, 401, 409, 429) and isinstance(response, web.Response):
            saved = {"fingerprint": fingerprint, "status": response.status, "body": bytes(response.body or b"")}  # type: ignore[arg-type]
            ls.store[slot] = saved
        response.headers["Idempotency-Key"] = key
        return response
    finally:
        _in_flight.discard(slot)


# --- Middlewares and the app -----------------------------------------------------------------------------

_OVERRIDES: list[tuple[str, re.Pattern[str], Callable[..., Awaitable[web.StreamResponse]]]] = [
    ("GET", re.compile(r"^/js\.stripe\.com/v3/?$"), stripe_js),
    ("GET", re.compile(r"^/v1/balance$"), balance_retrieve),
    ("POST", re.compile(r"^/v1/payment_intents/(?P<pi_id>\w+)/confirm$"), payment_intent_confirm),
]


@web.middleware
async def overrides_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routes that replace localstripe's (its router matches first-registered first), with their own auth."""
    for method, pattern, override in _OVERRIDES:
        match = pattern.match(request.path)
        if request.method == method and match:
            groups = match.groupdict()

            async def call(override: Any = override, groups: dict[str, str] = groups) -> web.StreamResponse:
                return await override(request, **groups)

            try:
                return await _with_idempotency(request, call)
            except StripeError as exc:
                return exc.response()
            except UserError as exc:
                return exc.to_response()
            finally:
                if request.method == "POST":
                    ls.store.dump_to_disk()
    return await handler(request)


@web.middleware
async def stripe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inside localstripe's auth: idempotency for every POST, Stripe-shaped errors, missing events."""

    async def call() -> web.StreamResponse:
        if request.method == "POST" and request.path == "/v1/refunds":
            return await refund_create(request, handler)
        if request.method == "POST" and re.match(r"^/v1/payment_intents/\w+/cancel$", request.path):
            return await payment_intent_cancel(request, handler)
        return await handler(request)

    try:
        return await _with_idempotency(request, call)
    except StripeError as exc:
        return exc.response()


def build_app() -> web.Application:
    app = ls_server.app
    if overrides_middleware not in app.middlewares:
        # localstripe's: [error_middleware, auth_middleware, save_store_middleware]
        app.middlewares.insert(1, overrides_middleware)
        app.middlewares.insert(app.middlewares.index(ls_server.auth_middleware) + 1, stripe_middleware)
        router = app.router
        router.add_post("/v1/accounts", account_create)
        router.add_get("/v1/accounts", account_list)
        router.add_get("/v1/accounts/{id}", account_retrieve)
        router.add_post("/v1/accounts/{id}", account_update)
        router.add_post("/v1/transfers", transfer_create)
        router.add_get("/v1/transfers", transfer_list)
        router.add_get("/v1/transfers/{id}", transfer_retrieve)
        router.add_post("/v1/transfers/{id}", transfer_update)
        router.add_post("/v1/transfers/{id}/reversals", reversal_create)
        router.add_get("/v1/transfers/{id}/reversals", reversal_list)
        router.add_get("/_config/ready", _ready)
        router.add_delete("/_config/webhooks/{id}", _webhook_delete)
    return app


async def _ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


async def _webhook_delete(request: web.Request) -> web.Response:
    """Remove an endpoint added by localstripe's ``POST /_config/webhooks/{id}`` (which has no way back)."""
    ls_webhooks._webhooks.pop(request.match_info["id"], None)
    return web.Response()


def main(argv: list[str] | None = None) -> int:
    global _DATA_FILE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (default 127.0.0.1)")
    parser.add_argument("--data-file", type=Path, help="keep the store in this file across restarts (default: memory)")
    args = parser.parse_args(argv)
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("this fake listens on loopback only")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s stripe %(message)s")
    if args.data_file:
        _DATA_FILE = args.data_file.resolve()
        _DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
        ls.store.try_load_from_disk()

    app = build_app()
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access"))
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(f"stripe server ready on http://{host}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
