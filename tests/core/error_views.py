"""A URL conf of small DRF views that fail in every way the API can fail (used by test_errors.py)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.urls import path
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Organization
from core.errors import ApplicationError, Conflict, FieldError, ValidationFailed


class OpenView(APIView):
    authentication_classes = []
    permission_classes = []


class ApplicationErrorView(OpenView):
    def get(self, request):
        raise ApplicationError("email_taken", _("An account with this email already exists."), field="email")


class ValidationFailedView(OpenView):
    def get(self, request):
        raise ValidationFailed(
            [
                FieldError("required", _("This field is required."), "name"),
                FieldError("invalid_scope", _("Unknown scope: %(scopes)s") % {"scopes": "x:y"}, "scopes"),
                FieldError("last_owner", _("An organisation needs at least one owner.")),
            ]
        )


class ConflictView(OpenView):
    def get(self, request):
        raise Conflict("idempotency_key_reused", "This Idempotency-Key was used with another request body.")


class DjangoValidationView(OpenView):
    def get(self, request):
        raise DjangoValidationError(
            {
                "uscc": [DjangoValidationError("Bad check digit.", code="invalid_uscc")],
                "__all__": [DjangoValidationError("Inconsistent.", code="inconsistent")],
            }
        )


class NotFoundView(OpenView):
    def get(self, request):
        raise Http404


class ForbiddenView(OpenView):
    def get(self, request):
        raise DjangoPermissionDenied


class CrashView(OpenView):
    def get(self, request):
        raise RuntimeError("boom")


class HalfWriteView(OpenView):
    """Writes, then refuses: with ATOMIC_REQUESTS the write must not survive."""

    def post(self, request):
        Organization.objects.create(name="half-written", kind="buyer")
        raise ApplicationError("refused", "Refused after a write.")


class HolderInput(serializers.Serializer):
    name = serializers.CharField()
    share_pct = serializers.DecimalField(max_digits=6, decimal_places=3, min_value=0)


class ProfileInput(serializers.Serializer):
    uscc = serializers.CharField(max_length=18)


class BodyInput(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=["market:read", "billing:read"]))
    profile = ProfileInput()
    shareholders = HolderInput(many=True)

    def validate(self, attrs):
        if sum(h["share_pct"] for h in attrs["shareholders"]) > 100:
            raise serializers.ValidationError(_("Shareholdings add up to more than 100%."), code="shares_over_100")
        return attrs


class NestedView(OpenView):
    def post(self, request):
        BodyInput(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class ListView(OpenView):
    """A batch endpoint: the body is a list of objects (like metering records)."""

    def post(self, request):
        HolderInput(data=request.data, many=True).is_valid(raise_exception=True)
        return Response({"ok": True})


class ScopedView(APIView):
    """Uses the project's default authentication and permission: an API key with the billing:read scope."""

    required_scopes = ["billing:read"]

    def get(self, request):
        return Response({"organization": request.organization.name})


urlpatterns = [
    path("t/application-error", ApplicationErrorView.as_view()),
    path("t/validation-failed", ValidationFailedView.as_view()),
    path("t/conflict", ConflictView.as_view()),
    path("t/django-validation", DjangoValidationView.as_view()),
    path("t/not-found", NotFoundView.as_view()),
    path("t/forbidden", ForbiddenView.as_view()),
    path("t/crash", CrashView.as_view()),
    path("t/half-write", HalfWriteView.as_view()),
    path("t/nested", NestedView.as_view()),
    path("t/list", ListView.as_view()),
    path("t/scoped", ScopedView.as_view()),
]
