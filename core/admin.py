from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.models import AuditLog, IdempotencyRecord, OutboxMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    """For append-only and money records: staff may look, never edit or delete."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "actor_label", "organization", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_label", "target_id", "organization__name", "action"]
    date_hierarchy = "occurred_at"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["task_name", "created_at", "published_at", "attempts", "last_error"]
    list_filter = ["task_name"]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["organization", "key", "method", "path", "status_code", "created_at"]
    search_fields = ["key", "path"]
