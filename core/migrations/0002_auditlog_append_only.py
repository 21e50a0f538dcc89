from django.db import migrations

# The audit log is append-only in the database itself: no role the application uses can UPDATE or DELETE
# a row, whatever the code does. (TRUNCATE, used only by test teardown, is a separate privilege.)
APPEND_ONLY = """
CREATE OR REPLACE FUNCTION suanli_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER core_auditlog_append_only
    BEFORE UPDATE OR DELETE ON core_auditlog
    FOR EACH ROW EXECUTE FUNCTION suanli_refuse_change();
"""

REVERSE = """
DROP TRIGGER IF EXISTS core_auditlog_append_only ON core_auditlog;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]

    operations = [migrations.RunSQL(APPEND_ONLY, REVERSE)]
