"""Validation of the calculator's operands, shared by the HTML form and the JSON API.

Every rule gives one line that tells the user what is wrong. Operands are numbers or lists of
numbers (equal lengths); values must fit float32, the model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tfsp_client.tensors import fits_float32

OPERATIONS = {"add": "+", "subtract": "−", "multiply": "×"}


class OperandError(ValueError):
    """Invalid user input; ``str()`` is the message to show."""


@dataclass(frozen=True)
class Operands:
    """Validated operands: two equal-length lists, and whether the user gave scalars."""

    a: list[float]
    b: list[float]
    scalar: bool


def check_operation(operation: object) -> str:
    """Return the operation name or raise OperandError."""
    if not isinstance(operation, str):
        raise OperandError("'operation' must be a string: one of add, subtract, multiply.")
    if operation not in OPERATIONS:
        raise OperandError(f"Unknown operation {operation[:40]!r}: use one of add, subtract, multiply.")
    return operation


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OperandError(
            f"'{name}' must contain only numbers, got {type(value).__name__} {str(value)[:40]!r}."
        )
    try:
        number = float(value)
    except OverflowError:  # an int too large even for float64
        number = math.inf
    if math.isnan(number) or (math.isinf(number) and isinstance(value, float)):
        raise OperandError(f"'{name}' has {str(value)[:40]}, which is not a finite number.")
    if not fits_float32(number):
        raise OperandError(f"'{name}' has {str(value)[:40]}, which does not fit in float32 (about ±3.4e38).")
    return number


def from_json(a: object, b: object, max_elements: int) -> Operands:
    """Validate JSON operands: two numbers, or two equal-length non-empty lists of numbers."""
    for name, value in (("a", a), ("b", b)):
        if value is None:
            raise OperandError(f"'{name}' is required.")
    a_is_list, b_is_list = isinstance(a, list), isinstance(b, list)
    if a_is_list != b_is_list:
        raise OperandError("'a' and 'b' must both be numbers or both be lists of numbers.")
    if not a_is_list:
        return Operands([_number("a", a)], [_number("b", b)], scalar=True)
    return _lists(
        [_number("a", v) for v in _bounded("a", a, max_elements)],
        [_number("b", v) for v in _bounded("b", b, max_elements)],
    )


def _bounded(name: str, values: list, max_elements: int) -> list:
    if not values:
        raise OperandError(f"'{name}' is empty: give at least one number.")
    if len(values) > max_elements:
        raise OperandError(f"'{name}' has {len(values)} numbers; the limit is {max_elements}.")
    return values


def _lists(a: list[float], b: list[float]) -> Operands:
    if len(a) != len(b):
        raise OperandError(
            f"'a' has {len(a)} numbers but 'b' has {len(b)}: the lists must have the same length."
        )
    return Operands(a, b, scalar=False)


def parse_text(name: str, text: str, max_elements: int) -> list[float]:
    """Parse a form field: one number or a comma-separated list of numbers."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise OperandError(f"'{name}' is empty: enter a number or a comma-separated list of numbers.")
    _bounded(name, items, max_elements)
    values = []
    for item in items:
        if not item:
            raise OperandError(f"'{name}' has an empty item: check the commas.")
        try:
            number = float(item)
        except ValueError:
            raise OperandError(f"'{name}' has {item[:40]!r}, which is not a number.") from None
        values.append(_number(name, number))
    return values


def from_text(a: str, b: str, max_elements: int) -> Operands:
    """Validate the form's two text fields."""
    a_values = parse_text("a", a, max_elements)
    b_values = parse_text("b", b, max_elements)
    operands = _lists(a_values, b_values)
    return Operands(operands.a, operands.b, scalar="," not in a and "," not in b)
