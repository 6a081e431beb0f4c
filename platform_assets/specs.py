"""The fields every deliverable spec has; each kind's handler extends `DeliverableSpec`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_LABEL_HINT = "a DNS label: lower-case letters, digits and '-', at most 63, starting and ending alphanumeric"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(value: Any) -> Any:
    """A duration: seconds as a number, or '90s', '5m', '1h', '7d'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a duration; write seconds (300) or '90s', '5m', '1h', '7d'")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Seconds = Annotated[float, BeforeValidator(duration_s), Field(gt=0)]


def cron(value: str) -> str:
    """A cron expression of five fields (UTC), or a ValueError saying how to write one."""
    from croniter import croniter

    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a cron expression; write five fields (minute hour day month "
                         "weekday, UTC), e.g. '0 3 * * *' for 03:00 every day")
    return value


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a spec must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Promotion(StrictModel):
    mode: Literal["auto", "manual"] = "auto"
    approvers: list[str] = Field(default_factory=list)
    # An approval older than this no longer counts (unset: approvals do not expire).
    max_age: Seconds | None = None

    @model_validator(mode="after")
    def _manual_needs_approvers(self) -> Promotion:
        if self.mode == "manual" and not self.approvers:
            raise ValueError("manual promotion needs at least one approver in 'approvers'")
        return self


class DeliverableSpec(StrictModel):
    name: str = Field(pattern=DNS_LABEL)
    kind: str
    owner: str = Field(pattern=DNS_LABEL)
    description: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    compute: str | None = None
    gates: StrictModel = Field(default_factory=StrictModel)
    promotion: dict[str, Promotion] = Field(default_factory=dict)
    schedule: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return value if value is None else cron(value)

    def policy(self, env: str) -> Promotion:
        return self.promotion.get(env, Promotion())


@dataclass(frozen=True)
class Deliverable:
    """A validated spec and the file it came from (sources sit beside it)."""

    spec: DeliverableSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def folder(self) -> Path:
        return self.path.parent
