from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from core.forms import PortalForm
from green.models import EnergySource, Registry
from marketplace.models import Site


class LotForm(PortalForm):
    site = forms.ModelChoiceField(label=_("Site"), queryset=Site.objects.none(), to_field_name="public_id")
    registry = forms.ChoiceField(label=_("Registry"), choices=Registry.choices)
    serial_first = forms.IntegerField(label=_("First serial"), min_value=0)
    serial_last = forms.IntegerField(label=_("Last serial"), min_value=0)
    certificate_count = forms.IntegerField(
        label=_("Certificates"), min_value=1, help_text=_("One certificate is 1 MWh.")
    )
    production_month = forms.DateField(
        label=_("Production month"), widget=forms.DateInput(attrs={"type": "month"}), input_formats=["%Y-%m"]
    )
    source = forms.ChoiceField(label=_("Source"), choices=EnergySource.choices)
    province = forms.CharField(label=_("Province code"), max_length=2, help_text=_("GB/T 2260, e.g. 64 (Ningxia)."))
    bundled_with_power = forms.BooleanField(label=_("Bundled with green power (绿电)"), required=False)
    evidence_text = forms.CharField(
        label=_("Declared-for-consumption evidence"), widget=forms.Textarea(attrs={"rows": 2}), required=False
    )
    evidence_file = forms.FileField(label=_("Evidence file"), required=False)

    def __init__(self, *args: Any, organization: Organization | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site_field = self.fields["site"]
        assert isinstance(site_field, forms.ModelChoiceField)
        site_field.queryset = Site.objects.filter(organization=organization)


class LotCsvForm(PortalForm):
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_(
            "Columns: site_id, registry, serial_first, serial_last, certificate_count, production_month (YYYY-MM), "
            "source, province, bundled_with_power, evidence. All lots are saved, or none."
        ),
    )


class GenerationProfileForm(PortalForm):
    site = forms.ModelChoiceField(label=_("Site"), queryset=Site.objects.none(), to_field_name="public_id")
    file = forms.FileField(
        label=_("Hourly generation (CSV)"),
        help_text=_(
            "Columns: hour_start (UTC, e.g. 2026-10-01T08:00:00Z), energy_wh. From a green-power contract or an "
            "on-site meter; an hour uploaded again replaces its figure."
        ),
    )

    def __init__(self, *args: Any, organization: Organization | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site_field = self.fields["site"]
        assert isinstance(site_field, forms.ModelChoiceField)
        site_field.queryset = Site.objects.filter(organization=organization)


class StatementRequestForm(PortalForm):
    month = forms.DateField(label=_("Month"), widget=forms.DateInput(attrs={"type": "month"}), input_formats=["%Y-%m"])
    lease = forms.ChoiceField(label=_("Lease"), required=False, help_text=_("Leave empty for all your leases."))

    def __init__(self, *args: Any, leases: list[tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lease_field = self.fields["lease"]
        assert isinstance(lease_field, forms.ChoiceField)
        lease_field.choices = [("", _("All leases")), *(leases or [])]
