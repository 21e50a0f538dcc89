import uuid

from django.db import migrations, models

import core.ids


def fill_public_ids(apps, schema_editor):
    SignedBatch = apps.get_model("metering", "SignedBatch")
    for batch in SignedBatch.objects.filter(public_id__isnull=True).only("pk"):
        SignedBatch.objects.filter(pk=batch.pk).update(public_id=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("metering", "0003_usage_hour")]

    operations = [
        migrations.AddField(model_name="signedbatch", name="public_id", field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="signedbatch",
            name="public_id",
            field=models.UUIDField(default=core.ids.new_public_id, editable=False, unique=True),
        ),
        migrations.AddField(model_name="signedbatch", name="outcome", field=models.JSONField(default=dict)),
    ]
