"""What runs where: the versions each environment serves, read from the Dagster event log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from platform_assets.catalog import Catalog
from platform_assets.records import env_key, evaluate_key, latest_records
from platform_assets.settings import PlatformSettings


@dataclass
class DeliverableStatus:
    name: str
    kind: str
    owner: str
    versions: dict[str, str | None] = field(default_factory=dict)
    gates: str = "-"
    endpoint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_status(
    instance: dg.DagsterInstance, catalog: Catalog, settings: PlatformSettings
) -> list[DeliverableStatus]:
    """One batched event-log query for every deliverable and environment (records only: an event
    reported by hand never shows as what an environment runs)."""
    keys = [evaluate_key(d.name) for d in catalog]
    keys += [env_key(d.name, env) for d in catalog for env in settings.environment_names]
    records = latest_records(instance, keys)
    rows = []
    for deliverable in catalog:
        row = DeliverableStatus(deliverable.name, deliverable.kind, deliverable.spec.owner)
        for env in settings.environment_names:
            deployed = records[env_key(deliverable.name, env)]
            row.versions[env] = deployed.version if deployed else None
            if deployed:
                row.endpoint = _endpoint(deployed.metadata) or row.endpoint
        evaluated = records[evaluate_key(deliverable.name)]
        if evaluated:
            failed = evaluated.metadata.get("failed_gates") or []
            verdict = "passed" if not failed else f"failed: {', '.join(failed)}"
            row.gates = f"{evaluated.version} {verdict}"
        rows.append(row)
    return rows


def _endpoint(metadata: dict[str, Any]) -> str | None:
    """Where consumers find a deployment: a URL for services and notebook reports, published tables for datasets."""
    if metadata.get("url"):
        return str(metadata["url"])
    tables = metadata.get("tables")
    return ", ".join(tables) if isinstance(tables, list) and tables else None


def format_table(rows: list[DeliverableStatus], environments: list[str]) -> str:
    header = ["DELIVERABLE", "KIND", "OWNER", *(env.upper() for env in environments), "LAST GATES", "ENDPOINT"]
    body = [
        [r.name, r.kind, r.owner, *(r.versions.get(env) or "-" for env in environments), r.gates, r.endpoint or "-"]
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *body])
