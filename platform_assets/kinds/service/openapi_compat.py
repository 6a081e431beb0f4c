"""Find the changes between two OpenAPI 3.x contracts that break clients of the older one.

The ``api_compatibility`` gate compares the contract of the version running in prod ("old") with
the contract of the candidate ("new"), both as FastAPI's ``app.openapi()`` returns them. A change
is breaking when a request that the old version served, or a response field a client read from
it, no longer works the same way: removed operations, responses or response fields, newly
required parameters, bodies or body fields, and type changes in the direction that hurts
(responses that may now carry a type the client never saw, requests that now reject a type the
client sends).

Standard library only, so that the gate can run anywhere the platform runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

REMOVED = "removed"
NEWLY_REQUIRED = "newly required"
TYPE_CHANGED = "type changed"

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_SUMMARY_LIMIT = 5
_MAJOR = re.compile(r"\s*[vV]?(\d+)")

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class BreakingChange:
    """One change in the new contract that can break a client written against the old one."""

    operation: str
    location: str
    field: str
    change: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.location} field '{self.field}'" if self.field else self.location
        return f"{self.operation}: {where} {self.change}"


@dataclass(frozen=True)
class CompatibilityReport:
    """What the gate needs: the breaking changes and whether the version number announces them."""

    breaking: tuple[BreakingChange, ...]
    old_version: str | None
    new_version: str | None
    major_bump: bool

    @property
    def compatible(self) -> bool:
        """True when no existing client can break."""
        return not self.breaking

    def allowed(self, allow_breaking_on_major: bool) -> bool:
        """True when the gate may pass: no breaking change, or breaking changes under a major bump."""
        return self.compatible or (self.major_bump and allow_breaking_on_major)

    def summary(self) -> str:
        """One paragraph for the UI; lists the first few changes so the reader sees what broke."""
        versions = f"Contract {self.new_version or '(unversioned)'} vs prod {self.old_version or '(none)'}"
        if self.compatible:
            return f"{versions}: backward compatible, no breaking changes."
        bump = "with" if self.major_bump else "without"
        shown = "; ".join(str(change) for change in self.breaking[:_SUMMARY_LIMIT])
        hidden = len(self.breaking) - _SUMMARY_LIMIT
        more = f"; and {hidden} more" if hidden > 0 else ""
        count = f"{len(self.breaking)} breaking change(s), {bump} a major version bump"
        return f"{versions}: {count}: {shown}{more}."


def compare_contracts(old: dict | None, new: dict) -> CompatibilityReport:
    """Compare the prod contract with a candidate; ``old=None`` means nothing runs in prod yet."""
    new_version = _version(new)
    if old is None:
        return CompatibilityReport(breaking=(), old_version=None, new_version=new_version, major_bump=False)
    old_version = _version(old)
    old_major, new_major = _major(old_version), _major(new_version)
    return CompatibilityReport(
        breaking=_ContractDiff(old, new).run(),
        old_version=old_version,
        new_version=new_version,
        major_bump=old_major is not None and new_major is not None and new_major > old_major,
    )


def _version(contract: Mapping[str, Any]) -> str | None:
    info = contract.get("info")
    version = info.get("version") if isinstance(info, Mapping) else None
    return None if version is None else str(version)


def _major(version: str | None) -> int | None:
    """Leading integer of a semver-like version; None when there is none to compare."""
    match = _MAJOR.match(version or "")
    return int(match.group(1)) if match else None


# --- Schema shapes -------------------------------------------------------------------------------
#
# A schema is reduced to a _Shape: the kinds of JSON value it admits, plus its properties, required
# names and array items, with $ref, allOf, anyOf, oneOf and nullable already folded in. Kinds are
# JSON type names; a string with a format is the kind "string(<format>)", so that a changed format
# is a changed type and a plain "string" covers every formatted one.


@dataclass(frozen=True)
class _Shape:
    kinds: frozenset[str] | None = None  # None: no determinable type, the schema admits anything
    properties: Mapping[str, Schema] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    items: Schema | None = None
    refs: frozenset[str] = frozenset()  # $refs folded into this shape, to stop on recursive schemas

    @property
    def is_any(self) -> bool:
        return self.kinds is None and not self.properties and self.items is None

    def admits(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


def _covers(kinds: frozenset[str], kind: str) -> bool:
    """Whether ``kinds`` admits every value of ``kind``: integers are numbers, formatted strings strings."""
    if kind in kinds:
        return True
    if kind == "integer":
        return "number" in kinds
    return kind.startswith("string(") and "string" in kinds


def _subset(inner: frozenset[str], outer: frozenset[str]) -> bool:
    return all(_covers(outer, kind) for kind in inner)


def _intersect(left: frozenset[str], right: frozenset[str]) -> frozenset[str]:
    return frozenset({k for k in left if _covers(right, k)} | {k for k in right if _covers(left, k)})


def _describe(kinds: frozenset[str]) -> str:
    return "|".join(sorted(kinds)) or "nothing"


def _json_kind(value: Any) -> str:
    """The JSON type of a const or enum value, for schemas that give values but no type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _own_kinds(schema: Schema) -> frozenset[str] | None:
    """Kinds a schema states itself, before composition; None when it states none."""
    declared = schema.get("type")
    if isinstance(declared, str):
        names = [declared]
    elif isinstance(declared, list):
        names = [name for name in declared if isinstance(name, str)]
    elif "const" in schema:
        names = [_json_kind(schema["const"])]
    elif isinstance(schema.get("enum"), list) and schema["enum"]:
        names = [_json_kind(value) for value in schema["enum"]]
    elif isinstance(schema.get("properties"), Mapping):
        names = ["object"]
    elif isinstance(schema.get("items"), Mapping):
        names = ["array"]
    else:
        return None
    fmt = schema.get("format")
    has_format = isinstance(fmt, str) and fmt != ""
    return frozenset(f"string({fmt})" if name == "string" and has_format else name for name in names)


