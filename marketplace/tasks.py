"""Celery tasks of the marketplace. Safe to run twice (acks_late): each only acts on what is still due."""

from __future__ import annotations

import logging

from celery import shared_task

from marketplace import services

logger = logging.getLogger(__name__)


@shared_task(name="marketplace.tasks.lease_expire_unconfirmed")
def lease_expire_unconfirmed() -> int:
    """Cancel pending leases whose provider did not confirm in time; their capacity and bids return."""
    return services.lease_expire_unconfirmed()


@shared_task(name="marketplace.tasks.order_expire_due")
def order_expire_due() -> int:
    """Mark offers and bids whose window has ended as expired."""
    return services.order_expire_due()


@shared_task(name="marketplace.tasks.lease_notify", ignore_result=True)
def lease_notify(lease_id: str, event: str) -> None:
    """The outbox event of a lease change (created, confirmed, rejected). Notifications (e-mail, webhooks) are
    not built yet: for now this records that the event was delivered."""
    logger.info("lease %s: %s", lease_id, event)


@shared_task(name="marketplace.tasks.token_contract_expire_unconfirmed")
def token_contract_expire_unconfirmed() -> int:
    """Cancel pending token contracts whose provider did not confirm in time; their volume and bids return."""
    return services.token_contract_expire_unconfirmed()


@shared_task(name="marketplace.tasks.token_market_expire_due")
def token_market_expire_due() -> int:
    """Expire token bids past their expiry and complete token contracts whose term has ended."""
    return services.token_market_expire_due()


@shared_task(name="marketplace.tasks.token_contract_notify", ignore_result=True)
def token_contract_notify(contract_id: str, event: str) -> None:
    """The outbox event of a token contract change (created, active, cancelled), like ``lease_notify``."""
    logger.info("token contract %s: %s", contract_id, event)
