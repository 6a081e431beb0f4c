"""A plain-data description of a `Definitions`: what the bare module must reproduce.

The bare module is generated from this description of *our* loaded definitions rather than from
the catalog, so it follows whatever the factory builds today. Describing the bare module the same
way and comparing the two is what makes the comparison honest: same op names, outputs and inputs,
keys, deps, checks, groups, owners, kinds, descriptions, tags, op tags, metadata (TableSchema
column schemas included), pools, subsetting, resource keys, resources and Definitions shape.

Every AssetsDefinition is described the same way, a single `@asset` and a `@multi_asset` alike:
op-level facts (op name, output and input names, op tags, pool, required resource keys,
can_subset) plus one entry per AssetSpec and per AssetCheckSpec. Output names tell the two
decorators apart: `@asset` has the one output `result`, `@multi_asset(specs=...)` one output per
key.

Anything the generator cannot reproduce (partitions, automation conditions, code versions,
backfill and retry policies, resources bound to an asset, ...) is recorded too, so a factory
change that adds one shows up as a mismatch instead of being silently left out of the bare module.
"""

from types import UnionType
from typing import Any, Union, get_args, get_origin

import dagster as dg

from platform_assets.local_executor import chain_in_run_executor

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
# The same for AssetCheckSpec.
_UNSUPPORTED_CHECK_FIELDS = ("automation_condition", "partitions_def")
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
# The fields of the table-schema records this module describes; a Dagster version that adds one
# makes the description fail loudly rather than drop it.
_TABLE_RECORD_FIELDS: dict[type, tuple[str, ...]] = {
    dg.TableSchema: ("columns", "constraints"),
    dg.TableColumn: ("name", "type", "description", "constraints", "tags"),
    dg.TableColumnConstraints: ("nullable", "unique", "other"),
    dg.TableConstraints: ("other",),
}
# Resource field annotations and defaults the bare module can write with only `import dagster as dg`.
_LITERAL_TYPES = (str, int, float, bool, type(None))
# Executor definitions the bare module can name as `dg.<name>` (configured with a plain dict too); a
# custom executor is described as unsupported (the generator refuses it).
_BUILTIN_EXECUTORS = ("in_process_executor", "multiprocess_executor", "multi_or_in_process_executor")
# The platform's local executor is Dagster's multiprocess executor (same config) that runs a chain's
# steps in the run's process: it changes where steps run, not what loads, so the bare module names
# the multiprocess one.
_EQUIVALENT_EXECUTORS = {chain_in_run_executor: "multiprocess_executor"}
KIND_TAG_PREFIX = "dagster/kind/"
# The class of `dg.EnvVar.int(...)` (an int subclass), which Dagster does not export.
_INT_ENV_VAR = type(dg.EnvVar.int("BENCH_DESCRIBE"))


def describe_definitions(defs: dg.Definitions) -> dict[str, Any]:
    """Assets (in definition order), resources and the other parts of the Definitions."""
    return {
        "assets": [describe_asset(assets_def) for assets_def in defs.assets or []],
        "resources": {
            key: _describe_resource(value) for key, value in sorted((defs.resources or {}).items())
        },
        "executor": _describe_executor(defs.executor),
        "other": {
            "jobs": [_describe_job(job) for job in defs.jobs or []],
            "schedules": [_describe_schedule(schedule) for schedule in defs.schedules or []],
            "sensors": [_describe_sensor(sensor) for sensor in defs.sensors or []],
            "asset_checks": [describe_checks(checks) for checks in defs.asset_checks or []],
            "loggers": sorted(defs.loggers or {}),
            "metadata": {key: repr(value) for key, value in (defs.metadata or {}).items()},
        },
    }


def _describe_schedule(schedule: dg.ScheduleDefinition) -> dict[str, Any]:
    """A schedule's name, cron, timezone, status and the asset keys it targets."""
    return {"name": schedule.name, "cron_schedule": schedule.cron_schedule,
            "execution_timezone": schedule.execution_timezone, "default_status": schedule.default_status.value,
            "description": schedule.description, "target_keys": _target_keys(schedule),
            "target_checks": _target_checks(schedule), "target_job": _target_job(schedule)}


def _target_job(schedule: dg.ScheduleDefinition) -> str | None:
    """The job a schedule names (a batch job's runs), when it targets one by name."""
    return schedule.job_name if isinstance(schedule.target.resolvable_to_job, str) else None


def _target_keys(definition: Any) -> list[list[str]] | None:
    """The literal asset keys a sensor's or schedule's target selects (None for anything else)."""
    from dagster._core.definitions.asset_selection import KeysAssetSelection  # not exported by dagster

    targets = definition.targets if hasattr(definition, "targets") else [definition.target]
    if not targets:
        return []  # a sensor that requests no runs (it records asset events)
    jobs = [getattr(t.resolvable_to_job, "selection", None) for t in targets]
    selection = jobs[0] if len(jobs) == 1 else None  # `target=AssetSelection` is an anonymous asset job
    return sorted(k.path for k in selection.selected_keys) if isinstance(selection, KeysAssetSelection) else None


