"""The double-entry ledger's write side: accounts, balanced entries, reversals, the nightly check.

Callers pass legs (account kind, organisation, signed amount: debit positive, credit negative); this module
merges them per account, refuses an unbalanced entry before the database does, inserts postings in account
order (every transaction locks accounts in the same order, so concurrent postings cannot deadlock) and is
idempotent by the entry's key. The database triggers (migration 0002) keep the balances and refuse what the
code might still get wrong.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction

from billing.models import (
    DEBIT_NORMAL,
    GUARDED,
    AccountKind,
    Invoice,
    JournalEntry,
    LedgerAccount,
    LedgerCheck,
    Posting,
)


class UnbalancedEntry(ValueError):
    pass


@dataclass(frozen=True)
class Leg:
    kind: AccountKind
    organization_id: int | None
    amount_minor: int  # debit positive, credit negative


def debit(kind: AccountKind, organization_id: int | None, amount_minor: int) -> Leg:
    return Leg(kind, organization_id, amount_minor)


def credit(kind: AccountKind, organization_id: int | None, amount_minor: int) -> Leg:
    return Leg(kind, organization_id, -amount_minor)


def ledger_accounts(
    keys: Iterable[tuple[AccountKind, int | None]], currency: str
) -> dict[tuple[AccountKind, int | None], LedgerAccount]:
    """The accounts for (kind, organisation) pairs, created when missing: two queries whatever their number
    (an entry of an invoice touches one account per revenue-share owner)."""
    wanted = set(keys)

    def fetch() -> dict[tuple[AccountKind, int | None], LedgerAccount]:
        # unnest() of two arrays rather than an OR of (kind, organisation) pairs: one plan whatever their number.
        pairs = sorted(wanted, key=lambda k: (k[0], k[1] or 0))
        accounts = LedgerAccount.objects.raw(
            """
            SELECT a.* FROM billing_ledgeraccount a
              JOIN unnest(%s::text[], %s::bigint[]) AS w(kind, organization_id)
                ON a.kind = w.kind AND a.organization_id IS NOT DISTINCT FROM w.organization_id
             WHERE a.currency = %s
            """,
            [[kind for kind, _org in pairs], [org for _kind, org in pairs], currency],
        )
        return {(AccountKind(a.kind), a.organization_id): a for a in accounts}

    found = fetch()
    missing = wanted - found.keys()
    if missing:
        LedgerAccount.objects.bulk_create(
            [
                LedgerAccount(
                    kind=kind,
                    organization_id=org,
                    currency=currency,
                    debit_normal=kind in DEBIT_NORMAL,
                    guard_non_negative=kind in GUARDED,
                )
                for kind, org in sorted(missing, key=lambda k: (k[0], k[1] or 0))
            ],
            ignore_conflicts=True,  # a concurrent entry created it first
        )
        found = fetch()
    return found


def ledger_post(
    *,
    kind: str,
    idempotency_key: str,
    currency: str,
    legs: Sequence[Leg],
    memo: str = "",
    invoice: Invoice | None = None,
    reverses: JournalEntry | None = None,
) -> JournalEntry:
    """Post one balanced entry, or return the entry already posted under ``idempotency_key``."""
    merged: dict[tuple[AccountKind, int | None], int] = defaultdict(int)
    for leg in legs:
        if isinstance(leg.amount_minor, bool) or not isinstance(leg.amount_minor, int):
            raise TypeError("ledger amounts are integers in minor units")
        merged[(leg.kind, leg.organization_id)] += leg.amount_minor
    if sum(merged.values()) != 0:
        raise UnbalancedEntry(f"entry {idempotency_key} does not balance: {dict(merged)}")
    amounts = {key: amount for key, amount in merged.items() if amount}
    if not amounts:
        raise UnbalancedEntry(f"entry {idempotency_key} moves no money")  # callers skip empty movements
    with transaction.atomic():
        existing = JournalEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
        accounts = ledger_accounts(amounts, currency)
        try:
            with transaction.atomic():
                entry = JournalEntry.objects.create(
                    kind=kind, idempotency_key=idempotency_key, memo=memo[:300], invoice=invoice, reverses=reverses
                )
        except IntegrityError:
            # A concurrent transaction posted the same key first (we waited on its unique index entry).
            return JournalEntry.objects.get(idempotency_key=idempotency_key)
        Posting.objects.bulk_create(
            [
                Posting(entry=entry, account=accounts[key], currency=currency, amount_minor=amount)
                for key, amount in sorted(amounts.items(), key=lambda item: accounts[item[0]].pk)
            ]
        )
    return entry


def ledger_reverse(*, entry: JournalEntry, idempotency_key: str, memo: str = "") -> JournalEntry:
    """The correction of a posted entry: the same postings negated, linked to it (once)."""
    postings = list(entry.postings.select_related("account"))
    legs = [Leg(p.account.kind, p.account.organization_id, -p.amount_minor) for p in postings]  # type: ignore[arg-type]
    currency = postings[0].currency
    return ledger_post(
        kind=f"reversal:{entry.kind}",
        idempotency_key=idempotency_key,
        currency=currency,
        legs=legs,
        memo=memo or f"reverses {entry.idempotency_key}",
        invoice=entry.invoice,
        reverses=entry,
    )


def ledger_verify() -> LedgerCheck:
    """Recompute every balance from its postings and re-sum every entry; store and return what differs."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.id, a.kind, a.organization_id, a.currency, a.balance_minor,
                   COALESCE(sum(CASE WHEN a.debit_normal THEN p.amount_minor ELSE -p.amount_minor END), 0)
              FROM billing_ledgeraccount a LEFT JOIN billing_posting p ON p.account_id = a.id
             GROUP BY a.id
            """
        )
        accounts = cursor.fetchall()
        cursor.execute(
            """
            SELECT entry_id, currency, sum(amount_minor) FROM billing_posting
             GROUP BY entry_id, currency HAVING sum(amount_minor) <> 0
            """
        )
        unbalanced = cursor.fetchall()
        cursor.execute("SELECT count(*) FROM billing_journalentry")
        (entries_checked,) = cursor.fetchone()
        cursor.execute(
            "SELECT id, kind, balance_minor FROM billing_ledgeraccount WHERE guard_non_negative AND balance_minor < 0"
        )
        negative = cursor.fetchall()
    mismatches: list[dict[str, object]] = [
        {
            "cause": "balance_differs",
            "account": pk,
            "kind": kind,
            "organization": org,
            "currency": currency,
            "cached_minor": cached,
            "from_postings_minor": int(recomputed),
        }
        for pk, kind, org, currency, cached, recomputed in accounts
        if cached != recomputed
    ]
    mismatches += [
        {"cause": "entry_unbalanced", "entry": entry, "currency": currency, "sum_minor": int(total)}
        for entry, currency, total in unbalanced
    ]
    mismatches += [
        {"cause": "guarded_negative", "account": pk, "kind": kind, "balance_minor": balance}
        for pk, kind, balance in negative
    ]
    return LedgerCheck.objects.create(
        accounts_checked=len(accounts), entries_checked=entries_checked, mismatches=mismatches
    )
