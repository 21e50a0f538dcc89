"""Tenant-owned objects for the tenancy matrix: one factory per URL keyword argument.

A factory creates an object owned by a new organisation and returns ``(owner organisation, URL value)``.
When a feature adds a URL with a new keyword (``<uuid:lease_id>``), it adds a factory here; the matrix fails
with a clear message until it does, so no tenant-scoped URL goes untested.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

from accounts.models import Invitation, Membership, Organization, OrganizationAPIKey, Role
from core.timeutils import utcnow

MakeOrg = Callable[..., Organization]
Factory = Callable[[MakeOrg], tuple[Organization, str]]


def _membership(make_org: MakeOrg) -> tuple[Organization, str]:
    organization = make_org("buyer")
    extra = make_org("buyer").owner  # a second person, member of the first organisation too
    membership = Membership.objects.create(user=extra, organization=organization, role=Role.MEMBER)
    return organization, str(membership.public_id)


def _invitation(make_org: MakeOrg) -> tuple[Organization, str]:
    organization = make_org("buyer")
    invitation = Invitation.objects.create(
        organization=organization,
        email=f"{secrets.token_hex(4)}@example.com",
        role=Role.MEMBER,
        token_hash=secrets.token_hex(32),
        invited_by=organization.owner,  # type: ignore[attr-defined]
        expires_at=utcnow() + timedelta(days=7),
    )
    return organization, str(invitation.public_id)


def _api_key(make_org: MakeOrg) -> tuple[Organization, str]:
    organization = make_org("provider")
    api_key, _raw = OrganizationAPIKey.objects.create_key(name="matrix", organization=organization, scopes=[])
    return organization, str(api_key.public_id)


def _signing_key(make_org: MakeOrg) -> tuple[Organization, str]:
    from metering import signing
    from metering.models import SigningKey

    organization = make_org("provider")
    raw = signing.public_raw_of(signing.load_private_key(signing.generate_private_key_pem()))
    key = SigningKey.objects.create(
        organization=organization, name="matrix", public_key=raw, fingerprint=signing.fingerprint(raw)
    )
    return organization, str(key.public_id)


def _site(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.factories import make_site

    organization = make_org("provider")
    return organization, str(make_site(organization).public_id)


def _pool(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.factories import make_pool, make_site

    organization = make_org("provider")
    return organization, str(make_pool(make_site(organization)).public_id)  # a draft: not publicly listed


def _attestation(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.factories import make_attestation, make_pool, make_site

    organization = make_org("provider")
    return organization, str(make_attestation(make_pool(make_site(organization))).public_id)


def _offer(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.factories import make_listed_pool, make_offer

    organization = make_org("provider")
    return organization, str(make_offer(make_listed_pool(organization)).public_id)


def _bid(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.factories import make_bid

    organization = make_org("buyer")
    return organization, str(make_bid(organization).public_id)


def _lease(make_org: MakeOrg) -> tuple[Organization, str]:
    """A pending lease; the provider is the owner (the buyer sees it too, tested in tests/marketplace)."""
    from tests.marketplace.factories import make_lease

    provider = make_org("provider")
    return provider, str(make_lease(provider, make_org("buyer")).public_id)


def _token_endpoint(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.token_factories import make_endpoint

    organization = make_org("provider")
    return organization, str(make_endpoint(organization).public_id)


def _token_bid(make_org: MakeOrg) -> tuple[Organization, str]:
    from tests.marketplace.token_factories import make_token_bid

    organization = make_org("buyer")
    return organization, str(make_token_bid(organization).public_id)


def _token_contract(make_org: MakeOrg) -> tuple[Organization, str]:
    """A pending token contract; the provider is the owner (the buyer sees it too, tested in tests/marketplace)."""
    from tests.marketplace.token_factories import make_token_contract

    provider = make_org("provider")
    return provider, str(make_token_contract(provider, make_org("buyer")).public_id)


def _dispute(make_org: MakeOrg) -> tuple[Organization, str]:
    """A usage dispute on an active lease; the buyer is the owner (the provider sees it too)."""
    from metering.models import Dispute
    from tests.marketplace.factories import make_lease

    buyer = make_org("buyer")
    lease = make_lease(make_org("provider"), buyer, status="active")
    dispute = Dispute.objects.create(
        lease=lease,
        buyer=buyer,
        provider=lease.provider,
        period_start=lease.start,
        period_end=lease.end,
        reason="matrix",
        claimed_accelerator_seconds=0,
        lease_status_before="active",
    )
    return buyer, str(dispute.public_id)


OBJECT_FACTORIES: dict[str, Factory] = {
    "membership_id": _membership,
    "invitation_id": _invitation,
    "api_key_id": _api_key,
    "site_id": _site,
    "pool_id": _pool,
    "attestation_id": _attestation,
    "signing_key_id": _signing_key,
    "offer_id": _offer,
    "bid_id": _bid,
    "lease_id": _lease,
    "dispute_id": _dispute,
    "endpoint_id": _token_endpoint,
    "token_bid_id": _token_bid,
    "contract_id": _token_contract,
}

# Vouchers (tests/vouchers/tenancy_factories.py).
from tests.vouchers.tenancy_factories import VOUCHER_FACTORIES  # noqa: E402

OBJECT_FACTORIES.update(VOUCHER_FACTORIES)

# Green (tests/green/tenancy_factories.py).
from tests.green.tenancy_factories import GREEN_FACTORIES  # noqa: E402

OBJECT_FACTORIES.update(GREEN_FACTORIES)

# Billing (tests/billing/tenancy_factories.py).
from tests.billing.tenancy_factories import BILLING_FACTORIES  # noqa: E402

OBJECT_FACTORIES.update(BILLING_FACTORIES)
