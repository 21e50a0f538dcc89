"""Credentials and objects for the load test, on the (seeded) database of ``DATABASE_URL``; writes them as JSON.

    python -m loadtest.prepare OUT.json

- buyers browsing: the demo buyers' logins (``seed_demo``), with the invoice ids each can open;
- API clients: a new API key (market read/write) of each demo buyer;
- providers: a load-test provider organisation with a new signing key, a metering API key and an active lease.

Every run makes new keys (named ``load test``); nothing else of the demo data changes.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import django


def main(out: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from accounts.demo import DEMO_PASSWORD
    from accounts.models import ApiScope, Membership, Organization, OrganizationAPIKey
    from billing.models import Invoice
    from core.timeutils import floor_hour, utcnow
    from metering import services as metering
    from metering import signing
    from tests.marketplace.factories import make_lease

    buyers = list(Organization.objects.filter(kind="buyer", memberships__user__email__endswith=".demo").distinct())
    if not buyers:
        raise SystemExit("no demo buyers: run seed_demo first")
    browsing, api_keys = [], []
    for org in buyers:
        member = Membership.objects.filter(organization=org, user__email__endswith=".demo").select_related("user")
        email = member.first().user.email  # type: ignore[union-attr]
        invoices = [str(i) for i in Invoice.objects.filter(buyer=org).values_list("public_id", flat=True)[:20]]
        browsing.append({"email": email, "password": DEMO_PASSWORD, "invoices": invoices})
        _key, raw = OrganizationAPIKey.objects.create_key(
            name="load test", organization=org, scopes=[ApiScope.MARKET_READ, ApiScope.MARKET_WRITE]
        )
        api_keys.append(raw)

    provider, _ = Organization.objects.get_or_create(name="负载测试供应商 load-test provider", kind="provider")
    private_pem = signing.generate_private_key_pem()
    metering.signing_key_register(
        organization=provider,
        name=f"load test {uuid.uuid4().hex[:6]}",
        public_key=signing.public_key_text(signing.public_raw_of(signing.load_private_key(private_pem))),
    )
    _key, provider_key = OrganizationAPIKey.objects.create_key(
        name="load test", organization=provider, scopes=[ApiScope.METERING_WRITE]
    )
    now = utcnow()
    start = floor_hour(now) - timedelta(days=2)
    lease = make_lease(provider, buyers[0], accelerators=8, start=start, end=start + timedelta(days=7), status="active")
    metering.usage_partitions_ensure(months_ahead=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "buyers": browsing,
                "api_keys": api_keys,
                "providers": [
                    {
                        "api_key": provider_key,
                        "private_key_pem": private_pem.decode(),
                        "lease_id": str(lease.public_id),
                        "lease_start": lease.start.isoformat(),
                    }
                ],
            },
            indent=1,
        )
    )
    print(f"load-test fixture: {len(browsing)} buyers, {len(api_keys)} API keys, 1 provider -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
