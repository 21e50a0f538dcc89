"""Portal forms: parse and show input; rules live in services (errors come back onto the fields)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.urls import reverse_lazy
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from accounts.models import ApiScope, OrganizationKind, Role
from accounts.regions import province_choices
from accounts.sme import industry_choices
from core.errors import ApplicationError
from core.forms import PortalForm
from core.money import CURRENCY_CHOICES

StrOrPromise = str | Promise

# Django 5.2 reworded this message of MinimumLengthValidator and its own zh_Hans catalogue has no translation
# for the new wording yet. Marking it here puts it in ours (LOCALE_PATHS come before Django's catalogues).
DJANGO_MESSAGES_TRANSLATED_HERE = (
    ngettext_lazy(
        "This password is too short. It must contain at least %d character.",
        "This password is too short. It must contain at least %d characters.",
        "min_length",
    ),
)


def apply_application_error(form: forms.Form, error: ApplicationError) -> None:
    """Show a service's errors beside the fields they concern (or above the form)."""
    for item in error.errors:
        field = item.field.split(".")[0].split("[")[0] if item.field else None
        form.add_error(field if field in form.fields else None, str(item.message))


class EmailLoginForm(AuthenticationForm, PortalForm):
    username = forms.EmailField(
        label=_("Email"), widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )


class SignupForm(PortalForm):
    full_name = forms.CharField(label=_("Your name"), max_length=150)
    email = forms.EmailField(label=_("Email"), widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        label=_("Password"),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 10 characters, not only digits, not a common password."),
    )
    organization_name = forms.CharField(label=_("Organisation name"), max_length=200)
    organization_kind = forms.ChoiceField(
        label=_("I am"),
        choices=[
            (OrganizationKind.BUYER, _("a buyer of compute (enterprise, lab, start-up)")),
            (OrganizationKind.PROVIDER, _("a provider of compute (data centre, cloud)")),
            (OrganizationKind.ISSUER, _("a voucher-issuing bureau (verified by the platform)")),
        ],
        widget=forms.RadioSelect,
        initial=OrganizationKind.BUYER,
    )


class OrganizationForm(PortalForm):
    name = forms.CharField(label=_("Organisation name"), max_length=200)
    billing_currency = forms.ChoiceField(label=_("Billing currency"), choices=CURRENCY_CHOICES)


class InvitationForm(PortalForm):
    email = forms.EmailField(label=_("Email"))
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)


class RoleForm(PortalForm):
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class ApiKeyForm(PortalForm):
    name = forms.CharField(
        label=_("Name"), max_length=50, help_text=_("Where the key is used, e.g. “agent on rack 12”.")
    )
    scopes = forms.MultipleChoiceField(label=_("Scopes"), choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple)


def _with_blank(choices: list[tuple[str, str]]) -> list[tuple[str, StrOrPromise]]:
    """A select that starts empty, so that nobody keeps the first entry by accident."""
    return [("", _("Choose…")), *choices]


class CompanyProfileForm(PortalForm):
    legal_name = forms.CharField(label=_("Registered company name"), max_length=200)
    uscc = forms.CharField(
        label=_("Unified social credit code (统一社会信用代码)"),
        max_length=18,
        min_length=18,
        help_text=_("18 characters, on the business licence (营业执照)."),
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "characters",
                "class": "font-monospace",
                # Checked as the user types (views.uscc_check); portal.js marks the field valid or invalid.
                "hx-get": reverse_lazy("accounts:uscc-check"),
                "hx-trigger": "input changed delay:300ms, blur",
                "hx-target": "#uscc-feedback",
                "hx-swap": "outerHTML",
                "hx-sync": "this:replace",
                "data-live-check": "",
            }
        ),
    )
    registered_province = forms.ChoiceField(
        label=_("Province of registration"), choices=_with_blank(province_choices())
    )
    registered_city = forms.CharField(label=_("City of registration"), max_length=100)
    industry = forms.ChoiceField(label=_("Industry"), choices=_with_blank(industry_choices()))
    employees = forms.IntegerField(label=_("Employees"), min_value=0, required=False)
    annual_revenue_wan = forms.DecimalField(
        label=_("Operating revenue last year (10,000 CNY)"),
        min_value=0,
        max_digits=14,
        decimal_places=2,
        required=False,
    )
    total_assets_wan = forms.DecimalField(
        label=_("Total assets (10,000 CNY)"), min_value=0, max_digits=14, decimal_places=2, required=False
    )
    founded_on = forms.DateField(
        label=_("Date of establishment"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    legal_representative = forms.CharField(label=_("Legal representative"), max_length=100)
    address = forms.CharField(label=_("Registered address"), max_length=300, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=40, required=False)
    bank_name = forms.CharField(label=_("Bank"), max_length=200, required=False)
    bank_account = forms.CharField(label=_("Bank account"), max_length=64, required=False)
    shareholders = forms.CharField(
        label=_("Shareholders"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One per line: name, unified social credit code (empty for a person), share %"),
    )


class InvitedSignupForm(PortalForm):
    """Sign-up from an invitation: the e-mail address and the organisation come from the invitation."""

    full_name = forms.CharField(label=_("Your name"), max_length=150)
    password = forms.CharField(
        label=_("Password"),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 10 characters, not only digits, not a common password."),
    )
