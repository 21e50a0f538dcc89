"""Portal forms of the vouchers app. Amounts are entered in yuan and converted once with core.money.to_minor."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext_lazy as _

from core.forms import PortalForm
from core.money import to_minor
from vouchers import rules
from vouchers.program_templates import template_choices
from vouchers.selectors import provider_choices


def amount_field(label: Any, **kwargs: Any) -> forms.DecimalField:
    return forms.DecimalField(label=label, max_digits=16, decimal_places=2, min_value=Decimal("0.01"), **kwargs)


def day_start(day: date) -> datetime:
    """Midnight of a day in Asia/Shanghai (bureaus count days there), as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=rules.FISCAL_ZONE)


def day_end_exclusive(day: date) -> datetime:
    """The end of a day given inclusively ("valid until 31 December") as the exclusive instant after it."""
    return day_start(day + timedelta(days=1))


def yuan_to_minor(value: Decimal | None, currency: str = "CNY") -> int | None:
    return None if value is None else to_minor(value, currency)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[UploadedFile]:
        if not data:
            return []
        items = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(item, initial) for item in items]


ATTACHMENT_HELP = _("PDF, PNG, JPEG, DOCX or XLSX, at most 10 MB each: the signed contract, quotes, delivery proof.")


class ProgramFromTemplateForm(PortalForm):
    template = forms.ChoiceField(label=_("Rules template"), choices=template_choices, widget=forms.RadioSelect)
    name = forms.CharField(label=_("Name"), max_length=200, required=False, help_text=_("Empty: the template's name."))
    document_number = forms.CharField(label=_("Document number"), max_length=100, required=False)
    fiscal_year = forms.IntegerField(label=_("Fiscal year"), min_value=2020, max_value=2100)
    budget = amount_field(
        _("Budget (yuan)"), required=False, help_text=_("Empty: the figure the policy text publishes.")
    )
    valid_from = forms.DateField(label=_("Valid from"), widget=forms.DateInput(attrs={"type": "date"}))
    valid_until = forms.DateField(label=_("Valid until (inclusive)"), widget=forms.DateInput(attrs={"type": "date"}))
    ratio_model_pct = forms.DecimalField(
        label=_("Ratio for model/API usage (%)"),
        required=False,
        min_value=Decimal(0),
        max_value=Decimal(100),
        max_digits=7,
        decimal_places=4,
        help_text=_(
            "Subsidy ratio for model and API (token) usage, e.g. 50 for Shanghai's model voucher. "
            "Empty: the template's, or the chip-origin ratios of compute capacity."
        ),
    )
    allowed_providers = forms.ModelMultipleChoiceField(
        label=_("Provider allow-list"),
        queryset=provider_choices(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Used when the template restricts providers (e.g. Beijing's compute partners)."),
    )
    contact_name = forms.CharField(label=_("Reporting contact"), max_length=100, required=False)
    contact_phone = forms.CharField(label=_("Contact phone"), max_length=40, required=False)
    contact_email = forms.EmailField(label=_("Contact email"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["allowed_providers"].queryset = provider_choices()  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("valid_from"), data.get("valid_until")
        if start and end and end < start:
            self.add_error("valid_until", _("The end must be after the start."))
        return data

    def ratio_model(self) -> Decimal | None:
        """The model/API ratio entered (0.5 for 50%), None when left empty."""
        value = self.cleaned_data.get("ratio_model_pct")
        return None if value is None else (Decimal(value) / 100).normalize()


class ApplicationForm(PortalForm):
    requested_amount = amount_field(_("Requested subsidy (yuan)"))
    purpose = forms.CharField(
        label=_("What the compute is for"), widget=forms.Textarea(attrs={"rows": 3}), max_length=4000
    )
    contract_reference = forms.CharField(
        label=_("Contract or lease reference"),
        max_length=200,
        required=False,
        help_text=_("One application per contract: the reviewer checks for duplicates."),
    )
    providers = forms.ModelMultipleChoiceField(
        label=_("Providers you will use"),
        queryset=provider_choices(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    planned_usage = forms.CharField(
        label=_("Leases or contracts you will use"),
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=4000,
        help_text=_("E.g. lease numbers, accelerator model and hours."),
    )
    attachments = MultipleFileField(label=_("Attachments"), help_text=ATTACHMENT_HELP)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["providers"].queryset = provider_choices()  # type: ignore[attr-defined]


class RespondForm(PortalForm):
    response = forms.CharField(label=_("Your answer"), widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    attachments = MultipleFileField(label=_("Attachments"), help_text=ATTACHMENT_HELP)


class ApproveForm(PortalForm):
    amount = amount_field(_("Amount granted (yuan)"))
    expires_on = forms.DateField(label=_("Expires after (inclusive)"), widget=forms.DateInput(attrs={"type": "date"}))


class RequestInfoForm(PortalForm):
    message = forms.CharField(label=_("What do you need?"), widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)


class RejectForm(PortalForm):
    reason = forms.CharField(
        label=_("Reason (the applicant sees it)"), widget=forms.Textarea(attrs={"rows": 2}), max_length=4000
    )


class RevokeForm(PortalForm):
    reason = forms.CharField(label=_("Reason"), max_length=4000)


class MarkPaidForm(PortalForm):
    fiscal_reference = forms.CharField(label=_("Fiscal payment reference"), max_length=100)
