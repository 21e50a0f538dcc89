"""Vouchers API: programmes (with the buyer's eligibility), applications, grants, and a subsidy quote."""

from __future__ import annotations

from django.urls import path
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiScope, Organization, OrganizationKind
from core.errors import ApplicationError
from core.idempotency import idempotent
from core.money import DEFAULT_CURRENCY
from vouchers import rules, selectors, services
from vouchers.models import Program


class ProgramOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    name = serializers.CharField()
    issuer = serializers.CharField(source="issuer.name")
    legal_basis = serializers.CharField()
    document_number = serializers.CharField()
    voucher_type = serializers.CharField()
    currency = serializers.CharField()
    fiscal_year = serializers.IntegerField()
    budget_minor = serializers.IntegerField()
    committed_minor = serializers.IntegerField()
    redeemed_minor = serializers.IntegerField()
    valid_from = serializers.DateTimeField()
    valid_until = serializers.DateTimeField()
    ratio_domestic = serializers.DecimalField(max_digits=20, decimal_places=10)
    ratio_other = serializers.DecimalField(max_digits=20, decimal_places=10)
    ratio_startup = serializers.DecimalField(max_digits=20, decimal_places=10, allow_null=True)
    ratio_sme = serializers.DecimalField(max_digits=20, decimal_places=10, allow_null=True)
    # Model/API (token) usage: null means the chip-origin ratios apply to it too.
    ratio_model = serializers.DecimalField(max_digits=20, decimal_places=10, allow_null=True)
    cap_per_application_minor = serializers.IntegerField(allow_null=True)
    cap_per_firm_year_minor = serializers.IntegerField(allow_null=True)
    settlement_mode = serializers.CharField()
    eligible = serializers.BooleanField(required=False)
    reasons = serializers.ListField(child=serializers.DictField(), required=False)


def _program_payload(program: Program, problems: list[rules.Problem] | None = None) -> dict[str, object]:
    data = dict(ProgramOutput(program).data)
    if problems is not None:
        data["eligible"] = not problems
        data["reasons"] = [{"code": p.code, "message": p.message} for p in problems]
    return data


class ProgramsApi(APIView):
    """Buyers: the open programmes, each with whether you may apply and why not. Issuers: your programmes."""

    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.ISSUER]

    @extend_schema(responses=ProgramOutput(many=True), operation_id="vouchers_programs_list")
    def get(self, request: Request) -> Response:
        organization: Organization = request.organization  # type: ignore[attr-defined]
        if organization.kind == OrganizationKind.ISSUER:
            return Response([_program_payload(p) for p in selectors.program_list_for_issuer(organization)])
        return Response(
            [_program_payload(p.program, p.problems) for p in selectors.program_list_for_buyer(organization)]
        )


class ApplicationOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    program = serializers.UUIDField(source="program.public_id")
    requested_minor = serializers.IntegerField()
    purpose = serializers.CharField()
    contract_reference = serializers.CharField()
    status = serializers.CharField()
    info_request = serializers.CharField()
    decision_reason = serializers.CharField()
    submitted_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)


class ApplicationInput(serializers.Serializer):
    program = serializers.UUIDField()
    requested_minor = serializers.IntegerField(min_value=1)
    purpose = serializers.CharField(max_length=4000)
    contract_reference = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    planned_usage = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")
    providers = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=20)


class ApplicationsApi(APIView):
    """The buyer's voucher applications; POST applies (attachments go through the portal)."""

    organization_kinds = [OrganizationKind.BUYER]

    def get_permissions(self):
        self.required_scopes = [ApiScope.MARKET_WRITE] if self.request.method == "POST" else []
        return super().get_permissions()

    @extend_schema(responses=ApplicationOutput(many=True), operation_id="vouchers_applications_list")
    def get(self, request: Request) -> Response:
        applications = selectors.application_list_for_buyer(request.organization)  # type: ignore[attr-defined]
        return Response(ApplicationOutput(applications, many=True).data)

    @extend_schema(
        request=ApplicationInput, responses={201: ApplicationOutput}, operation_id="vouchers_applications_create"
    )
    def post(self, request: Request) -> Response:
        def handler() -> Response:
            data = ApplicationInput(data=request.data)
            data.is_valid(raise_exception=True)
            values = data.validated_data
            program = Program.objects.filter(public_id=values["program"], status="open").first()
            if program is None:
                raise ApplicationError("unknown_program", _("Unknown or closed programme."), field="program")
            providers = list(selectors.provider_choices().filter(public_id__in=values["providers"]))
            if len(providers) != len(set(values["providers"])):
                raise ApplicationError("unknown_provider", _("Unknown provider."), field="providers")
            application = services.application_submit(
                buyer=request.organization,  # type: ignore[attr-defined]
                program=program,
                requested_minor=values["requested_minor"],
                purpose=values["purpose"],
                contract_reference=values["contract_reference"],
                planned_usage=values["planned_usage"],
                providers=providers,
            )
            return Response(ApplicationOutput(application).data, status=status.HTTP_201_CREATED)

        return idempotent(request, handler)


