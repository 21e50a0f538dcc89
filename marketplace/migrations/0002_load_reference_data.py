"""Load the accelerator catalog and the 东数西算 hubs/clusters from marketplace/data/ (empty cells stay NULL)."""

from django.db import migrations

from marketplace.reference_data import load


def forwards(apps, schema_editor):
    load(
        apps.get_model("marketplace", "AcceleratorModel"),
        apps.get_model("marketplace", "Hub"),
        apps.get_model("marketplace", "Cluster"),
    )


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
