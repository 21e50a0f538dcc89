"""API rate limits per API key: DRF throttling with one budget for metering ingest and one for everything else.

``settings.API_THROTTLE_RATES`` maps a scope to a DRF rate (``"600/min"``; ``None`` for no limit). A view's scope
is its ``throttle_scope`` attribute, else ``metering_ingest`` when its URL is named in
``settings.API_THROTTLE_INGEST_VIEWS``, else ``api``. The count is kept per API key (``request.auth``), so one
client's burst never slows another's. Requests without a key (the public schema and docs) are counted per client
address by ``AnonymousRateThrottle`` (scope ``anonymous``; behind proxies see ``SUANLI_PROXY_COUNT``).

Over the limit the API answers 429 with ``Retry-After`` and the error envelope of ``core.errors``
(``{"errors": [{"field": null, "code": "throttled", "message": ...}]}``). Counts live in Django's cache: a shared
one (``CACHE_URL``, Redis) in production, so that every web process counts against the same budget.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

API_SCOPE = "api"
INGEST_SCOPE = "metering_ingest"
ANONYMOUS_SCOPE = "anonymous"


def throttle_scope(request: Request, view: Any) -> str:
    explicit = getattr(view, "throttle_scope", None)
    if explicit:
        return str(explicit)
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name in settings.API_THROTTLE_INGEST_VIEWS:
        return INGEST_SCOPE
    return API_SCOPE


class ApiKeyRateThrottle(SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"

    def __init__(self) -> None:
        # The rate depends on the view (its scope): chosen in allow_request, read from settings at each request.
        self.rate: str | None = None
        self.num_requests: int | None = None
        self.duration: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = throttle_scope(request, view)
        self.rate = settings.API_THROTTLE_RATES.get(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        # The key's public id: never the key or its hash in a cache key.
        ident = getattr(request.auth, "public_id", None)
        if ident is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(ApiKeyRateThrottle):
    """For the public views of the API (schema, docs): one budget per client address."""

    throttle_scope = ANONYMOUS_SCOPE

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = ANONYMOUS_SCOPE
        self.rate = settings.API_THROTTLE_RATES.get(self.scope)
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return SimpleRateThrottle.allow_request(self, request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
