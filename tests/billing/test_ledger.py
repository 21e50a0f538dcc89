"""The ledger's invariants, held by PostgreSQL: balanced entries, append-only postings, guarded balances."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.utils import DatabaseError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from billing.ledger import Leg, UnbalancedEntry, credit, debit, ledger_post, ledger_reverse, ledger_verify
from billing.models import AccountKind, JournalEntry, LedgerAccount, Posting

pytestmark = pytest.mark.django_db


def _fund(org_id: int, amount: int, key: str) -> JournalEntry:
    """Make ``amount`` available to a provider (pending -> payable through a sale and its payment)."""
    return ledger_post(
        kind="test_fund",
        idempotency_key=key,
        currency="CNY",
        legs=[debit(AccountKind.STRIPE_CASH, None, amount), credit(AccountKind.PROVIDER_PAYABLE, org_id, amount)],
    )


def _balance(kind: AccountKind, org_id: int | None) -> int:
    account = LedgerAccount.objects.filter(kind=kind, organization_id=org_id, currency="CNY").first()
    return account.balance_minor if account else 0


def test_an_entry_moves_balances_on_their_normal_side(make_org):
    provider = make_org("provider")
    _fund(provider.pk, 12_345, "fund-1")
    assert _balance(AccountKind.STRIPE_CASH, None) == 12_345  # an asset: debit-normal
    assert _balance(AccountKind.PROVIDER_PAYABLE, provider.pk) == 12_345  # a liability: credit-normal


def test_posting_the_same_key_twice_posts_once(make_org):
    provider = make_org("provider")
    first = _fund(provider.pk, 500, "fund-once")
    second = _fund(provider.pk, 500, "fund-once")
    assert first.pk == second.pk
    assert _balance(AccountKind.PROVIDER_PAYABLE, provider.pk) == 500


def test_an_unbalanced_entry_is_refused_by_the_code_and_by_the_database(make_org):
    provider = make_org("provider")
    with pytest.raises(UnbalancedEntry):
        ledger_post(
            kind="bad",
            idempotency_key="bad-1",
            currency="CNY",
            legs=[debit(AccountKind.STRIPE_CASH, None, 100), credit(AccountKind.PROVIDER_PAYABLE, provider.pk, 99)],
        )
    # Bypassing the code: the deferred trigger refuses the commit.
    cash = LedgerAccount.objects.create(kind="stripe_cash", currency="CNY", debit_normal=True)

    def one_sided_entry() -> None:
        with transaction.atomic():
            entry = JournalEntry.objects.create(kind="raw", idempotency_key="raw-1")
            Posting.objects.create(entry=entry, account=cash, currency="CNY", amount_minor=100)
            connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")  # what COMMIT does

    with pytest.raises(DatabaseError, match="does not balance"):
        one_sided_entry()
    assert not JournalEntry.objects.filter(idempotency_key="raw-1").exists()


def test_postings_and_entries_are_append_only(make_org):
    provider = make_org("provider")
    entry = _fund(provider.pk, 100, "fund-append")
    posting = entry.postings.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Posting.objects.filter(pk=posting.pk).update(amount_minor=1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Posting.objects.filter(pk=posting.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        JournalEntry.objects.filter(pk=entry.pk).update(memo="changed")


def test_a_guarded_balance_cannot_go_below_zero(make_org):
    provider = make_org("provider")
    _fund(provider.pk, 100, "fund-guard")
    with pytest.raises(IntegrityError):
        ledger_post(
            kind="payout",
            idempotency_key="overdraw",
            currency="CNY",
            legs=[debit(AccountKind.PROVIDER_PAYABLE, provider.pk, 101), credit(AccountKind.STRIPE_CASH, None, 101)],
        )
    assert _balance(AccountKind.PROVIDER_PAYABLE, provider.pk) == 100


def test_a_posting_in_another_currency_than_its_account_is_refused(make_org):
    cash = LedgerAccount.objects.create(kind="stripe_cash", currency="CNY", debit_normal=True)

    def dollar_posting() -> None:
        with transaction.atomic():
            entry = JournalEntry.objects.create(kind="raw", idempotency_key="raw-usd")
            Posting.objects.create(entry=entry, account=cash, currency="USD", amount_minor=100)

    with pytest.raises(DatabaseError, match="currency"):
        dollar_posting()


def test_a_reversal_restores_balances_and_happens_once(make_org):
    provider = make_org("provider")
    entry = _fund(provider.pk, 700, "fund-rev")
    ledger_reverse(entry=entry, idempotency_key="rev-1")
    ledger_reverse(entry=entry, idempotency_key="rev-1")
    assert _balance(AccountKind.PROVIDER_PAYABLE, provider.pk) == 0
    assert _balance(AccountKind.STRIPE_CASH, None) == 0
    assert ledger_verify().mismatches == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_payouts_never_overdraw_a_guarded_balance(make_org):
    """20 connections each try to pay out 10 of a balance of 100: exactly 10 succeed, the balance ends at 0."""
    provider = make_org("provider")
    _fund(provider.pk, 100, "fund-race")
    barrier = threading.Barrier(20)
    outcomes: list[str] = []

    def payout(i: int) -> None:
        try:
            barrier.wait()
            ledger_post(
                kind="payout",
                idempotency_key=f"race-payout-{i}",
                currency="CNY",
                legs=[debit(AccountKind.PROVIDER_PAYABLE, provider.pk, 10), credit(AccountKind.STRIPE_CASH, None, 10)],
            )
            outcomes.append("ok")
        except IntegrityError:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=payout, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 10
    assert _balance(AccountKind.PROVIDER_PAYABLE, provider.pk) == 0
    assert ledger_verify().mismatches == []


@pytest.mark.slow
@settings(max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck))
class LedgerMachine(RuleBasedStateMachine):
    """Random sales, payments, releases, payouts and reversals: every entry balances, no guarded balance goes
    negative, and the cached balances always equal the sums of the postings."""

    @initialize()
    def setup(self) -> None:
        from accounts.models import Organization

        self.providers = [Organization.objects.create(name=f"p{i}", kind="provider").pk for i in range(2)]
        self.buyer = Organization.objects.create(name="b", kind="buyer").pk
        self.entries: list[JournalEntry] = []
        self.counter = 0
        self.expected_payable = {p: 0 for p in self.providers}

    def _key(self) -> str:
        self.counter += 1
        return f"sm-{id(self)}-{self.counter}"

    @rule(amount=st.integers(1, 10_000), provider=st.integers(0, 1))
    def sale_paid_and_released(self, amount: int, provider: int) -> None:
        org = self.providers[provider]
        self.entries.append(
            ledger_post(
                kind="sale",
                idempotency_key=self._key(),
                currency="CNY",
                legs=[
                    debit(AccountKind.STRIPE_CASH, None, amount),
                    credit(AccountKind.PROVIDER_PAYABLE, org, amount),
                ],
            )
        )
        self.expected_payable[org] += amount

    @rule(amount=st.integers(1, 10_000), provider=st.integers(0, 1))
    def payout(self, amount: int, provider: int) -> None:
        org = self.providers[provider]
        legs: list[Leg] = [
            debit(AccountKind.PROVIDER_PAYABLE, org, amount),
            credit(AccountKind.STRIPE_CASH, None, amount),
        ]
        try:
            with transaction.atomic():
                self.entries.append(ledger_post(kind="payout", idempotency_key=self._key(), currency="CNY", legs=legs))
            self.expected_payable[org] -= amount
        except IntegrityError:
            assert self.expected_payable[org] < amount  # refused only when it would overdraw

    @rule(amount=st.integers(1, 10_000), provider=st.integers(0, 1))
    def hold(self, amount: int, provider: int) -> None:
        """Hold part of a provider's available balance back (a dispute): payable -> pending, both guarded."""
        org = self.providers[provider]
        legs = [debit(AccountKind.PROVIDER_PAYABLE, org, amount), credit(AccountKind.PROVIDER_PENDING, org, amount)]
        try:
            with transaction.atomic():
                self.entries.append(ledger_post(kind="hold", idempotency_key=self._key(), currency="CNY", legs=legs))
            self.expected_payable[org] -= amount
        except IntegrityError:
            assert self.expected_payable[org] < amount

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        candidates = [e for e in self.entries if e.reverses_id is None and not hasattr(e, "_reversed")]
        if not candidates:
            return
        entry = data.draw(st.sampled_from(candidates))
        try:
            with transaction.atomic():
                ledger_reverse(entry=entry, idempotency_key=f"rev-{entry.idempotency_key}")
            entry._reversed = True  # type: ignore[attr-defined]
            for posting in entry.postings.select_related("account"):
                if posting.account.kind == AccountKind.PROVIDER_PAYABLE:
                    self.expected_payable[posting.account.organization_id] += posting.amount_minor
        except IntegrityError:
            pass  # reversing a sale already paid out would overdraw: refused

    @invariant()
    def balances_hold(self) -> None:
        check = ledger_verify()
        assert check.mismatches == []
        for org, expected in self.expected_payable.items():
            assert _balance(AccountKind.PROVIDER_PAYABLE, org) == expected
            assert expected >= 0


@pytest.mark.slow
def test_ledger_state_machine(db):
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(LedgerMachine)
