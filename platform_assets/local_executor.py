"""The executor of `local` mode: a run whose steps can only run one after another (one deliverable's
stages) runs them in the run's own process; any other run gives each step a process of its own.

A step process buys a chain nothing: no two of its steps can overlap, a crashed step fails the run
either way, and a deliverable's own code never runs in the step (it runs in its sandbox process,
with the minimal environment). What it costs is a forkserver's boot (an interpreter, `import
dagster`, the location) and a fork per step, about a third of a one-service delivery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg


def is_chain(plan: Any) -> bool:
    """No two steps of the plan can be in flight at once: one step per level (a step's level is one
    more than its deepest dependency's, so each depends on every step of the levels before)."""
    return all(len(level) == 1 for level in plan.get_steps_to_execute_by_level())


class ChainInRunExecutor(dg.Executor):
    """Dagster's multiprocess executor, except for chains, which Dagster's in-process executor runs."""

    def __init__(self, forked: dg.Executor, in_run: dg.Executor):
        self._forked = forked
        self._in_run = in_run

    @property
    def retries(self) -> Any:
        return self._forked.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._forked.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[Any]:
        chosen = self._in_run if is_chain(execution_plan) else self._forked
        return chosen.execute(plan_context, execution_plan)


@dg.executor(name=dg.multiprocess_executor.name, config_schema=dg.multiprocess_executor.config_schema,
             requirements=dg.multiple_process_executor_requirements())
def chain_in_run_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """The multiprocess executor's config (start method, preload, retries, limits); both executors
    are built by Dagster's own definitions from it."""
    return ChainInRunExecutor(dg.multiprocess_executor.executor_creation_fn(init_context),  # type: ignore[misc]
                              dg.in_process_executor.executor_creation_fn(init_context))  # type: ignore[misc]
