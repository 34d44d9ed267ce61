"""Template filters of the calculator pages."""

from __future__ import annotations

from django import template
from tfsp_client.tensors import shortest_float32

register = template.Library()


@register.filter
def get_item(mapping: dict, key: str) -> object:
    """``{{ mapping|get_item:key }}``."""
    return mapping.get(key, "")


@register.filter
def number(value: float) -> str:
    """A float32 value as people write it: 7 rather than 7.0, 0.3 rather than 0.30000001."""
    value = shortest_float32(float(value))
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


@register.filter
def numbers(values: list[float]) -> str:
    """A list of float32 values, comma-separated."""
    return ", ".join(number(v) for v in values)
