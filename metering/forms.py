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
