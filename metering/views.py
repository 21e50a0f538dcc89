"""Portal views of the metering app."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import member_required
from accounts.forms import apply_application_error
from accounts.models import OrganizationKind, Role
from core.errors import ApplicationError
from core.timeutils import utcnow
from metering import selectors, services
from metering.forms import SigningKeyForm

PROVIDERS = [OrganizationKind.PROVIDER]


@require_http_methods(["GET", "POST"])
@member_required(kinds=PROVIDERS)
def signing_keys(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    can_manage = membership.has_role(Role.ADMIN)
    form = SigningKeyForm(request.POST or None)
    if request.method == "POST":
        if not can_manage:
            return HttpResponse(status=403)
        if form.is_valid():
            try:
                key = services.signing_key_register(
                    organization=membership.organization, actor=request.user, **form.cleaned_data
                )
            except ApplicationError as exc:
                apply_application_error(form, exc)
            else:
                messages.success(
                    request, _("Signing key %(fingerprint)s registered.") % {"fingerprint": key.fingerprint}
                )
                return redirect("metering:signing-keys")
    context = {"form": form, "keys": selectors.signing_key_list(membership.organization), "can_manage": can_manage}
    return render(request, "metering/signing_keys.html", context)


@require_POST
@member_required(kinds=PROVIDERS, min_role=Role.ADMIN)
def signing_key_revoke(request: HttpRequest, signing_key_id: UUID) -> HttpResponse:
    organization = request.organization  # type: ignore[attr-defined]
    key = selectors.signing_key_get(organization, signing_key_id)
    services.signing_key_revoke(organization=organization, key=key, actor=request.user)
    messages.success(request, _("Signing key revoked."))
    return redirect("metering:signing-keys")


@require_GET
@member_required(kinds=PROVIDERS)
def ingest_health(request: HttpRequest) -> HttpResponse:
    """The provider's usage reporting: records by outcome over 24 h, rejections by code, the latest batches."""
    organization = request.organization  # type: ignore[attr-defined]
    context = {
        "health": selectors.ingest_health(organization, since=utcnow() - timedelta(hours=24)),
        "batches": selectors.batch_list(organization),
    }
    return render(request, "metering/ingest_health.html", context)


@require_GET
def batch_verify(request: HttpRequest, batch_id: UUID) -> HttpResponse:
    """Public: anyone with the link re-verifies a kept batch against the provider's public key."""
    return render(request, "metering/batch_verify.html", {"v": selectors.batch_verification(batch_id)})
