"""Expectations on recorded values, as specs write them: `segments: ">= 3"`, `roc_auc: {min: 0.7}`.

One parser for every gate that compares what a deliverable recorded with what its spec demands
(model metrics, notebook outputs), so the syntax and the error messages are the same everywhere.
A string is `<op> <value>`; a mapping names bounds (min, max, gt, lt, equals); a bare value
means `equals`. A malformed one is a spec error that names the field and shows both forms.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import model_validator

from platform_assets.specs import StrictModel

_OPERATORS = {">=": "min", ">": "gt", "<=": "max", "<": "lt", "==": "equals"}
_SYMBOLS = {field: op for op, field in _OPERATORS.items()}
_EXPRESSION = re.compile(r"^\s*(>=|<=|==|>|<)\s*(\S.*?)\s*$")
EXPECTATION_FORMS = (
    "write '<op> <value>' with <op> one of >=, >, <=, <, == (e.g. '>= 3'), "
    "or a mapping with min, max, gt, lt, equals (e.g. {min: 3})"
)


def _expectation_fields(value: Any) -> Any:
    if isinstance(value, str):
        match = _EXPRESSION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not an expectation; {EXPECTATION_FORMS}")
        operator, operand = match.groups()
        field = _OPERATORS[operator]
        number = _number(operand)
        if number is None and field != "equals":
            raise ValueError(f"'{value}': {operator} compares numbers, '{operand}' is not one")
        return {field: number if number is not None else operand.strip("'\"")}
    if isinstance(value, bool | int | float):
        return {"equals": value}
    if isinstance(value, Mapping):
        unknown = [str(key) for key in value if key not in _SYMBOLS]
        if unknown or not value:
            close = difflib.get_close_matches(unknown[0], list(_SYMBOLS), n=1) if unknown else []
            hint = f"did you mean '{close[0]}'? " if close else ""
            what = f"unknown field '{unknown[0]}'" if unknown else "an empty expectation"
            raise ValueError(f"{what}; {hint}{EXPECTATION_FORMS}")
        return value
    raise ValueError(f"{value!r} is not an expectation; {EXPECTATION_FORMS}")


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


class Expectation(StrictModel):
    """Bounds on one recorded value (a metric, a notebook output); every bound given must hold."""

    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    equals: bool | float | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_expression(cls, value: Any) -> Any:
        return _expectation_fields(value)

    def describe(self) -> str:
        bounds = {name: getattr(self, name) for name in _SYMBOLS if getattr(self, name) is not None}
        return ", ".join(f"{_SYMBOLS[name]} {value:g}" if isinstance(value, float) else f"{_SYMBOLS[name]} {value!r}"
                         for name, value in bounds.items())

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` does not meet this expectation (None when it does)."""
        if self.equals is not None and value != self.equals:
            return f"{name} is {value!r}, expected == {self.equals!r}"
        bounds = [(self.min, ">=", float.__ge__), (self.gt, ">", float.__gt__),
                  (self.max, "<=", float.__le__), (self.lt, "<", float.__lt__)]
        for bound, symbol, holds in bounds:
            if bound is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{name} is {value!r}, not a number to compare with {symbol} {bound:g}"
            if not holds(float(value), bound):
                return f"{name} is {value:g}, expected {symbol} {bound:g}"
        return None
