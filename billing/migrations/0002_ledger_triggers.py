from django.db import migrations

# The ledger's invariants live in PostgreSQL (see billing/models.py):
# 1. a posting moves its account's cached balance (normal side positive) in the same statement, so the
#    account's CHECK refuses an overdraft of a guarded account under any concurrency (the UPDATE takes the
#    row lock; the second transaction re-reads the committed balance);
# 2. a posting's currency is its account's currency;
# 3. every entry balances per currency, checked when the transaction commits (deferred constraint trigger),
#    and an entry has postings;
# 4. entries and postings are append-only: corrections are reversing entries;
# 5. a finalized invoice's figures and lines cannot change (only status, payment and credit fields move).
FORWARD = """
CREATE OR REPLACE FUNCTION billing_posting_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    account_currency text;
BEGIN
    UPDATE billing_ledgeraccount
       SET balance_minor = balance_minor + CASE WHEN debit_normal THEN NEW.amount_minor ELSE -NEW.amount_minor END
     WHERE id = NEW.account_id
     RETURNING currency INTO account_currency;
    IF account_currency IS DISTINCT FROM NEW.currency THEN
        RAISE EXCEPTION 'posting currency % does not match account % currency %',
            NEW.currency, NEW.account_id, account_currency USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER billing_posting_apply
    AFTER INSERT ON billing_posting
    FOR EACH ROW EXECUTE FUNCTION billing_posting_apply();

CREATE OR REPLACE FUNCTION billing_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    unbalanced text;
BEGIN
    IF TG_TABLE_NAME = 'billing_posting' THEN
        entry := NEW.entry_id;
    ELSE
        entry := NEW.id;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing_posting WHERE entry_id = entry) THEN
        RAISE EXCEPTION 'journal entry % has no postings', entry USING ERRCODE = 'check_violation';
    END IF;
    SELECT string_agg(currency || ' ' || total, ', ') INTO unbalanced FROM (
        SELECT currency, sum(amount_minor) AS total FROM billing_posting
         WHERE entry_id = entry GROUP BY currency HAVING sum(amount_minor) <> 0
    ) AS t;
    IF unbalanced IS NOT NULL THEN
        RAISE EXCEPTION 'journal entry % does not balance: %', entry, unbalanced USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER billing_posting_balanced
    AFTER INSERT ON billing_posting DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_entry_balanced();
CREATE CONSTRAINT TRIGGER billing_entry_has_postings
    AFTER INSERT ON billing_journalentry DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION billing_entry_balanced();

CREATE TRIGGER billing_posting_append_only
    BEFORE UPDATE OR DELETE ON billing_posting
    FOR EACH ROW EXECUTE FUNCTION suanli_refuse_change();
CREATE TRIGGER billing_journalentry_append_only
    BEFORE UPDATE OR DELETE ON billing_journalentry
    FOR EACH ROW EXECUTE FUNCTION suanli_refuse_change();

CREATE OR REPLACE FUNCTION billing_invoice_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'draft' AND (
        NEW.subtotal_minor, NEW.vat_rate, NEW.vat_minor, NEW.total_minor, NEW.subsidy_minor,
        NEW.subsidy_reimbursed_minor, NEW.amount_due_minor, NEW.series_id, NEW.number, NEW.buyer_id, NEW.currency,
        NEW.period_start, NEW.period_end, NEW.finalized_at
    ) IS DISTINCT FROM (
        OLD.subtotal_minor, OLD.vat_rate, OLD.vat_minor, OLD.total_minor, OLD.subsidy_minor,
        OLD.subsidy_reimbursed_minor, OLD.amount_due_minor, OLD.series_id, OLD.number, OLD.buyer_id, OLD.currency,
        OLD.period_start, OLD.period_end, OLD.finalized_at
    ) THEN
        RAISE EXCEPTION 'invoice % is finalized: its figures cannot change', OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status <> 'draft' AND NEW.status = 'draft' THEN
        RAISE EXCEPTION 'invoice % cannot return to draft', OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER billing_invoice_frozen
    BEFORE UPDATE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_frozen();
CREATE TRIGGER billing_invoice_no_delete
    BEFORE DELETE ON billing_invoice
    FOR EACH ROW WHEN (OLD.status <> 'draft') EXECUTE FUNCTION suanli_refuse_change();

CREATE OR REPLACE FUNCTION billing_line_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    invoice_status text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT status INTO invoice_status FROM billing_invoice WHERE id = OLD.invoice_id;
    ELSE
        SELECT status INTO invoice_status FROM billing_invoice WHERE id = NEW.invoice_id;
    END IF;
    IF invoice_status IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'lines of a finalized invoice cannot change (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER billing_line_frozen
    BEFORE INSERT OR UPDATE OR DELETE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_line_frozen();
"""

REVERSE = """
DROP TRIGGER IF EXISTS billing_line_frozen ON billing_invoiceline;
DROP TRIGGER IF EXISTS billing_invoice_no_delete ON billing_invoice;
DROP TRIGGER IF EXISTS billing_invoice_frozen ON billing_invoice;
DROP TRIGGER IF EXISTS billing_journalentry_append_only ON billing_journalentry;
DROP TRIGGER IF EXISTS billing_posting_append_only ON billing_posting;
DROP TRIGGER IF EXISTS billing_entry_has_postings ON billing_journalentry;
DROP TRIGGER IF EXISTS billing_posting_balanced ON billing_posting;
DROP TRIGGER IF EXISTS billing_posting_apply ON billing_posting;
DROP FUNCTION IF EXISTS billing_line_frozen();
DROP FUNCTION IF EXISTS billing_invoice_frozen();
DROP FUNCTION IF EXISTS billing_entry_balanced();
DROP FUNCTION IF EXISTS billing_posting_apply();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_ledger_invoices"), ("core", "0002_auditlog_append_only")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
