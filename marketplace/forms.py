"""Portal forms of the supply side: they parse; the rules live in services (errors come back onto the fields)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from accounts.regions import province_choices
from core.forms import PortalForm
from marketplace import selectors
from marketplace.models import GridRegion, LatencyTier, SoftwareStack
from marketplace.services import AttestationInput, PoolInput, ShareInput, SiteInput


def _with_blank(choices: list[Any], label: Any = None) -> list[Any]:
    return [("", label or _("Choose…")), *choices]


def cluster_choices() -> list[Any]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for cluster in selectors.cluster_list():
        hub = cluster.hub
        groups.setdefault(f"{hub.name_zh} {hub.name_en}", []).append((str(cluster.public_id), cluster.name_zh))
    return [("", _("None: outside the 东数西算 clusters")), *groups.items()]


def accelerator_choices() -> list[Any]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for model in selectors.accelerator_model_list():
        label = f"{model.vendor}" + (" · 国产" if model.domestic else "")
        groups.setdefault(label, []).append((str(model.public_id), f"{model.vendor} {model.name}"))
    return _with_blank(list(groups.items()))


class SiteForm(PortalForm):
    name = forms.CharField(label=_("Site name"), max_length=120)
    province = forms.ChoiceField(label=_("Province"), choices=_with_blank(province_choices()))
    city = forms.CharField(label=_("City"), max_length=60)
    cluster = forms.ChoiceField(
        label=_("东数西算 hub cluster"),
        required=False,
        help_text=_("The national hub cluster the site belongs to, if any; it sets the hub."),
    )
    grid_region = forms.ChoiceField(label=_("Grid region"), choices=_with_blank(GridRegion.choices))
    pue = forms.DecimalField(
        label=_("Measured PUE"),
        decimal_places=2,
        max_digits=6,
        help_text=_("Total facility energy / IT energy over the period below, e.g. 1.25."),
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
    )
    pue_period_start = forms.DateField(
        label=_("Measured from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    pue_period_end = forms.DateField(
        label=_("Measured until"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    green_share_pct = forms.DecimalField(
        label=_("Green-power share (%)"),
        decimal_places=2,
        max_digits=7,
        required=False,
        initial=0,
        widget=forms.NumberInput(attrs={"step": "0.1", "inputmode": "decimal"}),
    )
    latency_tier = forms.ChoiceField(label=_("Latency tier"), choices=_with_blank(LatencyTier.choices))
    dengbao_level = forms.TypedChoiceField(
        label=_("等保 level (MLPS)"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=_with_blank([(n, str(n)) for n in range(1, 6)], _("Not certified")),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["cluster"].choices = cluster_choices()  # type: ignore[attr-defined]

    def to_input(self) -> SiteInput:
        data = self.cleaned_data
        return SiteInput(
            name=data["name"],
            province=data["province"],
            city=data["city"],
            cluster_id=data["cluster"] or None,
            grid_region=data["grid_region"],
            pue=data["pue"],
            pue_period_start=data["pue_period_start"],
            pue_period_end=data["pue_period_end"],
            green_share_pct=data["green_share_pct"],
            latency_tier=data["latency_tier"],
            dengbao_level=data["dengbao_level"],
        )


def parse_shares(text: str) -> list[ShareInput]:
    """Lines of “organisation ID or 统一社会信用代码, percent”."""
    shares = []
    for number, line in enumerate(filter(None, (raw.strip() for raw in text.splitlines())), start=1):
        parts = [part.strip() for part in line.replace("，", ",").rsplit(",", 1)]
        if len(parts) != 2 or not parts[0]:
            raise forms.ValidationError(
                _("Line %(n)d: write the owner, a comma, and the share in %%."), code="invalid", params={"n": number}
            )
        try:
            share = Decimal(parts[1].rstrip("%").strip())
        except InvalidOperation:
            raise forms.ValidationError(
                _("Line %(n)d: the share is not a number."), code="invalid", params={"n": number}
            ) from None
        shares.append(ShareInput(owner=parts[0], share_pct=share))
    return shares


class PoolForm(PortalForm):
    site = forms.ChoiceField(label=_("Site"))
    accelerator_model = forms.ChoiceField(label=_("Accelerator model"))
    name = forms.CharField(label=_("Pool name"), max_length=120, help_text=_("e.g. “Hall B, rack 3-6”."))
    accelerator_count = forms.IntegerField(
        label=_("Number of accelerators"), widget=forms.NumberInput(attrs={"inputmode": "numeric"})
    )
    interconnect = forms.CharField(
        label=_("Interconnect"),
        max_length=200,
        required=False,
        help_text=_("e.g. NVLink 4 within 8-GPU nodes, 400G RoCE."),
    )
    software_stack = forms.ChoiceField(
        label=_("Software stack"),
        required=False,
        choices=_with_blank(SoftwareStack.choices, _("The model's usual stack")),
    )
    shares = forms.CharField(
        label=_("Revenue-share owners (合作分成)"),
        widget=forms.Textarea(attrs={"rows": 3, "class": "font-monospace", "spellcheck": "false"}),
        help_text=_(
            "One owner per line: organisation ID or 统一社会信用代码, then the share in %. The shares must add up "
            "to exactly 100."
        ),
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].choices = _with_blank(  # type: ignore[attr-defined]
            [(str(s.public_id), s.name) for s in selectors.site_list(organization)]
        )
        self.fields["accelerator_model"].choices = accelerator_choices()  # type: ignore[attr-defined]
        # Unknown choices are the service's to explain (one message for the portal and the API).
        self.fields["site"].valid_value = lambda value: True  # type: ignore[attr-defined]
        self.fields["accelerator_model"].valid_value = lambda value: True  # type: ignore[attr-defined]

    def clean_shares(self) -> list[ShareInput]:
        return parse_shares(self.cleaned_data["shares"])

    def to_input(self) -> PoolInput:
        data = self.cleaned_data
        return PoolInput(
            site_id=data["site"],
            accelerator_model_id=data["accelerator_model"],
            name=data["name"],
            accelerator_count=data["accelerator_count"],
            interconnect=data["interconnect"],
            software_stack=data["software_stack"],
            shares=data["shares"],
        )


class AttestationForm(PortalForm):
    measured_tflops = forms.DecimalField(
        label=_("Measured dense FP16/BF16 TFLOPS per accelerator"),
        max_digits=10,
        decimal_places=3,
        help_text=_("From a large GEMM run (suanli-probe prints it)."),
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    measured_bw_tbps = forms.DecimalField(
        label=_("Measured memory bandwidth per accelerator (TB/s)"),
        max_digits=8,
        decimal_places=4,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    tokens_per_s = forms.DecimalField(
        label=_("Tokens/s (optional)"),
        max_digits=12,
        decimal_places=2,
        required=False,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    reference_model = forms.CharField(
        label=_("on reference model"), max_length=120, required=False, help_text=_("e.g. Qwen2.5-7B-Instruct")
    )
    reference_latency_ms = forms.IntegerField(label=_("at latency (ms)"), required=False, min_value=1)
    tool = forms.CharField(label=_("Tool and version"), max_length=200, required=False, initial="suanli-probe")
    raw_output = forms.CharField(
        label=_("Raw benchmark output"),
        widget=forms.Textarea(attrs={"rows": 6, "class": "font-monospace", "spellcheck": "false"}),
        help_text=_("Paste the complete output; it is kept with the attestation."),
    )
    request_review = forms.BooleanField(
        label=_("Figures above 1.5 x the datasheet are right: send them to platform staff for review"),
        required=False,
    )

    def to_input(self) -> AttestationInput:
        return AttestationInput(**self.cleaned_data)
