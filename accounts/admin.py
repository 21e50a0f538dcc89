from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _
from rest_framework_api_key.admin import APIKeyModelAdmin

from accounts.models import (
    CompanyProfile,
    Invitation,
    Membership,
    Organization,
    OrganizationAPIKey,
    Shareholder,
    User,
)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["public_id", "date_joined", "last_login"]
    fieldsets = (
        (None, {"fields": ("email", "password", "public_id")}),
        (_("Personal info"), {"fields": ("full_name", "time_zone")}),
        (
            _("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "billing_currency", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "public_id", "company_profile__uscc"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization__kind"]
    search_fields = ["user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    search_fields = ["email", "organization__name"]
    readonly_fields = ["public_id", "token_hash", "created_at", "accepted_at", "revoked_at", "invited_by"]


class ShareholderInline(admin.TabularInline):
    model = Shareholder
    extra = 0


@admin.register(CompanyProfile)
class CompanyProfileAdmin(admin.ModelAdmin):
    list_display = ["legal_name", "uscc", "organization", "registered_province", "industry", "size_class"]
    list_filter = ["registered_province", "industry", "size_class"]
    search_fields = ["legal_name", "uscc", "legal_representative", "organization__name"]
    inlines = [ShareholderInline]


@admin.register(OrganizationAPIKey)
class OrganizationAPIKeyAdmin(APIKeyModelAdmin):
    # The library types its tuples at their exact length; ours are longer.
    list_display = (*APIKeyModelAdmin.list_display, "organization", "last_used_at")  # type: ignore[assignment]
    search_fields = (*APIKeyModelAdmin.search_fields, "organization__name")  # type: ignore[assignment]
    list_filter = ("revoked",)


@admin.register(Shareholder)
class ShareholderAdmin(admin.ModelAdmin):
    list_display = ["name", "uscc", "share_pct", "profile"]
    search_fields = ["name", "uscc", "profile__legal_name"]
