"""What `deliver validate` and the `platform/catalog` asset check of datasets against their dbt project.

Everything here reads the parsed manifest only, so it is as cheap as loading the definitions:
models a spec publishes, columns its gates name, models that would land outside the audit
schema, and tests that would run in no dataset's build.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from platform_assets.kinds.dataset.dbt_manifest import REFABLE, models_by_name, upstream_closure
from platform_assets.kinds.dataset.dbt_projects import DbtProject
from platform_assets.specs import Deliverable


def project_problems(project: DbtProject, manifest: Mapping[str, Any], users: list[Deliverable]) -> list[str]:
    known = models_by_name(manifest)
    problems = []
    for deliverable in users:
        spec = deliverable.spec
        unknown = [m for m in spec.dataset.models if m not in known]
        problems += [
            f"{deliverable.path}: field 'dataset.models': '{model}' is not a model of the dbt project {project.dir}; "
            f"add it there or publish one of: {', '.join(sorted(known))}"
            for model in unknown
        ]
        published = [known[m] for m in spec.dataset.models if m in known]
        problems += _gate_columns(deliverable, published)
        problems += _custom_schemas(deliverable, project, manifest, published)
    return problems + _tests_in_no_build(manifest, users)


def _gate_columns(deliverable: Deliverable, published: list[Mapping[str, Any]]) -> list[str]:
    """A freshness column a model's yml does not declare (a model declaring no columns cannot be checked)."""
    gate = deliverable.spec.gates.freshness
    if gate is None:
        return []
    return [
        f"{deliverable.path}: field 'gates.freshness.column': '{gate.column}' is not a column of {node['name']} "
        f"({(node.get('patch_path') or '').split('://')[-1]} declares {', '.join(node['columns'])}); name a load-time "
        "column or set gates.freshness to null"
        for node in published if node.get("columns") and gate.column not in node["columns"]
    ]


def _custom_schemas(deliverable: Deliverable, project: DbtProject, manifest: Mapping[str, Any],
                    published: list[Mapping[str, Any]]) -> list[str]:
    """A build puts every relation in its audit schema; dbt's default `+schema` handling would not."""
    if f"macro.{project.name}.generate_schema_name" in manifest.get("macros", {}):
        return []  # the project decides where relations go; its macro is trusted to use target.schema
    nodes = manifest["nodes"]
    closure = upstream_closure(manifest, [n["unique_id"] for n in published])
    return [
        f"{deliverable.path}: field 'dataset.models': {nodes[uid]['name']} sets a custom schema "
        f"('{nodes[uid]['config']['schema']}' in {nodes[uid]['original_file_path']} or dbt_project.yml), so it "
        "would be built outside the version's audit schema; remove +schema or add a generate_schema_name macro "
        "that returns target.schema"
        for uid in sorted(closure)
        if uid in nodes and nodes[uid]["resource_type"] in REFABLE and nodes[uid].get("config", {}).get("schema")
    ]


def _tests_in_no_build(manifest: Mapping[str, Any], users: list[Deliverable]) -> list[str]:
    """A build runs a test when every node it reads is in the build's selection (the dataset's
    models and all they are built from): a test across two unrelated datasets runs in neither."""
    known = models_by_name(manifest)
    selections = {
        d.name: upstream_closure(manifest, [known[m]["unique_id"] for m in d.spec.dataset.models if m in known])
        for d in users
    }
    owner = {known[m]["unique_id"]: d.name for d in users for m in d.spec.dataset.models if m in known}
    problems = []
    for _, node in sorted(manifest["nodes"].items()):
        if node["resource_type"] != "test":
            continue
        parents = set(node.get("depends_on", {}).get("nodes", []))
        touched = sorted({owner[p] for p in parents if p in owner})
        if len(touched) > 1 and not any(parents <= selection for selection in selections.values()):
            problems.append(
                f"dbt test {node['name']} ({node['original_file_path']}) reads models of {', '.join(touched)}, "
                "which no dataset builds together, so it would run in no build; make one model ref the other "
                "(then the test runs in the downstream dataset) or split the test"
            )
    return problems