class GrantOutput(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    program = serializers.UUIDField(source="program.public_id")
    buyer = serializers.CharField(source="buyer.name")
    amount_minor = serializers.IntegerField()
    redeemed_minor = serializers.IntegerField()
    currency = serializers.CharField()
    expires_at = serializers.DateTimeField()
    status = serializers.CharField()


class GrantsApi(APIView):
    """Grants: the buyer's own, or those of the issuer's programmes."""

    organization_kinds = [OrganizationKind.BUYER, OrganizationKind.ISSUER]

    @extend_schema(responses=GrantOutput(many=True), operation_id="vouchers_grants_list")
    def get(self, request: Request) -> Response:
        organization: Organization = request.organization  # type: ignore[attr-defined]
        if organization.kind == OrganizationKind.ISSUER:
            grants = selectors.grant_list_for_issuer(organization)
        else:
            grants = selectors.grant_list_for_buyer(organization)
        return Response(GrantOutput(grants, many=True).data)


class QuoteLineInput(serializers.Serializer):
    amount_minor = serializers.IntegerField(min_value=1)
    currency = serializers.CharField(max_length=3, default=DEFAULT_CURRENCY)
    provider = serializers.UUIDField()
    chip_domestic = serializers.BooleanField()
    compute_only = serializers.BooleanField(default=True)


class QuoteInput(serializers.Serializer):
    lines = serializers.ListField(child=QuoteLineInput(), min_length=1, max_length=500)


class QuoteRefusalOutput(serializers.Serializer):
    line = serializers.IntegerField(help_text="index of the line in the request")
    code = serializers.CharField()


class QuoteOutput(serializers.Serializer):
    amount_minor = serializers.IntegerField()
    subsidy_minor = serializers.IntegerField()
    after_subsidy_minor = serializers.IntegerField()
    refusals = QuoteRefusalOutput(many=True)


class QuoteApi(APIView):
    """What your grants would give these lines now ("this bid would cost ¥X after your voucher"). Reserves
    nothing: the subsidy is reserved when the invoice is finalized."""

    organization_kinds = [OrganizationKind.BUYER]
    required_scopes = [ApiScope.MARKET_READ]

    @extend_schema(request=QuoteInput, responses=QuoteOutput, operation_id="vouchers_quote")
    def post(self, request: Request) -> Response:
        data = QuoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        lines_in = data.validated_data["lines"]
        providers = {
            p.public_id: p.pk
            for p in selectors.provider_choices().filter(public_id__in=[line["provider"] for line in lines_in])
        }
        lines = []
        for index, line in enumerate(lines_in):
            if line["provider"] not in providers:
                raise ApplicationError("unknown_provider", _("Unknown provider."), field=f"lines[{index}].provider")
            lines.append(
                rules.EligibleLine(
                    amount_minor=line["amount_minor"],
                    currency=line["currency"],
                    provider_id=providers[line["provider"]],
                    chip_domestic=line["chip_domestic"],
                    compute_only=line["compute_only"],
                )
            )
        plan = selectors.voucher_subsidy_quote(buyer=request.organization, lines=lines)  # type: ignore[attr-defined]
        total = sum(line.amount_minor for line in lines)
        payload = {
            "amount_minor": total,
            "subsidy_minor": plan.total_minor,
            "after_subsidy_minor": total - plan.total_minor,
            "refusals": [{"line": r.line_index, "code": r.code} for r in plan.refusals],
        }
        return Response(QuoteOutput(payload).data)


urlpatterns = [
    path("vouchers/programs", ProgramsApi.as_view(), name="vouchers-programs"),
    path("vouchers/applications", ApplicationsApi.as_view(), name="vouchers-applications"),
    path("vouchers/grants", GrantsApi.as_view(), name="vouchers-grants"),
    path("vouchers/quote", QuoteApi.as_view(), name="vouchers-quote"),
]
