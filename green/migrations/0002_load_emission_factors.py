"""Load the official grid emission factors (green/data/grid_emission_factors.csv) with their sources."""

from django.db import migrations


def forwards(apps, schema_editor):
    from green.reference_data import load

    load(apps.get_model("green", "EmissionFactor"))


class Migration(migrations.Migration):
    dependencies = [("green", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