def _target_checks(definition: Any) -> list[list[Any]] | None:
    """The literal asset check keys a schedule's target selects, as [asset path, check name]."""
    return _check_keys(getattr(definition.target.resolvable_to_job, "selection", None))


def _check_keys(selection: Any) -> list[list[Any]] | None:
    """[asset path, check name] of each check a literal check selection names (None otherwise)."""
    from dagster._core.definitions.asset_selection import AssetCheckKeysSelection  # not exported by dagster

    if not isinstance(selection, AssetCheckKeysSelection):
        return None
    return sorted([list(k.asset_key.path), k.name] for k in selection.selected_asset_check_keys)


def describe_checks(checks_def: dg.AssetChecksDefinition) -> dict[str, Any]:
    """One `@multi_asset_check`: its op and its check specs."""
    op = checks_def.op
    return {
        "op_name": op.name,
        "description": op.description,
        "can_subset": checks_def.can_subset,
        "required_resource_keys": sorted(op.required_resource_keys),
        "op_tags": dict(sorted((op.tags or {}).items())),
        "checks": _describe_checks(checks_def.check_specs),
        "pool": op.pool,
        "unsupported": {"retry_policy": repr(op.retry_policy),
                        "bound_resources": sorted(checks_def.resource_defs)},
    }


def _describe_job(job: Any) -> dict[str, Any]:
    """An op job (the platform's approval job): its name, description and ops; or an asset job of
    literal check keys (a batch job's scheduled runs): its name, description, tags and checks."""
    if hasattr(job, "selection"):
        return {"name": job.name, "description": job.description, "tags": dict(sorted((job.tags or {}).items())),
                "checks": _check_keys(job.selection)}
    return {"name": job.name, "description": job.description, "ops": [node.name for node in job.graph.nodes]}


def _describe_sensor(sensor: dg.SensorDefinition) -> dict[str, Any]:
    """What a sensor costs at load: its name, schedule and the asset keys it targets."""
    return {"name": sensor.name, "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value, "target_keys": _target_keys(sensor),
            "description": sensor.description}


def _describe_executor(executor: Any) -> dict[str, Any] | None:
    """None (Dagster's default), one of Dagster's own executor definitions by name (with the config
    of `.configured({...}, name=...)`, read from Dagster's private configured schema), or what it is."""
    if executor is None:
        return None
    schema = executor.config_schema
    parent = getattr(schema, "parent_def", None)
    for name in _BUILTIN_EXECUTORS:
        builtins = [getattr(dg, name), *(ours for ours, same in _EQUIVALENT_EXECUTORS.items() if same == name)]
        if any(executor is builtin for builtin in builtins):
            return {"builtin": name}
        if any(parent is builtin for builtin in builtins) and executor.name == parent.name:
            return {"builtin": name, "config": schema._config_fn({})}
    return {"unsupported": f"{type(executor).__name__} {getattr(executor, 'name', None)!r}"}


def describe_asset(assets_def: Any) -> dict[str, Any]:
    """One AssetsDefinition from `@asset` or `@multi_asset(specs=...)`: its op, specs and checks."""
    if not isinstance(assets_def, dg.AssetsDefinition) or not assets_def.is_executable:
        raise ValueError(f"cannot describe {assets_def!r}: only executable AssetsDefinitions are supported")
    op = assets_def.op
    return {
        "op_name": op.name,
        "outputs": sorted(assets_def.node_keys_by_output_name),
        "inputs": sorted(op.ins),
        "op_tags": dict(sorted((op.tags or {}).items())),
        "pool": op.pool,
        "required_resource_keys": sorted(op.required_resource_keys),
        "can_subset": assets_def.can_subset,
        "specs": [_describe_spec(spec) for spec in sorted(assets_def.specs, key=lambda s: s.key.path)],
        "checks": _describe_checks(assets_def.check_specs),
        "unsupported": {
            "is_subset": assets_def.is_subset,
            "execution_type": repr(assets_def.execution_type),
            "backfill_policy": repr(assets_def.backfill_policy),
            "retry_policy": repr(op.retry_policy),
            "bound_resources": sorted(assets_def.resource_defs),
        },
    }


def _describe_spec(spec: dg.AssetSpec) -> dict[str, Any]:
    return {
        "key": list(spec.key.path),
        "deps": [list(dep.asset_key.path) for dep in spec.deps],
        "dep_partition_mappings": [repr(dep.partition_mapping) for dep in spec.deps if dep.partition_mapping],
        "dep_metadata": [repr(dep.metadata) for dep in spec.deps if getattr(dep, "metadata", None)],
        "description": spec.description,
        "group_name": spec.group_name,
        "owners": list(spec.owners),
        "kinds": sorted(spec.kinds),
        "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith(KIND_TAG_PREFIX)},
        "metadata": {key: _describe_metadata(value) for key, value in sorted(spec.metadata.items())},
        "unsupported": {name: repr(getattr(spec, name, None)) for name in _UNSUPPORTED_SPEC_FIELDS},
    }


