"""The home page's calculator form (validation shared with the API in ``operands``)."""

from __future__ import annotations

from django import forms
from django.conf import settings

from calculator_web.operands import OPERATIONS, OperandError, Operands, from_text


class CalculatorForm(forms.Form):
    """Two numbers or comma-separated lists, and an operation."""

    a = forms.CharField(
        label="a", max_length=20000, widget=forms.TextInput(attrs={"placeholder": "3 or 1, 2, 3"})
    )
    operation = forms.ChoiceField(
        choices=[(name, f"{symbol}  {name}") for name, symbol in OPERATIONS.items()], initial="add"
    )
    b = forms.CharField(
        label="b", max_length=20000, widget=forms.TextInput(attrs={"placeholder": "4 or 4, 5, 6"})
    )

    def clean(self) -> dict:
        """Parse both operands together (their lengths must match)."""
        cleaned = super().clean()
        if "a" in cleaned and "b" in cleaned:
            try:
                cleaned["operands"] = from_text(cleaned["a"], cleaned["b"], settings.TFSP_MAX_ELEMENTS)
            except OperandError as error:
                raise forms.ValidationError(str(error)) from None
        return cleaned

    @property
    def operands(self) -> Operands:
        """The validated operands (only after is_valid())."""
        return self.cleaned_data["operands"]
