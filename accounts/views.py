"""Portal views for accounts: parse input, call one service or selector, render."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.decorators import member_required
from accounts.forms import (
    ApiKeyForm,
    CompanyProfileForm,
    InvitationForm,
    InvitedSignupForm,
    OrganizationForm,
    RoleForm,
    SignupForm,
    apply_application_error,
)
from accounts.middleware import SESSION_KEY
from accounts.models import Role
from accounts.services import ShareholderInput
from core.errors import ApplicationError
from core.secret_values import seal, unseal


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("accounts:dashboard")
    return render(request, "accounts/home.html")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("accounts:dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, organization = services.user_signup(**form.cleaned_data)
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_KEY] = str(organization.public_id)
            messages.success(
                request,
                _("Welcome to Suanli. Your organisation %(name)s is ready.") % {"name": organization.name},
            )
            next_url = request.GET.get("next", "")
            # Django's own check: browsers read "/\\evil.example" as another site although it starts with one "/".
            safe = url_has_allowed_host_and_scheme(
                next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            )
            return redirect(next_url if next_url and safe else "accounts:dashboard")
    return render(request, "accounts/signup.html", {"form": form})


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("accounts:login")
    membership = request.membership  # type: ignore[attr-defined]
    if membership is None:
        return render(request, "accounts/dashboard_no_org.html")
    kind = membership.organization.kind
    context = {"profile": selectors.company_profile_get(membership.organization)}
    return render(request, f"accounts/dashboard_{kind}.html", context)


@require_POST
@member_required
def organization_switch(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("organization", "")
    chosen = selectors.membership_for_user(request.user, wanted)  # type: ignore[arg-type]
    if chosen is not None:
        request.session[SESSION_KEY] = str(chosen.organization.public_id)
    return redirect("accounts:dashboard")


@require_http_methods(["GET", "POST"])
@member_required
def organization_settings(request: HttpRequest) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    form = OrganizationForm(
        request.POST or None,
        initial={"name": organization.name, "billing_currency": organization.billing_currency},
    )
    if request.method == "POST":
        if not request.membership.has_role(Role.ADMIN):  # type: ignore[attr-defined]
            return HttpResponse(status=403)
        if form.is_valid():
            services.organization_update(organization=organization, actor=request.user, **form.cleaned_data)  # type: ignore[arg-type]
            messages.success(request, _("Saved."))
            return redirect("accounts:organization-settings")
    context = {"form": form, "can_manage": request.membership.has_role(Role.ADMIN)}  # type: ignore[attr-defined]
    return render(request, "accounts/settings_organization.html", context)


@require_http_methods(["GET", "POST"])
@member_required
def members(request: HttpRequest) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    form = InvitationForm(request.POST or None)
    if request.method == "POST":
        if not acting.has_role(Role.ADMIN):
            return HttpResponse(status=403)
        if form.is_valid():
            try:
                services.invitation_create(acting=acting, **form.cleaned_data)
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(request, _("Invitation sent to %(email)s.") % {"email": form.cleaned_data["email"]})
                return redirect("accounts:members")
    context = {
        "form": form,
        "members": selectors.member_list(acting.organization),
        "invitations": selectors.invitation_list_open(acting.organization),
        "role_choices": Role.choices,
        "can_manage": acting.has_role(Role.ADMIN),
        "invitation_valid_days": settings.INVITATION_VALID_DAYS,
    }
    return render(request, "accounts/settings_members.html", context)


@require_POST
@member_required
def member_role(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    target = selectors.member_get(acting.organization, membership_id)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            services.membership_change_role(acting=acting, membership=target, role=form.cleaned_data["role"])
            messages.success(request, _("Role changed."))
        except ApplicationError as exc:
            messages.error(request, str(exc.errors[0].message))
    return redirect("accounts:members")


@require_POST
@member_required
def member_remove(request: HttpRequest, membership_id: UUID) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    target = selectors.member_get(acting.organization, membership_id)
    try:
        services.membership_remove(acting=acting, membership=target)
    except ApplicationError as exc:
        messages.error(request, str(exc.errors[0].message))
        return redirect("accounts:members")
    if target.pk == acting.pk:
        request.session.pop(SESSION_KEY, None)
        return redirect("accounts:dashboard")
    messages.success(request, _("Member removed."))
    return redirect("accounts:members")


@require_POST
@member_required(min_role=Role.ADMIN)
def invitation_revoke(request: HttpRequest, invitation_id: UUID) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    invitation = selectors.invitation_get(acting.organization, invitation_id)
    services.invitation_revoke(acting=acting, invitation=invitation)
    messages.success(request, _("Invitation revoked."))
    return redirect("accounts:members")


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = selectors.invitation_get_by_token(token)
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(f"{request.path}")
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except ApplicationError as exc:
            messages.error(request, str(exc.errors[0].message))
        else:
            request.session[SESSION_KEY] = str(membership.organization.public_id)
            messages.success(request, _("You joined %(name)s.") % {"name": membership.organization.name})
            return redirect("accounts:dashboard")
    return render(request, "accounts/invitation_accept.html", {"invitation": invitation, "token": token})


# A new key's raw value waits here between the POST that created it and the page that shows it once, sealed
# (encrypted with a key derived from SECRET_KEY): the session table never holds it in clear.
NEW_API_KEY_SESSION_KEY = "accounts.new_api_key"
NEW_API_KEY_PURPOSE = "accounts.new_api_key"
NEW_API_KEY_MAX_AGE_SECONDS = 600


@require_http_methods(["GET", "POST"])
@member_required
def api_keys(request: HttpRequest) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST":
        if not acting.has_role(Role.ADMIN):
            return HttpResponse(status=403)
        if form.is_valid():
            try:
                _api_key, raw_key = services.api_key_create(acting=acting, **form.cleaned_data)
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                # Post/redirect/get, so that reloading the page does not create a second key.
                request.session[NEW_API_KEY_SESSION_KEY] = {
                    "organization": str(acting.organization.public_id),
                    "key": seal(raw_key, purpose=NEW_API_KEY_PURPOSE),
                }
                return redirect("accounts:api-keys")
    new_key = request.session.pop(NEW_API_KEY_SESSION_KEY, None) if request.method == "GET" else None
    shown_once = None
    if new_key and new_key.get("organization") == str(acting.organization.public_id):
        shown_once = unseal(
            new_key.get("key", ""), purpose=NEW_API_KEY_PURPOSE, max_age_seconds=NEW_API_KEY_MAX_AGE_SECONDS
        )
    context = {
        "form": form,
        "api_keys": selectors.api_key_list(acting.organization),
        "raw_key": shown_once,
        "can_manage": acting.has_role(Role.ADMIN),
    }
    return render(request, "accounts/settings_api_keys.html", context)


@require_POST
@member_required(min_role=Role.ADMIN)
def api_key_revoke(request: HttpRequest, api_key_id: UUID) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    api_key = selectors.api_key_get(acting.organization, api_key_id)
    services.api_key_revoke(acting=acting, api_key=api_key)
    messages.success(request, _("API key revoked."))
    return redirect("accounts:api-keys")


def _plain_number(value: Decimal) -> str:
    """60.000 -> "60", 12.50 -> "12.5" (never "6E+1")."""
    return format(value.normalize(), "f")


def _parse_shareholders(text: str) -> list[ShareholderInput]:
    holders = []
    for number, line in enumerate(filter(None, (raw.strip() for raw in text.splitlines())), start=1):
        parts = [part.strip() for part in line.replace("，", ",").split(",")]
        if len(parts) != 3:
            raise ApplicationError(
                "invalid_shareholder",
                _("Line %(n)d: write name, code, share %%") % {"n": number},
                field="shareholders",
            )
        try:
            share = Decimal(parts[2].rstrip("%"))
        except InvalidOperation:
            raise ApplicationError(
                "invalid_shareholder",
                _("Line %(n)d: the share is not a number") % {"n": number},
                field="shareholders",
            ) from None
        holders.append(ShareholderInput(name=parts[0], uscc=parts[1], share_pct=share))
    return holders


@require_http_methods(["GET", "POST"])
@member_required
def company_profile(request: HttpRequest) -> HttpResponse:
    acting = request.membership  # type: ignore[attr-defined]
    profile = selectors.company_profile_get(acting.organization)
    initial = {}
    if profile is not None:
        initial = {
            field: getattr(profile, field) for field in CompanyProfileForm.base_fields if field != "shareholders"
        }
        initial["shareholders"] = "\n".join(
            f"{h.name}, {h.uscc}, {_plain_number(h.share_pct)}" for h in profile.shareholders.all()
        )
    form = CompanyProfileForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if not acting.has_role(Role.ADMIN):
            return HttpResponse(status=403)
        if form.is_valid():
            data = dict(form.cleaned_data)
            try:
                data["shareholders"] = _parse_shareholders(data.pop("shareholders"))
                services.company_profile_save(acting=acting, **data)
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(request, _("Company profile saved."))
                return redirect("accounts:company-profile")
    context = {"form": form, "profile": profile, "can_manage": acting.has_role(Role.ADMIN)}
    return render(request, "accounts/settings_company.html", context)


@require_GET
@member_required
def uscc_check(request: HttpRequest) -> HttpResponse:
    """HTMX: validates a 统一社会信用代码 as the user types."""
    value = request.GET.get("uscc", "")
    error = None
    if value:
        try:
            services.validate_uscc(value)
        except ApplicationError as exc:
            error = str(exc.errors[0].message)
    return render(request, "accounts/settings_company.html#uscc-feedback", {"uscc_error": error, "uscc_value": value})


@require_http_methods(["GET", "POST"])
def invitation_signup(request: HttpRequest, token: str) -> HttpResponse:
    """Create an account from an invitation link and join the inviting organisation at once."""
    invitation = selectors.invitation_get_by_token(token)
    if request.user.is_authenticated:
        return redirect("accounts:invitation-accept", token=token)
    form = InvitedSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, membership = services.user_signup_invited(token=token, **form.cleaned_data)
        except ApplicationError as exc:
            apply_application_error(form, exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[SESSION_KEY] = str(membership.organization.public_id)
            messages.success(request, _("You joined %(name)s.") % {"name": membership.organization.name})
            return redirect("accounts:dashboard")
    context = {
        "form": form,
        "invitation": invitation,
        "accept_path": reverse("accounts:invitation-accept", args=[token]),
    }
    return render(request, "accounts/invitation_signup.html", context)
