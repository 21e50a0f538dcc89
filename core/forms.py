"""Form base class: Bootstrap classes on every widget, and ``is-invalid`` on fields with errors."""

from __future__ import annotations

from typing import Any

from django import forms

_CHOICE_WIDGETS = (forms.CheckboxSelectMultiple, forms.RadioSelect)


class PortalForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            if isinstance(widget, (_CHOICE_WIDGETS, forms.CheckboxInput)):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()

    def full_clean(self) -> None:
        super().full_clean()
        self.mark_invalid()

    def mark_invalid(self) -> None:
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                if "is-invalid" not in widget.attrs.get("class", ""):
                    widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()

    def add_error(self, field: str | None, error: Any) -> None:
        super().add_error(field, error)
        self.mark_invalid()
