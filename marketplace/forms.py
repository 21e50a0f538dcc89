"""Portal forms of the supply side: they parse; the rules live in services (errors come back onto the fields)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.forms.utils import flatatt
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from accounts.regions import province_choices
from core.forms import PortalForm
from marketplace import latency, selectors
from marketplace.models import GridRegion, LatencyTier, PriceUnit, SoftwareStack, Workload
from marketplace.services import AttestationInput, BidInput, PoolInput, ShareInput, SiteInput


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


# --- Market ---------------------------------------------------------------------------------------------

LATENCY_TIER_CHOICES = [
    (latency.Tier.ANY, _("Any distance")),
    (latency.Tier.NEAR, _("Near (≤ ~20 ms)")),
    (latency.Tier.REGION, _("Same region (≤ ~10 ms)")),
]
MARKET_SORT_CHOICES = [
    ("price", _("Price, lowest first")),
    ("-price", _("Price, highest first")),
    ("-green", _("Green share, highest first")),
    ("pue", _("PUE, lowest first")),
    ("hub", _("Hub")),
    ("-created", _("Newest")),
]


def _model_choices() -> list[Any]:
    return [
        (str(m.public_id), f"{m.vendor} {m.name}" + (" · 国产" if m.domestic else ""))
        for m in selectors.accelerator_model_list()
    ]


def _hub_choices() -> list[Any]:
    return [(h.code, f"{h.name_zh} {h.name_en}") for h in selectors.hub_list()]


class FastSelect(forms.Select):
    """A flat <select> rendered in Python: Django renders each option through a template include, which made
    the market filters (some 250 options) the slowest part of the market page. No option groups."""

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        final = self.build_attrs(self.attrs, attrs)
        final["name"] = name
        chosen = "" if value is None else str(value[0] if isinstance(value, list | tuple) and value else value)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((key, mark_safe(" selected") if str(key) == chosen else "", label) for key, label in self.choices),  # nosec B308  # a constant
        )
        return format_html("<select{}>{}</select>", flatatt(final), options)


class MarketFilterForm(PortalForm):
    """The market page's filters (GET): every field optional; an invalid value is ignored, not an error page."""

    unit = forms.ChoiceField(label=_("Price unit"), choices=PriceUnit.choices, required=False, widget=FastSelect)
    sort = forms.ChoiceField(label=_("Sort by"), choices=MARKET_SORT_CHOICES, required=False, widget=FastSelect)
    model = forms.ChoiceField(label=_("Accelerator model"), required=False, widget=FastSelect)
    vendor = forms.ChoiceField(label=_("Vendor"), required=False, widget=FastSelect)
    hub = forms.ChoiceField(label=_("Hub"), required=False, widget=FastSelect)
    province = forms.ChoiceField(
        label=_("Province"), choices=_with_blank(province_choices(), _("Any")), required=False, widget=FastSelect
    )
    domestic = forms.BooleanField(label=_("Domestic (国产) only"), required=False)
    verified = forms.BooleanField(label=_("Verified only"), required=False)
    min_green = forms.DecimalField(
        label=_("Min. green share (%)"),
        required=False,
        min_value=0,
        max_value=100,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "5", "inputmode": "decimal"}),
    )
    max_pue = forms.DecimalField(
        label=_("Max. PUE"),
        required=False,
        min_value=1,
        max_value=3,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.05", "inputmode": "decimal"}),
    )
    min_free = forms.IntegerField(
        label=_("Min. free accelerators"),
        required=False,
        min_value=1,
        max_value=100_000,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )
    workload = forms.ChoiceField(label=_("Workload"), choices=Workload.choices, required=False, widget=FastSelect)
    tier = forms.ChoiceField(
        label=_("Latency (inference)"), choices=LATENCY_TIER_CHOICES, required=False, widget=FastSelect
    )
    near = forms.ChoiceField(
        label=_("Your province"), choices=_with_blank(province_choices()), required=False, widget=FastSelect
    )
    start = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("Until"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, choices: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = _with_blank(  # type: ignore[attr-defined]
            [(str(m.public_id), f"{m.vendor} {m.name}") for m in choices["models"]], _("Any")
        )
        self.fields["vendor"].choices = _with_blank([(v, v) for v in choices["vendors"]], _("Any"))  # type: ignore[attr-defined]
        self.fields["hub"].choices = _with_blank(  # type: ignore[attr-defined]
            [(h.code, f"{h.name_zh}") for h in choices["hubs"]], _("Any")
        )

    def filters(self) -> selectors.MarketFilters:
        """The filters from the valid fields (invalid ones are dropped)."""
        self.is_valid()
        data: dict[str, Any] = {name: self.cleaned_data.get(name) for name in self.fields if name not in self.errors}
        start, end = data.get("start"), data.get("end")
        zone = timezone.get_current_timezone()
        return selectors.MarketFilters(
            accelerator_models=(data["model"],) if data.get("model") else (),
            vendors=(data["vendor"],) if data.get("vendor") else (),
            hubs=(data["hub"],) if data.get("hub") else (),
            provinces=(data["province"],) if data.get("province") else (),
            domestic_only=bool(data.get("domestic")),
            verified_only=bool(data.get("verified")),
            min_green_share_pct=data.get("min_green") or Decimal(0),
            max_pue=data.get("max_pue"),
            workload=data.get("workload") or Workload.TRAINING,
            buyer_province=data.get("near") or "",
            latency_tier=data.get("tier") or latency.Tier.ANY,
            window_start=datetime.combine(start, time.min, tzinfo=zone) if start else None,
            window_end=datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone) if end else None,
            unit=data.get("unit") or PriceUnit.ACCELERATOR_HOUR,
            min_accelerators=data.get("min_free") or 0,
            sort=data.get("sort") or "price",
        )