def _describe_checks(checks: Any) -> list[dict[str, Any]]:
    return [_describe_check(check) for check in sorted(checks, key=lambda c: (c.asset_key.path, c.name))]


def _describe_check(check: dg.AssetCheckSpec) -> dict[str, Any]:
    return {
        "name": check.name,
        "asset": list(check.asset_key.path),
        "description": check.description,
        "blocking": check.blocking,
        "additional_deps": [list(dep.asset_key.path) for dep in check.additional_deps],
        "metadata": {key: _describe_metadata(value) for key, value in sorted((check.metadata or {}).items())},
        "unsupported": {name: repr(getattr(check, name, None)) for name in _UNSUPPORTED_CHECK_FIELDS},
    }


def _describe_metadata(value: Any) -> dict[str, Any]:
    for cls, kind in _METADATA_KINDS.items():
        if isinstance(value, cls):
            return {"kind": kind, "value": value.value}
    # A TableSchema given as is (as AssetSpec metadata usually is) and one wrapped in
    # MetadataValue.table_schema() are different values; both are described, and kept apart.
    if isinstance(value, dg.TableSchemaMetadataValue):
        return {"kind": "table_schema_value", "value": _describe_table_schema(value.schema)}
    if isinstance(value, dg.TableSchema):
        return {"kind": "table_schema", "value": _describe_table_schema(value)}
    if isinstance(value, str | int | float | bool):
        return {"kind": "raw", "value": value}
    raise ValueError(f"metadata value {value!r} has a type the bare-module generator does not handle")


def _fields(record: Any) -> dict[str, Any]:
    """The fields of a table-schema record, checked against the ones this module knows."""
    known = _TABLE_RECORD_FIELDS[type(record)]
    if tuple(record._fields) != known:
        raise ValueError(f"{type(record).__name__} has fields {record._fields}, the describer knows {known}")
    return {name: getattr(record, name) for name in known}


def _describe_table_schema(schema: dg.TableSchema) -> dict[str, Any]:
    fields = _fields(schema)
    return {
        "columns": [_describe_column(column) for column in fields["columns"]],
        "constraints": {"other": list(_fields(fields["constraints"])["other"])} if fields["constraints"] else None,
    }


def _describe_column(column: dg.TableColumn) -> dict[str, Any]:
    fields = _fields(column)
    constraints = _fields(fields["constraints"]) if fields["constraints"] else None
    return {
        "name": fields["name"],
        "type": fields["type"],
        "description": fields["description"],
        "constraints": {
            "nullable": constraints["nullable"],
            "unique": constraints["unique"],
            "other": list(constraints["other"]),
        }
        if constraints
        else None,
        "tags": dict(sorted((fields["tags"] or {}).items())),
    }


def _describe_resource(resource: Any) -> dict[str, Any]:
    """Class name and config fields of a ConfigurableResource (pydantic fields, all of them).

    Per field: its annotation and default as Python source, whether it is required, whether it
    was passed when the resource was constructed (`model_fields_set`), and its value.
    """
    if not isinstance(resource, dg.ConfigurableResource):
        raise ValueError(f"resource {resource!r} is not a ConfigurableResource; the generator needs one")
    fields = type(resource).model_fields
    return {
        "class": type(resource).__name__,
        "fields": {
            name: {
                "annotation": _annotation_source(info.annotation, f"{type(resource).__name__}.{name}"),
                "required": info.is_required(),
                "default": None if info.is_required() else _literal(info.default, f"default of {name}"),
                "passed": name in resource.model_fields_set,
                "value": _literal(getattr(resource, name), f"value of {name}"),
            }
            for name, info in sorted(fields.items())
        },
    }


def _annotation_source(annotation: Any, where: str) -> str:
    """`str`, `int | None`, ...: simple literal types only, so the bare module needs no imports."""
    if annotation in _LITERAL_TYPES:
        return _type_name(annotation)
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType) and all(arg in _LITERAL_TYPES for arg in args):
        return " | ".join(_type_name(arg) for arg in args)
    raise ValueError(f"resource field {where} has annotation {annotation!r}; the generator handles str, int, ...")


def _type_name(literal_type: type) -> str:
    return "None" if literal_type is type(None) else literal_type.__name__


def _literal(value: Any, where: str) -> Any:
    """A literal as is; `dg.EnvVar("X")` / `dg.EnvVar.int("X")` as {"env_var" | "int_env_var": "X"}.

    EnvVars are str and int subclasses, so they are checked first: described as plain values they
    would turn into literal strings in the bare module.
    """
    if isinstance(value, dg.EnvVar):
        return {"env_var": value.env_var_name}
    if isinstance(value, _INT_ENV_VAR):
        return {"int_env_var": value.name}
    if not isinstance(value, _LITERAL_TYPES):
        raise ValueError(f"resource {where} is {value!r}; the generator handles str, int, float, bool and None")
    return value
