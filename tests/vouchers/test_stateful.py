"""Hypothesis state machine over reserve / release / revoke / expire: every cap holds after every step."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Membership, Organization, Role, User
from tests.vouchers import factories
from vouchers import services
from vouchers.models import FirmYearUsage, Grant, GrantStatus, Program, Redemption
from vouchers.services import EligibleLine

NOW = factories.NOW


class VoucherMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        self.invoices: list[tuple[int, str]] = []
        self.counter = 0
        self.now = NOW

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def _org(self, kind: str) -> Organization:
        self.counter += 1
        org = Organization.objects.create(name=f"{kind} {self.counter}", kind=kind)
        user = User.objects.create_user(email=f"sm{self.counter}-{id(self)}@example.com", password="x")
        Membership.objects.create(user=user, organization=org, role=Role.OWNER)
        return org

    @initialize(
        budget=st.integers(500_000, 3_000_000),
        annual_cap=st.one_of(st.none(), st.integers(100_000, 1_500_000)),
        grants=st.lists(st.integers(50_000, 800_000), min_size=1, max_size=4),
    )
    def setup(self, budget, annual_cap, grants) -> None:
        self.issuer = self._org("issuer")
        self.provider = self._org("provider")
        factories.profile(self.provider, legal_representative="供应商代表")
        self.program = factories.program(self.issuer, budget_minor=budget, cap_per_firm_year_minor=annual_cap)
        self.buyers = []
        for index, amount in enumerate(grants):
            buyer = self._org("buyer")
            factories.profile(buyer, legal_representative=f"买方{index}")
            self.buyers.append(buyer)
            with contextlib.suppress(services.ApplicationError):  # over budget: the buyer has no grant
                factories.grant(self.program, buyer, amount_minor=min(amount, annual_cap or amount))

    @rule(buyer=st.integers(0, 3), amount=st.integers(1, 2_000_000), domestic=st.booleans())
    def reserve(self, buyer, amount, domestic) -> None:
        org = self.buyers[buyer % len(self.buyers)]
        self.counter += 1
        reference = f"INV-{self.counter}"
        line = EligibleLine(amount, "CNY", self.provider.pk, domestic, True)
        made = services.voucher_subsidy_reserve(buyer=org, invoice_reference=reference, lines=[line], at=self.now)
        if made:
            self.invoices.append((buyer % len(self.buyers), reference))

    @precondition(lambda self: self.invoices)
    @rule(data=st.data(), partial=st.one_of(st.none(), st.integers(1, 200_000)))
    def release(self, data, partial) -> None:
        buyer, reference = data.draw(st.sampled_from(self.invoices))
        self.counter += 1
        services.voucher_subsidy_release(
            buyer=self.buyers[buyer],
            invoice_reference=reference,
            at=self.now,
            reference=f"CN-{self.counter}",
            amount_minor=partial,
        )

    @rule(buyer=st.integers(0, 3))
    def revoke(self, buyer) -> None:
        grant = Grant.objects.filter(buyer=self.buyers[buyer % len(self.buyers)], status=GrantStatus.ACTIVE).first()
        if grant:
            services.grant_revoke(issuer=self.issuer, grant=grant, reason="stateful", at=self.now)

    @rule(days=st.integers(1, 400))
    def time_passes(self, days) -> None:
        self.now += timedelta(days=days)
        services.grant_expire_due(at=self.now)

    @invariant()
    def books_agree(self) -> None:
        if not hasattr(self, "program"):
            return
        program = Program.objects.get(pk=self.program.pk)
        assert 0 <= program.redeemed_minor <= program.committed_minor <= program.budget_minor
        net_total = 0
        expected_committed = 0
        for grant in Grant.objects.filter(program=program):
            rows = Redemption.objects.filter(grant=grant).aggregate(a=Sum("amount_minor"), r=Sum("released_minor"))
            net = (rows["a"] or 0) - (rows["r"] or 0)
            assert 0 <= grant.redeemed_minor == net <= grant.amount_minor
            expected_committed += grant.amount_minor if grant.status == GrantStatus.ACTIVE else grant.redeemed_minor
            net_total += net
        assert program.redeemed_minor == net_total
        assert program.committed_minor == expected_committed
        for usage in FirmYearUsage.objects.filter(program=program):
            rows = Redemption.objects.filter(program=program, buyer=usage.buyer, year=usage.year).aggregate(
                a=Sum("amount_minor"), r=Sum("released_minor")
            )
            assert usage.used_minor == (rows["a"] or 0) - (rows["r"] or 0)
            if usage.cap_minor is not None:
                assert usage.used_minor <= usage.cap_minor


@pytest.mark.django_db
@pytest.mark.slow
def test_voucher_books_hold_under_any_sequence():
    run_state_machine_as_test(
        VoucherMachine,
        settings=settings(
            max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