class BidForm(PortalForm):
    """A capacity bid. Times are local (the portal's zone) whole hours; the rules live in ``services.bid_create``."""

    accelerators = forms.IntegerField(
        label=_("Accelerators"), min_value=1, widget=forms.NumberInput(attrs={"inputmode": "numeric"})
    )
    hours = forms.IntegerField(label=_("Hours"), min_value=1, widget=forms.NumberInput(attrs={"inputmode": "numeric"}))
    earliest_start = forms.DateTimeField(
        label=_("Earliest start"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "3600"}, format="%Y-%m-%dT%H:%M"),
    )
    latest_end = forms.DateTimeField(
        label=_("Latest end"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "3600"}, format="%Y-%m-%dT%H:%M"),
    )
    limit_price = forms.DecimalField(
        label=_("Limit price (¥)"),
        min_value=Decimal("0.000001"),
        max_digits=20,
        decimal_places=6,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )
    price_unit = forms.ChoiceField(label=_("per"), choices=PriceUnit.choices, initial=PriceUnit.ACCELERATOR_HOUR)
    workload = forms.ChoiceField(
        label=_("Workload"), choices=Workload.choices, initial=Workload.TRAINING, widget=forms.RadioSelect
    )
    latency_tier = forms.ChoiceField(
        label=_("Latency (inference)"), choices=LATENCY_TIER_CHOICES, initial=latency.Tier.ANY, required=False
    )
    buyer_province = forms.ChoiceField(
        label=_("Your province"), choices=_with_blank(province_choices()), required=False
    )
    accelerator_models = forms.MultipleChoiceField(
        label=_("Accelerator models"),
        required=False,
        help_text=_("None chosen: any model."),
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    hubs = forms.MultipleChoiceField(
        label=_("Hubs"),
        required=False,
        help_text=_("None chosen: any hub."),
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    min_green_share_pct = forms.IntegerField(
        label=_("Min. green share (%)"), required=False, min_value=0, max_value=100
    )
    max_pue = forms.DecimalField(label=_("Max. PUE"), required=False, decimal_places=2, max_digits=4)
    min_tflops = forms.IntegerField(label=_("Min. attested TFLOPS"), required=False, min_value=0)
    min_memory_gb = forms.IntegerField(label=_("Min. memory (GB)"), required=False, min_value=0)
    domestic_only = forms.BooleanField(label=_("Domestic (国产) only"), required=False)
    verified_only = forms.BooleanField(label=_("Verified only"), required=False)
    split_allowed = forms.BooleanField(
        label=_("Allow splitting across pools"), required=False, help_text=_("Off: all accelerators in one pool.")
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["accelerator_models"].choices = _model_choices()  # type: ignore[attr-defined]
        self.fields["hubs"].choices = _hub_choices()  # type: ignore[attr-defined]
        # Unknown choices are the service's to explain.
        self.fields["accelerator_models"].valid_value = lambda value: True  # type: ignore[attr-defined]
        self.fields["hubs"].valid_value = lambda value: True  # type: ignore[attr-defined]

    def to_input(self) -> BidInput:
        return bid_input_from(self.cleaned_data)


def bid_input_from(data: dict[str, Any]) -> BidInput:
    """A ``BidInput`` from (possibly partial) cleaned data: missing values as the service's defaults."""
    return BidInput(
        accelerators=data.get("accelerators"),
        hours=data.get("hours"),
        earliest_start=data.get("earliest_start"),
        latest_end=data.get("latest_end"),
        limit_price=data.get("limit_price"),
        price_unit=data.get("price_unit") or PriceUnit.ACCELERATOR_HOUR,
        workload=data.get("workload") or Workload.TRAINING,
        latency_tier=data.get("latency_tier") or latency.Tier.ANY,
        buyer_province=data.get("buyer_province") or "",
        accelerator_models=tuple(data.get("accelerator_models") or ()),
        hubs=tuple(data.get("hubs") or ()),
        min_green_share_pct=data.get("min_green_share_pct") or 0,
        max_pue=data.get("max_pue"),
        min_tflops=data.get("min_tflops") or 0,
        min_memory_gb=data.get("min_memory_gb") or 0,
        domestic_only=bool(data.get("domestic_only")),
        verified_only=bool(data.get("verified_only")),
        split_allowed=bool(data.get("split_allowed")),
    )
