"""dbt models and tests as Dagster assets and checks, read from dbt's manifest.json.

Importing dagster_dbt imports dbt (about 1.7 s here, paid by every run worker and step pod), so
the definitions path builds the specs from the manifest JSON and leaves dbt itself to the run:
`dbt_runtime.py`, imported inside the op, executes with dagster-dbt's DbtCliResource and a
translator that uses the same `dbt_asset_key` as this module, so the events line up.

The manifest is prepared at install or image-build time (`python -m platform_assets.kinds.dataset.dbt_manifest`);
a load only parses again when the project's content changed (dbt_projects.DbtProject.cache_dir).
"""


import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from platform_assets.kinds.dataset.dbt_child import dbt_env
from platform_assets.kinds.dataset.dbt_projects import PLATFORM_PREFIX, DbtProject
from platform_assets.workspace import identifier

REFABLE = ("model", "seed", "snapshot")


class ManifestError(Exception):
    """The dbt project does not parse; the message carries dbt's own output."""


def dbt_executable() -> str:
    """The venv's `platform-dbt` (dbt in a minimal environment, dbt_child.py), even when the venv
    is not activated."""
    beside = Path(sys.executable).parent / "platform-dbt"
    return str(beside) if beside.exists() else shutil.which("platform-dbt") or str(beside)


def ensure_manifest(project: DbtProject) -> Path:
    """manifest.json of the project's current content, parsed once into the platform's cache."""
    folder = project.cache_dir()
    path = folder / "target" / "manifest.json"
    if path.exists():
        return path
    staged = folder.with_name(f".{folder.name}-{uuid.uuid4().hex[:8]}")
    completed = subprocess.run(
        [dbt_executable(), "parse", "--project-dir", str(project.dir), "--profiles-dir", str(project.profiles_dir()),
         "--target-path", str(staged / "target"), "--log-path", str(staged / "logs"), "--quiet"],
        capture_output=True, text=True, env=dbt_env(os.environ, {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}),
    )
    if completed.returncode != 0 or not (staged / "target" / "manifest.json").exists():
        shutil.rmtree(staged, ignore_errors=True)
        raise ManifestError(f"dbt parse of {project.dir} failed:\n{(completed.stdout + completed.stderr)[-3000:]}")
    try:
        staged.rename(folder)  # whole or not at all: a reader never sees a half-written parse
    except OSError:  # another process parsed the same content first
        shutil.rmtree(staged, ignore_errors=True)
    return path


def load_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def dbt_asset_key(node: Mapping[str, Any], prefix: str = PLATFORM_PREFIX) -> dg.AssetKey:
    """One naming rule for load time and run time: `<project prefix>/<model>`; a source is
    `<source>/<table>` unless its `meta.dagster.asset_key` names the asset it reads (dagster-dbt's
    convention, used for another project's published model)."""
    if node["resource_type"] == "source":
        named = ((node.get("meta") or {}).get("dagster") or {}).get("asset_key")
        return dg.AssetKey(named) if named else dg.AssetKey([node["source_name"], node["name"]])
    return dg.AssetKey([prefix, node["name"]])


def models_by_name(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] in REFABLE}


def upstream_closure(manifest: Mapping[str, Any], unique_ids: Iterable[str]) -> set[str]:
    """The nodes and everything they are built from (models, seeds, snapshots, sources)."""
    nodes = {**manifest["nodes"], **manifest["sources"]}
    seen: set[str] = set()
    stack = list(unique_ids)
    while stack:
        uid = stack.pop()
        if uid in seen or uid not in nodes:
            continue
        seen.add(uid)
        stack.extend(nodes[uid].get("depends_on", {}).get("nodes", []))
    return seen


def team_of_nodes(manifest: Mapping[str, Any], published: Mapping[str, str]) -> dict[str, str]:
    """unique_id -> owning team: a dataset's team owns its models and whatever only they build on.

    `published` maps model name -> team in catalog order; the first dataset to reach a shared
    upstream node owns it.
    """
    by_name = models_by_name(manifest)
    owners: dict[str, str] = {}
    for model, team in published.items():
        if model in by_name:
            for uid in sorted(upstream_closure(manifest, [by_name[model]["unique_id"]])):
                owners.setdefault(uid, team)
    return owners


