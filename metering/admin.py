from django.contrib import admin

from core.admin import ReadOnlyAdmin
from metering.models import SignedBatch, SigningKey, UsageHour


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "fingerprint", "created_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "fingerprint", "organization__name"]


@admin.register(SignedBatch)
class SignedBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "signing_key", "received_at", "records_total", "records_accepted"]
    search_fields = ["organization__name", "body_sha256"]
    exclude = ["body"]  # kept verbatim for verification; too large to show


@admin.register(UsageHour)
class UsageHourAdmin(ReadOnlyAdmin):
    list_display = ["subject_id", "hour_start", "provider", "record_count", "accelerator_seconds", "energy_wh"]
    list_filter = ["subject_kind"]
    search_fields = ["subject_id"]