def _own_shape(schema: Schema) -> _Shape:
    properties = schema.get("properties")
    required = schema.get("required")
    items = schema.get("items")
    names = [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
    return _Shape(
        kinds=_own_kinds(schema),
        properties=dict(properties) if isinstance(properties, Mapping) else {},
        required=frozenset(names),
        items=items if isinstance(items, Mapping) else None,
    )


def _merge_schemas(schemas: Iterable[Schema], combinator: str) -> Schema | None:
    """One schema standing for several that describe the same property or items."""
    distinct: list[Schema] = []
    for schema in schemas:
        if all(schema is not seen for seen in distinct):
            distinct.append(schema)
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else {combinator: distinct}


def _merge_properties(shapes: list[_Shape], combinator: str) -> dict[str, Schema]:
    names = dict.fromkeys(name for shape in shapes for name in shape.properties)
    merged = {
        name: _merge_schemas((s.properties[name] for s in shapes if name in s.properties), combinator)
        for name in names
    }
    return {name: schema for name, schema in merged.items() if schema is not None}


def _all_of(shapes: list[_Shape]) -> _Shape:
    """A value must match every part: kinds intersect, properties and required names add up."""
    kinds: frozenset[str] | None = None
    for shape in shapes:
        if shape.kinds is not None:
            kinds = shape.kinds if kinds is None else _intersect(kinds, shape.kinds)
    return _Shape(
        kinds=kinds,
        properties=_merge_properties(shapes, "allOf"),
        required=frozenset().union(*(shape.required for shape in shapes)),
        items=_merge_schemas((s.items for s in shapes if s.items is not None), "allOf"),
        refs=frozenset().union(*(shape.refs for shape in shapes)),
    )


def _any_of(shapes: list[_Shape]) -> _Shape:
    """A value matches one member: kinds unite, a name is required only if every object member requires it."""
    member_kinds = [shape.kinds for shape in shapes]
    kinds = None if None in member_kinds else frozenset().union(*member_kinds)
    objects = [shape.required for shape in shapes if shape.properties or "object" in (shape.kinds or ())]
    return _Shape(
        kinds=kinds,
        properties=_merge_properties(shapes, "anyOf"),
        required=frozenset.intersection(*objects) if objects else frozenset(),
        items=_merge_schemas((s.items for s in shapes if s.items is not None), "anyOf"),
        refs=frozenset().union(*(shape.refs for shape in shapes)),
    )


class _Resolver:
    """Resolves local $refs ("#/components/...") within one contract."""

    def __init__(self, contract: Mapping[str, Any]) -> None:
        self._contract = contract

    def lookup(self, ref: str) -> Any:
        """The object a local JSON pointer names; None for external or dangling refs."""
        if not ref.startswith("#/"):
            return None
        node: Any = self._contract
        for token in ref[2:].split("/"):
            key = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    def deref(self, node: Any) -> Mapping[str, Any]:
        """Follow a chain of $refs (parameters, bodies, responses) to a mapping; {} when it leads nowhere."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and node["$ref"] not in seen:
            seen.add(node["$ref"])
            node = self.lookup(node["$ref"])
        return node if isinstance(node, Mapping) and "$ref" not in node else {}

    def shape(self, schema: Any, seen: frozenset[str] = frozenset()) -> _Shape:
        """Fold $ref, allOf, anyOf, oneOf and nullable into one shape; ``seen`` stops composition cycles."""
        if not isinstance(schema, Mapping):
            return _Shape()
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                return _Shape(refs=frozenset({ref}))
            target = self.shape(self.lookup(ref), seen | {ref})
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            return _all_of([replace(target, refs=target.refs | {ref}), self.shape(siblings, seen)])
        parts = [_own_shape(schema)]
        parts += [self.shape(member, seen) for member in _members(schema, "allOf")]
        for combinator in ("anyOf", "oneOf"):
            if members := _members(schema, combinator):
                parts.append(_any_of([self.shape(member, seen) for member in members]))
        combined = _all_of(parts)
        if schema.get("nullable") is True and combined.kinds is not None:
            combined = replace(combined, kinds=combined.kinds | {"null"})
        return combined


def _members(schema: Schema, combinator: str) -> list[Any]:
    members = schema.get(combinator)
    return members if isinstance(members, list) else []


# --- Contract walk -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Operation and location a comparison reports against."""

    operation: str
    location: str


_Guard = frozenset[tuple[frozenset[str], frozenset[str]]]
_NO_GUARD: _Guard = frozenset()


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _subject(where: _Where, path: str) -> str:
    return f"field '{path}' in {where.location}" if path else where.location


def _json_schema(content: Any) -> Any:
    """The JSON media type's schema: application/json first, then any other JSON type (problem+json)."""
    if not isinstance(content, Mapping):
        return None
    media = content.get("application/json")
    if media is None:
        media = next((value for key, value in content.items() if "json" in str(key)), None)
    return media.get("schema") if isinstance(media, Mapping) else None


def _operations(path_item: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(path_item, Mapping):
        return {}
    return {method: op for method in HTTP_METHODS if isinstance(op := path_item.get(method), Mapping)}


def _is_required(parameter: Mapping[str, Any]) -> bool:
    return parameter.get("in") == "path" or parameter.get("required") is True


def _parameter_map(resolver: _Resolver, item: Any, op: Mapping[str, Any]) -> dict[tuple[str, str], Schema]:
    """Path-level parameters overridden by operation-level ones, keyed by (in, name); headers ignore case."""
    item_params = item.get("parameters") if isinstance(item, Mapping) else None
    found: dict[tuple[str, str], Schema] = {}
    for raw in [*(item_params or []), *(op.get("parameters") or [])]:
        param = resolver.deref(raw)
        name, place = param.get("name"), param.get("in")
        if isinstance(name, str) and isinstance(place, str):
            found[(place, name.lower() if place == "header" else name)] = param
    return found


def _body_required(body: Schema | None) -> bool:
    return body is not None and body.get("required") is True


def _parameter_schema(parameter: Schema) -> Any:
    schema = parameter.get("schema")
    return schema if schema is not None else _json_schema(parameter.get("content"))


def _enter(old: _Shape, new: _Shape, guard: _Guard) -> _Guard | None:
    """Add this pair of $ref sets to the guard; None when the same pair is already being compared above.

    Only a path through $refs can be infinite, so pairs without refs need no guarding.
    """
    if not (old.refs or new.refs):
        return guard
    key = (old.refs, new.refs)
    return None if key in guard else guard | {key}


class _ContractDiff:
    """Walks the old contract's operations and records what the new contract breaks."""

    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self._old_doc, self._new_doc = old, new
        self._old, self._new = _Resolver(old), _Resolver(new)
        self._found: list[BreakingChange] = []

    def run(self) -> tuple[BreakingChange, ...]:
        old_paths = self._old_doc.get("paths") or {}
        new_paths = self._new_doc.get("paths") or {}
        for path, old_item in old_paths.items():
            new_item = new_paths.get(path)
            new_ops = _operations(new_item)
            for method, old_op in _operations(old_item).items():
                operation = f"{method.upper()} {path}"
                if method in new_ops:
                    self._operation(operation, (old_item, old_op), (new_item, new_ops[method]))
                else:
                    where = _Where(operation, "operation")
                    self._add(where, "", REMOVED, f"operation {operation} was removed")
        return tuple(self._found)

    def _operation(self, operation: str, old: tuple[Any, Schema], new: tuple[Any, Schema]) -> None:
        """Compare one operation; ``old`` and ``new`` are (path item, operation) pairs."""
        self._parameters(operation, old, new)
        self._request_body(operation, old[1], new[1])
        self._responses(operation, old[1], new[1])

    def _add(self, where: _Where, path: str, change: str, detail: str) -> None:
        self._found.append(BreakingChange(where.operation, where.location, path, change, detail))

    def _parameters(self, operation: str, old: tuple[Any, Mapping], new: tuple[Any, Mapping]) -> None:
        old_params = _parameter_map(self._old, *old)
        for key, new_param in _parameter_map(self._new, *new).items():
            old_param = old_params.get(key)
            where = _Where(operation, f"parameter '{new_param['name']}' ({new_param['in']})")
            if _is_required(new_param) and (old_param is None or not _is_required(old_param)):
                self._add(where, "", NEWLY_REQUIRED, f"{where.location} is now required")
            elif old_param is not None:
                self._request(where, "", _parameter_schema(old_param), _parameter_schema(new_param))

    def _request_body(self, operation: str, old_op: Mapping[str, Any], new_op: Mapping[str, Any]) -> None:
        old_body = self._old.deref(old_op.get("requestBody")) if "requestBody" in old_op else None
        new_body = self._new.deref(new_op.get("requestBody")) if "requestBody" in new_op else None
        where = _Where(operation, "request body")
        if _body_required(new_body) and not _body_required(old_body):
            self._add(where, "", NEWLY_REQUIRED, "the request body is now required")
        if old_body is None or new_body is None:
            return
        old_schema, new_schema = _json_schema(old_body.get("content")), _json_schema(new_body.get("content"))
        if old_schema is not None and new_schema is not None:
            self._request(where, "", old_schema, new_schema)

    def _responses(self, operation: str, old_op: Mapping[str, Any], new_op: Mapping[str, Any]) -> None:
        new_responses = {str(code): r for code, r in (new_op.get("responses") or {}).items()}
        for code, old_response in (old_op.get("responses") or {}).items():
            where = _Where(operation, f"response {code}")
            if str(code) not in new_responses:
                if str(code).startswith("2"):
                    self._add(where, "", REMOVED, f"{where.location} was removed")
                continue
            old_schema = _json_schema(self._old.deref(old_response).get("content"))
            new_schema = _json_schema(self._new.deref(new_responses[str(code)]).get("content"))
            if old_schema is not None and new_schema is not None:
                self._response(where, "", old_schema, new_schema)

    def _response(
        self, where: _Where, path: str, old_schema: Any, new_schema: Any, guard: _Guard = _NO_GUARD
    ) -> None:
        """A client reads responses: it breaks on a missing field or on a type it has never seen."""
        old, new = self._old.shape(old_schema), self._new.shape(new_schema)
        inner = _enter(old, new, guard)
        if new.is_any or inner is None:
            return
        if old.kinds is not None and new.kinds is not None and not _subset(new.kinds, old.kinds):
            self._type_changed(where, path, old.kinds, new.kinds)
        if old.admits("object") and new.admits("object"):
            for name, old_property in old.properties.items():
                child = _child(path, name)
                if name in new.properties:
                    self._response(where, child, old_property, new.properties[name], inner)
                else:
                    self._add(where, child, REMOVED, f"field '{child}' was removed from {where.location}")
        if old.items is not None and new.items is not None:
            self._response(where, f"{path}[]", old.items, new.items, inner)

    def _request(
        self, where: _Where, path: str, old_schema: Any, new_schema: Any, guard: _Guard = _NO_GUARD
    ) -> None:
        """A client sends requests: it breaks when a value it sends is now rejected or now missing."""
        old, new = self._old.shape(old_schema), self._new.shape(new_schema)
        inner = _enter(old, new, guard)
        if inner is None:
            return
        if old.kinds is not None and new.kinds is not None and not _subset(old.kinds, new.kinds):
            self._type_changed(where, path, old.kinds, new.kinds)
        if old.admits("object") and new.admits("object"):
            self._request_properties(where, path, old, new, inner)
        if new.items is not None and old.admits("array"):
            self._request(where, f"{path}[]", old.items or {}, new.items, inner)

    def _request_properties(self, where: _Where, path: str, old: _Shape, new: _Shape, guard: _Guard) -> None:
        names = [*new.properties, *sorted(new.required - new.properties.keys())]
        for name in names:
            child = _child(path, name)
            if name in new.required and (name not in old.properties or name not in old.required):
                detail = f"field '{child}' is now required in {where.location}"
                self._add(where, child, NEWLY_REQUIRED, detail)
            elif name in old.properties and name in new.properties:
                self._request(where, child, old.properties[name], new.properties[name], guard)

    def _type_changed(self, where: _Where, path: str, old: frozenset[str], new: frozenset[str]) -> None:
        detail = f"type of {_subject(where, path)} changed from {_describe(old)} to {_describe(new)}"
        self._add(where, path, TYPE_CHANGED, detail)