def dbt_specs(
    manifest: Mapping[str, Any], owners: Mapping[str, str], project: DbtProject, warehouse_type: str = "duckdb"
) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    """AssetSpecs for models/seeds/snapshots (kind tags: dbt and the warehouse in use) and
    AssetCheckSpecs for their tests."""
    nodes = manifest["nodes"]
    known = {**nodes, **manifest["sources"]}
    prefix = project.key_prefix

    def key(node: Mapping[str, Any]) -> dg.AssetKey:
        return dbt_asset_key(node, prefix)

    specs = []
    for uid, node in sorted(nodes.items()):
        if node["resource_type"] not in REFABLE:
            continue
        team = owners.get(uid)
        specs.append(
            dg.AssetSpec(
                key=key(node),
                deps=[key(known[d]) for d in node.get("depends_on", {}).get("nodes", []) if d in known],
                description=node.get("description") or f"dbt {node['resource_type']} {node['name']}",
                group_name=identifier(team) if team else prefix,
                owners=[f"team:{team}"] if team else [],
                kinds={"dbt", warehouse_type},
                tags={"dbt_resource": node["resource_type"]},
                metadata={
                    "dbt_unique_id": uid,
                    "dbt_file": dg.MetadataValue.path(str(project.dir / node["original_file_path"])),
                    **({"dagster/column_schema": _column_schema(node)} if node.get("columns") else {}),
                },
            )
        )
    checks = []
    for node in nodes.values():
        attached = attached_node(manifest, node) if node["resource_type"] == "test" else None
        if attached in nodes and nodes[attached]["resource_type"] in REFABLE:
            checks.append(
                dg.AssetCheckSpec(
                    name=node["name"],
                    asset=key(nodes[attached]),
                    description=node.get("description") or f"dbt test {node['name']}",
                )
            )
    return specs, checks


def attached_node(manifest: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    """The node a dbt test checks, by dagster-dbt's rule (asset_utils.get_asset_check_key_for_test):
    a test with one upstream node checks it; else its `attached_node`; else `meta.dagster.ref`."""
    upstream = set(test.get("depends_on", {}).get("nodes", []))
    attached = next(iter(upstream)) if len(upstream) == 1 else test.get("attached_node")
    ref = ((test.get("config", {}).get("meta") or test.get("meta") or {}).get("dagster") or {}).get("ref")
    if ref:
        package = ref.get("package") or manifest["metadata"]["project_name"]
        attached = next(
            (uid for uid, n in manifest["nodes"].items()
             if (n["name"], n["package_name"], n.get("version")) == (ref["name"], package, ref.get("version"))),
            None,
        )
    return attached


def _column_schema(node: Mapping[str, Any]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, column.get("data_type") or "unknown", description=column.get("description"))
            for name, column in node["columns"].items()
        ]
    )


def warehouse_assets(
    project: DbtProject, published: Mapping[str, str], warehouse_type: str = "duckdb", team: str | None = None
) -> dg.AssetsDefinition | None:
    """A project's dbt models as one subsettable multi-asset; runs `dbt build` into its dev schema.

    With `team` (a code location per team), only the nodes that team owns: a node no published
    model reaches belongs to the team of the project's first publisher, so every node has one
    location. The `duckdb` pool is DuckDB's one-writer limit (the same pool as the dataset
    stages); a PostgreSQL warehouse takes concurrent writers, so its dbt steps run in parallel."""
    manifest_file = ensure_manifest(project)
    manifest = load_manifest(manifest_file)
    owners = team_of_nodes(manifest, published)
    specs, checks = dbt_specs(manifest, owners, project, warehouse_type)
    if team is not None:
        first_publisher = next(iter(published.values()), None)
        held = {uid for uid in manifest["nodes"] if owners.get(uid, first_publisher) == team}
        keys = {dbt_asset_key(manifest["nodes"][uid], project.key_prefix) for uid in held}
        specs = [spec for spec in specs if spec.key in keys]
        checks = [check for check in checks if check.asset_key in keys]
    if not specs:
        return None

    @dg.multi_asset(
        name=f"{project.key_prefix}_dbt",
        specs=specs,
        check_specs=checks,
        can_subset=True,
        required_resource_keys={"warehouse"},
        pool="duckdb" if warehouse_type == "duckdb" else None,
        op_tags={"platform/compute": "dbt"},
    )
    def _warehouse_dbt(context: dg.AssetExecutionContext):
        from platform_assets.kinds.dataset.dbt_runtime import build_selected

        yield from build_selected(context, project, manifest_file)

    return _warehouse_dbt


if __name__ == "__main__":  # `make install` and the image build: parse the platform's project ahead of any load
    from platform_assets.kinds.dataset.dbt_projects import platform_project

    print(ensure_manifest(platform_project()))
