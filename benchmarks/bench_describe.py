"""A plain-data description of a `Definitions`: what the bare module must reproduce.

The bare module is generated from this description of *our* loaded definitions rather than from
the catalog, so it follows whatever the factory builds today. Describing the bare module the same
way and comparing the two is what makes the comparison honest: same keys, deps, checks, groups,
owners, kinds, descriptions, tags, op tags, metadata, resource keys and Definitions shape.

Anything the generator cannot reproduce (partitions, automation conditions, code versions, ...)
is recorded too, so a factory change that adds one shows up as a mismatch instead of being
silently left out of the bare module.
"""

from typing import Any

import dagster as dg

# AssetSpec attributes the generator does not reproduce; recorded so a change is noticed.
_UNSUPPORTED_SPEC_FIELDS = (
    "code_version",
    "automation_condition",
    "partitions_def",
    "freshness_policy",
    "legacy_freshness_policy",
    "skippable",
    "is_virtual",
)
_METADATA_KINDS: dict[type, str] = {
    dg.PathMetadataValue: "path",
    dg.MarkdownMetadataValue: "md",
    dg.TextMetadataValue: "text",
    dg.UrlMetadataValue: "url",
    dg.JsonMetadataValue: "json",
    dg.IntMetadataValue: "int",
    dg.FloatMetadataValue: "float",
    dg.BoolMetadataValue: "bool",
}
KIND_TAG_PREFIX = "dagster/kind/"


def describe_definitions(defs: dg.Definitions) -> dict[str, Any]:
    """Assets (in definition order), resources and the other parts of the Definitions."""
    return {
        "assets": [describe_asset(assets_def) for assets_def in defs.assets or []],
        "resources": {
            key: _describe_resource(value) for key, value in sorted((defs.resources or {}).items())
        },
        "other": {
            "jobs": len(defs.jobs or []),
            "schedules": len(defs.schedules or []),
            "sensors": len(defs.sensors or []),
            "asset_checks": len(defs.asset_checks or []),
            "executor": repr(defs.executor) if defs.executor else None,
            "loggers": sorted(defs.loggers or {}),
            "metadata": {key: repr(value) for key, value in (defs.metadata or {}).items()},
        },
    }


def describe_asset(assets_def: Any) -> dict[str, Any]:
    """One single-asset AssetsDefinition; multi-assets are rejected (the platform makes none)."""
    if not isinstance(assets_def, dg.AssetsDefinition) or len(assets_def.specs) != 1:
        raise ValueError(f"cannot describe {assets_def!r}: only single @asset definitions are supported")
    (spec,) = assets_def.specs
    return {
        "key": list(spec.key.path),
        "deps": [list(dep.asset_key.path) for dep in spec.deps],
        "dep_partition_mappings": [repr(dep.partition_mapping) for dep in spec.deps if dep.partition_mapping],
        "description": spec.description,
        "group_name": spec.group_name,
        "owners": list(spec.owners),
        "kinds": sorted(spec.kinds),
        "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith(KIND_TAG_PREFIX)},
        "metadata": {key: _describe_metadata(value) for key, value in sorted(spec.metadata.items())},
        "op_name": assets_def.op.name,
        "op_tags": dict(sorted((assets_def.op.tags or {}).items())),
        "required_resource_keys": sorted(assets_def.op.required_resource_keys),
        "checks": [_describe_check(check) for check in sorted(assets_def.check_specs, key=lambda c: c.name)],
        "unsupported": {name: repr(getattr(spec, name, None)) for name in _UNSUPPORTED_SPEC_FIELDS},
    }


def _describe_check(check: dg.AssetCheckSpec) -> dict[str, Any]:
    return {
        "name": check.name,
        "description": check.description,
        "blocking": check.blocking,
        "additional_deps": [list(dep.asset_key.path) for dep in check.additional_deps],
        "metadata": {key: _describe_metadata(value) for key, value in sorted((check.metadata or {}).items())},
    }


def _describe_metadata(value: Any) -> dict[str, Any]:
    for cls, kind in _METADATA_KINDS.items():
        if isinstance(value, cls):
            return {"kind": kind, "value": value.value}
    if isinstance(value, str | int | float | bool):
        return {"kind": "raw", "value": value}
    raise ValueError(f"metadata value {value!r} has a type the bare-module generator does not handle")


def _describe_resource(resource: Any) -> dict[str, Any]:
    """Class name and config fields of a ConfigurableResource (pydantic fields, all of them)."""
    if not isinstance(resource, dg.ConfigurableResource):
        raise ValueError(f"resource {resource!r} is not a ConfigurableResource; the generator needs one")
    fields = type(resource).model_fields
    return {
        "class": type(resource).__name__,
        "fields": {
            name: {"required": info.is_required(), "value": getattr(resource, name)}
            for name, info in sorted(fields.items())
        },
    }
