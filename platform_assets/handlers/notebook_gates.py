"""The gates of a notebook and the spec fields that configure them.

`outputs` expectations are written the way people say them (`segments: ">= 3"`) or as a mapping
(`segments: {min: 3}`); both become an `OutputExpectation`, and a malformed one is a spec error
that names the field and shows both forms.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from platform_assets.handlers.base import GateResult
from platform_assets.specs import StrictModel

_OPERATORS = {">=": "min", ">": "gt", "<=": "max", "<": "lt", "==": "equals"}
_SYMBOLS = {field: op for op, field in _OPERATORS.items()}
_EXPRESSION = re.compile(r"^\s*(>=|<=|==|>|<)\s*(\S.*?)\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600}
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


def _seconds(value: Any) -> Any:
    """A duration: seconds as a number, or '90s', '5m', '1h'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a duration; write seconds (300) or '90s', '5m', '1h'")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


class OutputExpectation(StrictModel):
    """Bounds on one value the notebook records; every bound given must hold."""

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


class ExecutesGate(StrictModel):
    """Every cell must run without raising; nothing to configure."""


class NotebookGates(StrictModel):
    executes: ExecutesGate = ExecutesGate()
    outputs: dict[str, OutputExpectation] = Field(default_factory=dict)
    runtime_max: Seconds = 900.0


def executes_gate(record: dict[str, Any]) -> GateResult:
    failure = record["failure"]
    where = {"executed_notebook": record["executed_notebook_path"]}
    if failure is None:
        return GateResult("executes", True, f"all {record['cells']} cells ran", where)
    count = f" (In [{failure['execution_count']}])" if failure["execution_count"] else ""
    summary = f"cell {failure['cell']}{count} raised {failure['error']}: {failure['message']}"
    return GateResult("executes", False, summary, {**failure, **where})


def outputs_gate(record: dict[str, Any], expectations: dict[str, OutputExpectation]) -> GateResult:
    recorded: dict[str, Any] = record["outputs"]
    problems = []
    for name, expectation in expectations.items():
        if name in recorded:
            problem = expectation.problem(name, recorded[name])
        else:
            close = difflib.get_close_matches(name, list(recorded), n=1)
            problem = f"{name} was not recorded by the notebook" + (
                " (it stopped before recording it)" if record["failure"] else
                f"; did you mean '{close[0]}'?" if close else
                f"; it recorded: {', '.join(sorted(recorded)) or 'nothing'}")
        if problem:
            problems.append(problem)
    met = [f"{name} = {recorded[name]!r} ({e.describe()})" for name, e in expectations.items() if name in recorded]
    summary = "; ".join(problems) or ", ".join(met) or (
        f"no expectations declared; recorded: {', '.join(sorted(recorded)) or 'nothing'}")
    metadata = {"recorded": recorded, "expectations": {name: e.describe() for name, e in expectations.items()},
                "failures": problems}
    return GateResult("outputs", not problems, summary, metadata)


def runtime_gate(record: dict[str, Any], limit_s: float) -> GateResult:
    runtime = record["runtime_s"]
    slowest = ", ".join(f"cell {c['cell']} {c['seconds']:.1f}s" for c in record["slowest_cells"])
    passed = runtime <= limit_s
    summary = (f"ran in {runtime:.1f}s (limit {limit_s:g}s)" if passed
               else f"ran {runtime:.1f}s, over the limit of {limit_s:g}s; slowest: {slowest or 'unknown'}")
    return GateResult("runtime_max", passed, summary,
                      {"runtime_s": runtime, "limit_s": limit_s, "slowest_cells": record["slowest_cells"]})
