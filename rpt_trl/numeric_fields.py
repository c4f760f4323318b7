"""Refuse a boolean (or a fraction) where a configuration dataclass declares a number.

YAML turns `thought_budget: true` into `True`, and Python's `True` is the integer 1: without this check the budget
would silently be 1 token. TrlParser applies a YAML file's values without argparse's type conversion, so the
dataclass is the first place that sees them.
"""

import dataclasses
import functools
import types
import typing
from typing import Any


@functools.cache
def numeric_fields(cls: type) -> dict[str, type]:
    """Field name -> `int` or `float`, for every field of the dataclass `cls` declared as a number (or `None`)."""
    hints = typing.get_type_hints(cls)
    numbers = {}
    for field in dataclasses.fields(cls):
        hint = hints.get(field.name)
        is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        options = [option for option in (typing.get_args(hint) if is_union else (hint,)) if option is not type(None)]
        if len(options) == 1 and options[0] in (int, float):
            numbers[field.name] = options[0]
    return numbers


def check_numeric_fields(instance: Any) -> None:
    """Raise a `ValueError` naming the first numeric field of `instance` that holds a boolean or, for an integer
    field, a number with a fraction.

    Args:
        instance: A dataclass instance (an `RPTConfig`, a `NextTokenSettings`).

    Example:
        >>> from rpt_trl.data.builder import NextTokenSettings
        >>> settings = NextTokenSettings()
        >>> settings.position_stride = True
        >>> check_numeric_fields(settings)
        Traceback (most recent call last):
        ...
        ValueError: position_stride must be an integer, got the boolean True (a YAML `true`?); write a number.
    """
    for name, kind in numeric_fields(type(instance)).items():
        value = getattr(instance, name, None)
        expected = "an integer" if kind is int else "a number"
        if isinstance(value, bool):
            raise ValueError(
                f"{name} must be {expected}, got the boolean {value} (a YAML `{str(value).lower()}`?); write a number."
            )
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name} must be an integer, got {value}.")
