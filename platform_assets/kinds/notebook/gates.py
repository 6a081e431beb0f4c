"""The gates of a notebook and the spec fields that configure them.

`outputs` expectations use the platform's one syntax (platform_assets/expectations.py):
`segments: ">= 3"` or `segments: {min: 3}`.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import Field

from platform_assets.expectations import Expectation
from platform_assets.handlers.base import GateResult
from platform_assets.specs import Seconds, StrictModel


class ExecutesGate(StrictModel):
    """Every cell must run without raising; nothing to configure."""


class NotebookGates(StrictModel):
    executes: ExecutesGate = ExecutesGate()
    outputs: dict[str, Expectation] = Field(default_factory=dict)
    runtime_max: Seconds = 900.0


def executes_gate(record: dict[str, Any]) -> GateResult:
    failure = record["failure"]
    where = {"executed_notebook": record["executed_notebook_path"]}
    if failure is None:
        return GateResult("executes", True, f"all {record['cells']} cells ran", where)
    count = f" (In [{failure['execution_count']}])" if failure["execution_count"] else ""
    summary = f"cell {failure['cell']}{count} raised {failure['error']}: {failure['message']}"
    return GateResult("executes", False, summary, {**failure, **where})


def outputs_gate(record: dict[str, Any], expectations: dict[str, Expectation]) -> GateResult:
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
