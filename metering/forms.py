from django import forms
from django.utils.translation import gettext_lazy as _

from core.forms import PortalForm


class SigningKeyForm(PortalForm):
    name = forms.CharField(label=_("Name"), max_length=100, help_text=_("Where the agent runs, e.g. “rack 12”."))
    public_key = forms.CharField(
        label=_("Public key"),
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "font-monospace"}),
        help_text=_("Ed25519, PEM or base64. Run `suanli-agent keygen` on the host and paste what it prints."),
    )


class DisputeForm(PortalForm):
    period_start = forms.DateTimeField(
        label=_("From (whole hour)"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    period_end = forms.DateTimeField(
        label=_("Until (whole hour)"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    reason = forms.CharField(label=_("What went wrong"), max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
    observed_downtime_minutes = forms.IntegerField(
        label=_("Downtime you measured (minutes)"),
        min_value=0,
        required=False,
        help_text=_("Leave empty to claim the shortfall the provider's own reports show."),
    )
    observations = forms.CharField(
        label=_("Your observations"),
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("E.g. job logs, nvidia-smi output, monitoring alerts."),
    )


class DisputeResponseForm(PortalForm):
    provider_response = forms.CharField(
        label=_("Your response"), max_length=4000, widget=forms.Textarea(attrs={"rows": 4})
    )


class DisputeResolveForm(forms.Form):
    """Platform staff decide a dispute (Django admin): for the buyer with a credit they may change, or not."""

    decision = forms.ChoiceField(
        label=_("Decision"),
        choices=[
            ("buyer", _("For the buyer: credit accelerator-hours")),
            ("provider", _("For the provider: no credit")),
        ],
        widget=forms.RadioSelect,
    )
    credited_accelerator_hours = forms.DecimalField(
        label=_("Credit (accelerator-hours)"),
        min_value=0,
        max_digits=14,
        decimal_places=4,
        required=False,
        help_text=_("Empty: the buyer's claim. Never more than the contracted hours of the disputed period."),
    )
    note = forms.CharField(label=_("Resolution note"), max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))

    def credited_accelerator_seconds(self) -> int | None:
        hours = self.cleaned_data.get("credited_accelerator_hours")
        return None if hours is None else int((hours * 3600).to_integral_value())
