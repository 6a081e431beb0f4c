"""What the runtime sensor decides about one deployment each tick, as plain logic.

Given what a probe saw and what the sensor remembers (its cursor), `supervise` says the live state,
whether to restart, and which `live` evaluations to record: one when the state changes (a restart
records `down`, then `restarting`) and, for a deployment whose `/-/metrics` answered, one every
`record_every_s` with fresh figures; nothing else, so a tick over 1,000 unchanged deployments
writes nothing (each evaluation is a write of the daemon's). A
dead local process is restarted at once, then after `backoff_s`, 2x, 4x... (capped at
`backoff_max_s`); after `max_restarts` within `restart_window_s` it stays `down` until a new deploy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from platform_assets.liveness import DOWN, RESTARTING, UP, Live
from platform_assets.settings import RuntimeConfig


@dataclass(frozen=True)
class Seen:
    """One deployment as a probe found it."""

    deployment: str  # identifies one deploy (a restart keeps it, a new deploy or rollback changes it)
    version: str
    running: bool  # a local process alive, or Kubernetes pods ready
    healthy: bool
    detail: str
    restarts: int | None = None
    pid: int | None = None  # the local process the probe looked at
    can_restart: bool = False  # local processes; Kubernetes restarts its own pods
    starting: bool = False  # a restarted process still within its startup time
    metrics_url: str | None = None  # where its /-/metrics answers (local processes)


@dataclass
class Memory:
    """What the sensor keeps per deployment between ticks (cursor), in short JSON keys."""

    d: str  # the deployment it describes
    s: str | None = None  # last recorded state
    t: float = 0.0  # since when
    rec: float = 0.0  # when last recorded
    r: list[float] = field(default_factory=list)  # restart times within the window
    n: float = 0.0  # no restart before this time (backoff)
    g: bool = False  # gave up: restarted too often, left down until the next deploy
    snap: list[Any] | None = None  # the metrics snapshot at the last record

    def dump(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], 0.0, False)}


@dataclass(frozen=True)
class Decision:
    state: str
    detail: str
    restart: bool
    records: list[Live]
    memory: Memory


def supervise(seen: Seen, memory: Memory | None, policy: RuntimeConfig, now: float,
              log_tail: str = "") -> Decision:
    """The state, restart and records for one deployment at `now` (`log_tail`: a dead process's)."""
    if memory is None or memory.d != seen.deployment:
        memory = Memory(d=seen.deployment)
    memory.r = [t for t in memory.r if now - t < policy.restart_window_s]
    restart, records = False, []
    state, detail = _state(seen)
    if state == DOWN and not seen.running and seen.can_restart:
        exited = f"{seen.detail}" + (f"; last log lines:\n{log_tail}" if log_tail else "")
        if memory.g or len(memory.r) >= policy.max_restarts:
            memory.g = True
            detail = (f"{exited}\nrestarted {policy.max_restarts} time(s) within {policy.restart_window_s}s, the "
                      "most allowed (runtime.max_restarts); left down until the next deploy")
        elif now >= memory.n:
            restart = True
            if memory.s != DOWN:
                records.append(_live(seen, DOWN, now, exited))
            memory.r.append(now)
            memory.n = now + backoff(len(memory.r) + 1, policy)
            state = RESTARTING
            detail = f"restart {len(memory.r)} of at most {policy.max_restarts} started"
            seen = replace(seen, restarts=(seen.restarts or 0) + 1)
        else:
            state, detail = RESTARTING, f"{exited}\nnext restart in {memory.n - now:.0f}s (backoff)"
    changed = state != memory.s or restart
    figures_due = state == UP and memory.snap is not None and now - memory.rec >= policy.record_every_s
    if changed or figures_due:
        since = now if changed else memory.t
        records.append(_live(seen, state, since, detail))
        memory.s, memory.t, memory.rec = state, since, now
    return Decision(state, detail, restart, records, memory)


def _state(seen: Seen) -> tuple[str, str]:
    if seen.running and seen.healthy:
        return UP, seen.detail
    if seen.starting:
        return RESTARTING, seen.detail
    return DOWN, seen.detail


def backoff(attempt: int, policy: RuntimeConfig) -> float:
    """Seconds to wait before restart `attempt` (1-based): none for the first, then doubling."""
    return 0.0 if attempt <= 1 else min(policy.backoff_s * 2 ** (attempt - 2), policy.backoff_max_s)


def _live(seen: Seen, state: str, since: float, detail: str) -> Live:
    return Live(state=state, since=since, version=seen.version, restarts=seen.restarts, detail=detail)
