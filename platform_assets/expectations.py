"""Threshold expressions in specs, such as `roc_auc: ">= 0.70"`.

One parser for every gate that compares recorded numbers with what a spec demands, so the
syntax and the error messages are the same for metrics, notebook outputs and anything else.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}
_EXPRESSION = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Expectation:
    name: str
    op: str
    bound: float

    def holds(self, value: float) -> bool:
        return OPERATORS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.bound:g}"


def parse_expectation(name: str, text: str | float | int) -> Expectation:
    """`">= 0.7"` (a bare number means `>=`); raises ValueError saying what is accepted."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return Expectation(name, ">=", float(text))
    match = _EXPRESSION.match(str(text))
    if not match:
        raise ValueError(
            f"'{text}' for {name} is not a threshold; write an operator ({', '.join(OPERATORS)}) and a number, "
            "e.g. \">= 0.70\""
        )
    return Expectation(name, match.group(1), float(match.group(2)))


def check(expectations: list[Expectation], values: dict[str, float]) -> tuple[list[str], list[str]]:
    """(met, unmet) descriptions; a value that was never recorded is unmet."""
    met, unmet = [], []
    for expectation in expectations:
        value = values.get(expectation.name)
        if value is None:
            unmet.append(f"{expectation.name} was not recorded (expected {expectation})")
        elif expectation.holds(value):
            met.append(f"{expectation.name} = {value:.4g} ({expectation})")
        else:
            unmet.append(f"{expectation.name} = {value:.4g}, expected {expectation}")
    return met, unmet
