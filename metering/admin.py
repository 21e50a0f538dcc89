from django.contrib import admin

from core.admin import ReadOnlyAdmin
from metering.models import SigningKey


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "organization", "fingerprint", "created_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "fingerprint", "organization__name"]
