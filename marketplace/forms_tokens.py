"""Portal forms of the token market: they parse; the rules live in services (errors come back onto the fields)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Organization
from core.forms import PortalForm
from core.timeutils import month_start, utcnow
from marketplace import selectors_tokens
from marketplace.models import Hub, Pool, PoolStatus, SiteStatus
from marketplace.services import TokenBidInput, TokenEndpointInput

MILLION = 1_000_000


def served_model_choices() -> list[Any]:
    return [
        ("", _("Choose…")),
        *[
            (str(m.public_id), f"{m.name} · {m.publisher}")
            for m in selectors_tokens.served_model_list().order_by("publisher", "name")
        ],
    ]


def month_choices(count: int = 12) -> list[tuple[str, str]]:
    first = month_start(utcnow()).date()
    months = []
    for _index in range(count):
        months.append((first.isoformat(), first.strftime("%Y-%m")))
        first = (first + timedelta(days=32)).replace(day=1)
    return months


class TokenEndpointForm(PortalForm):
    pool = forms.ChoiceField(label=_("Pool that serves it"))
    served_model = forms.ChoiceField(label=_("Model"))
    price_input = forms.DecimalField(label=_("¥ per million input tokens"), decimal_places=6, max_digits=20)
    price_output = forms.DecimalField(label=_("¥ per million output tokens"), decimal_places=6, max_digits=20)
    throughput_tokens_per_s = forms.IntegerField(
        label=_("Throughput (tokens/s)"),
        help_text=_("Sustained output of the endpoint. Monthly capacity = tokens/s × 2,592,000 s (30 days)."),
    )

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pools = Pool.objects.filter(
            organization=organization, status=PoolStatus.LISTED, site__status=SiteStatus.ACTIVE
        ).select_related("accelerator_model", "site")
        self.fields["pool"].choices = [  # type: ignore[attr-defined]
            ("", _("Choose…")),
            *[(str(p.public_id), f"{p.name} · {p.accelerator_model.name} · {p.site.name}") for p in pools],
        ]
        self.fields["served_model"].choices = served_model_choices()  # type: ignore[attr-defined]

    def to_input(self) -> TokenEndpointInput:
        data = self.cleaned_data
        return TokenEndpointInput(
            pool_id=data["pool"],
            served_model=data["served_model"],
            price_input=data["price_input"],
            price_output=data["price_output"],
            throughput_tokens_per_s=data["throughput_tokens_per_s"],
        )


class TokenBidForm(PortalForm):
    served_model = forms.ChoiceField(label=_("Model"))
    limit_input = forms.DecimalField(label=_("Limit: ¥ per million input tokens"), decimal_places=6, max_digits=20)
    limit_output = forms.DecimalField(label=_("Limit: ¥ per million output tokens"), decimal_places=6, max_digits=20)
    monthly_tokens = forms.DecimalField(
        label=_("Tokens per month (millions)"), decimal_places=6, max_digits=20, help_text=_("e.g. 500 = 500 million")
    )
    start_month = forms.ChoiceField(label=_("First month"))
    months = forms.IntegerField(label=_("Months"), initial=3)
    input_weight = forms.IntegerField(
        label=_("Input share"),
        initial=3,
        help_text=_("Expected input tokens per output token (3 : 1 by default): weights the two prices."),
    )
    output_weight = forms.IntegerField(label=_("Output share"), initial=1)
    domestic_only = forms.BooleanField(label=_("Domestic accelerators only (国产)"), required=False)
    hubs = forms.MultipleChoiceField(label=_("Hubs (none: any)"), required=False, widget=forms.CheckboxSelectMultiple)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["served_model"].choices = served_model_choices()  # type: ignore[attr-defined]
        self.fields["start_month"].choices = month_choices()  # type: ignore[attr-defined]
        self.fields["hubs"].choices = [(h.code, h.name_zh) for h in Hub.objects.order_by("code")]  # type: ignore[attr-defined]

    def to_input(self) -> TokenBidInput:
        data = self.cleaned_data
        return TokenBidInput(
            served_model=data["served_model"],
            limit_input=data["limit_input"],
            limit_output=data["limit_output"],
            monthly_tokens=int(data["monthly_tokens"] * MILLION),
            start_month=date.fromisoformat(data["start_month"]),
            months=data["months"],
            input_weight=data["input_weight"],
            output_weight=data["output_weight"],
            domestic_only=data["domestic_only"],
            hubs=tuple(data["hubs"]),
        )
