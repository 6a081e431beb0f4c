"""Reads `catalog/*/deliverable.yaml` into validated specs.

A plain YAML loader rather than Dagster Components: it loads 1,000 specs in a fraction of the
time (DESIGN.md). A broken spec is left out with its errors, never taking the others down, and
every error names the file, the field and what would be valid. Specs are untrusted input
(`spec_file.py`); owners and approvers are checked against the teams registry, paths must stay
in the deliverable's folder, and a name or a claim (a dbt model) belongs to one spec only.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from platform_assets.handlers.spec_paths import escaping_paths
from platform_assets.identity.teams import Teams, TeamsError, load_teams
from platform_assets.kinds.registry import get_handler, register_kinds, spec_models
from platform_assets.settings import PlatformSettings, teams_path
from platform_assets.spec_file import SpecFileError, read_spec
from platform_assets.spec_teams import registry_problems
from platform_assets.specs import DNS_LABEL_HINT, Deliverable

SPEC_FILENAME = "deliverable.yaml"


@dataclass(frozen=True)
class CatalogError:
    file: Path
    field: str
    message: str
    owner: str | None = None  # the team the spec names, when it names one: its code location shows the error

    def __str__(self) -> str:
        where = f"field '{self.field}'" if self.field else "(whole file)"
        return f"{_display(self.file)}: {where}: {self.message}"


@dataclass
class Catalog:
    root: Path
    deliverables: dict[str, Deliverable] = field(default_factory=dict)
    errors: list[CatalogError] = field(default_factory=list)
    teams: Teams | None = None  # the registry the specs were checked against; None while it is broken

    def __iter__(self):
        return iter(self.deliverables.values())

    def __len__(self) -> int:
        return len(self.deliverables)

    def downstream_of(self, name: str) -> list[str]:
        return [d.name for d in self if name in d.spec.depends_on]

    def owned_by(self, team: str | None) -> Catalog:
        """What one team's code location holds: its deliverables (still upstream-first) and the errors
        of its own spec files; None: the whole catalog."""
        if team is None:
            return self
        return Catalog(root=self.root, teams=self.teams,
                       deliverables={n: d for n, d in self.deliverables.items() if d.spec.owner == team},
                       errors=[error for error in self.errors if error.owner == team])


def _display(path: Path) -> str:
    """Relative to the working directory when inside it, else absolute."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def load_catalog(root: Path, settings: PlatformSettings) -> Catalog:
    """Load every spec under `root`; valid ones in dependency order, the rest as errors.

    Errors come file by file (a registry error first), so `deliver validate` and the
    `platform/catalog` asset list each file's problems together.
    """
    teams, registry_error = _registry(settings)
    catalog = Catalog(root=root, teams=teams, errors=[registry_error] if registry_error else [])
    catalog.errors += [CatalogError(settings.source or Path("platform.yaml"), field_name, problem)
                       for field_name, problem in register_kinds(settings.kinds)]
    if not root.is_dir():
        catalog.errors.append(
            CatalogError(root, "", "catalog folder not found; create it or set PLATFORM_CATALOG_DIR")
        )
        return catalog
    registry = _display(teams.source) if teams else ""
    loaded: list[Deliverable] = []
    errors: list[CatalogError] = []
    declared: set[str] = set()
    for path in _spec_files(root):
        name, deliverable, problems = _load_one(path, settings, teams, registry)
        errors.extend(problems)
        if name is not None:
            declared.add(name)
        if deliverable is not None:
            loaded.append(deliverable)
    held = _without_shared_claims(loaded, errors, settings)
    catalog.deliverables = _resolve_dependencies(held, declared, errors)
    catalog.errors += sorted(errors, key=lambda e: str(e.file))
    return catalog


def _spec_files(root: Path) -> Iterator[Path]:
    """`<folder>/deliverable.yaml` of every folder, whatever it is: a dangling symlink or a folder
    named like the spec is reported, not skipped as a glob would."""
    with os.scandir(root) as entries:
        folders = sorted(entry.name for entry in entries if entry.is_dir())
    for folder in folders:
        path = root / folder / SPEC_FILENAME
        if os.path.lexists(path):
            yield path


def _registry(settings: PlatformSettings) -> tuple[Teams | None, CatalogError | None]:
    """The teams registry, or the error that keeps it out (owner and approver checks then wait for it)."""
    path = teams_path(settings)
    try:
        return load_teams(path), None
    except TeamsError as exc:
        problem = " ".join(str(exc).removeprefix(f"{path}: ").split())  # one line, as every error
        located = re.fullmatch(r"field '([^']*)': (.*)", problem, re.DOTALL) if problem.count("field '") == 1 \
            else None
        field_name, message = located.groups() if located else ("", problem)
        return None, CatalogError(path, field_name.replace("(top level)", ""),
                                  f"{message} (the teams registry; owners and approvers are not checked until "
                                  "it loads)")


def _load_one(
    path: Path, settings: PlatformSettings, teams: Teams | None, registry: str
) -> tuple[str | None, Deliverable | None, list[CatalogError]]:
    """The name the file declares (so dependents of a broken spec are told so), the deliverable, its
    errors (each with the team the file names, if any)."""
    try:
        raw = read_spec(path)
    except SpecFileError as exc:
        return None, None, [CatalogError(path, "", str(exc))]
    if not isinstance(raw, Mapping):
        return None, None, [CatalogError(path, "", "a spec is a YAML mapping with name, kind, owner, description")]
    name, deliverable, errors = _validate(path, raw, settings, teams, registry)
    owner = raw.get("owner") if isinstance(raw.get("owner"), str) else None
    return name, deliverable, [replace(error, owner=owner) for error in errors]


def _validate(
    path: Path, raw: Mapping[str, Any], settings: PlatformSettings, teams: Teams | None, registry: str
) -> tuple[str | None, Deliverable | None, list[CatalogError]]:
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    models = spec_models()
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in models:
        valid = ", ".join(sorted(models))
        message = "required field is missing" if kind is None else f"'{kind}' is not a known kind"
        return name, None, [CatalogError(path, "kind", f"{message}; valid kinds: {valid} "
                                         "(more through platform.yaml `kinds:`)")]
    model = models[kind]
    errors = _check_against_settings(path, raw, settings)
    if teams is not None:
        errors += [CatalogError(path, field_name, message)
                   for field_name, message in registry_problems(raw, teams, registry)]
    try:
        spec = model.model_validate(dict(raw))
    except ValidationError as exc:
        return name, None, [_pydantic_error(path, model, err) for err in exc.errors()] + errors
    errors += [CatalogError(path, field_name, problem)
               for field_name, problem in escaping_paths(path.parent, get_handler(kind).spec_paths(spec)).items()]
    return name, (None if errors else Deliverable(spec=spec, path=path)), errors


def _without_shared_claims(
    loaded: list[Deliverable], errors: list[CatalogError], settings: PlatformSettings
) -> dict[str, Deliverable]:
    """Names, and what handlers say only one deliverable may hold: every spec sharing one is left out,
    with one error per file for each set of files it collides with (the first claim they share)."""
    holders: dict[str, list[tuple[Deliverable, str]]] = {}
    for deliverable in loaded:
        claims = {f"the name '{deliverable.name}'": "name",
                  **get_handler(deliverable.kind).claims(deliverable, settings)}
        for claim, field_name in claims.items():
            holders.setdefault(claim, []).append((deliverable, field_name))
    rejected: set[Path] = set()
    reported: set[tuple[Path, str]] = set()
    for claim, holding in holders.items():
        if len(holding) < 2:
            continue
        for deliverable, field_name in holding:
            others = ", ".join(_display(d.path) for d, _ in holding if d is not deliverable)
            if (deliverable.path, others) in reported:
                continue
            reported.add((deliverable.path, others))
            errors.append(CatalogError(deliverable.path, field_name,
                                       f"{claim} is also declared by {others}; only one deliverable may declare "
                                       "it, so all of them are left out until only one does", deliverable.spec.owner))
            rejected.add(deliverable.path)
    return {d.name: d for d in loaded if d.path not in rejected}


def _compute_fields(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Fields naming a compute profile: `compute`, and `*_compute` at the top or in a kind's section."""
    found = [(key, value) for key, value in raw.items() if key == "compute" or str(key).endswith("_compute")]
    for section, values in raw.items():
        if isinstance(values, Mapping):
            found += [(f"{section}.{key}", value) for key, value in values.items() if str(key).endswith("_compute")]
    return [(name, value) for name, value in found if isinstance(value, str)]


def _check_against_settings(path: Path, raw: Mapping[str, Any], settings: PlatformSettings) -> list[CatalogError]:
    """Checks that need platform.yaml; run on the raw spec so they are listed with schema errors."""
    errors = []
    for name, compute in _compute_fields(raw):
        if compute not in settings.compute_profiles:
            errors.append(
                CatalogError(
                    path,
                    name,
                    f"unknown compute profile '{compute}'; valid: {', '.join(sorted(settings.compute_profiles))}"
                    f" (defined in {_display(settings.source) if settings.source else 'platform.yaml'})",
                )
            )
    promotion = raw.get("promotion")
    for env in promotion if isinstance(promotion, Mapping) else ():
        if env not in settings.environment_names:
            errors.append(
                CatalogError(
                    path,
                    f"promotion.{env}",
                    f"unknown environment '{env}'; valid: {', '.join(settings.environment_names)}",
                )
            )
    depends_on = raw.get("depends_on")
    if isinstance(depends_on, list) and isinstance(raw.get("name"), str) and raw["name"] in depends_on:
        errors.append(CatalogError(path, "depends_on", f"'{raw['name']}' cannot depend on itself"))
    return errors


def _pydantic_error(path: Path, model: type[BaseModel], err: Mapping[str, Any]) -> CatalogError:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return CatalogError(path, dotted, f"unknown field; {hint}valid fields here: {', '.join(allowed)}")
    if kind == "missing":
        return CatalogError(path, dotted, "required field is missing")
    if kind == "string_pattern_mismatch" and loc[-1] in ("name", "owner"):
        return CatalogError(path, dotted, f"'{err.get('input')}' is not {DNS_LABEL_HINT}")
    return CatalogError(path, dotted, err["msg"].removeprefix("Value error, "))


def _allowed_fields(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names valid at `loc` inside `model`, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        current = info.annotation
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            args = getattr(current, "__args__", ())
            current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return sorted(current.model_fields)


def _resolve_dependencies(
    held: dict[str, Deliverable], known: set[str], errors: list[CatalogError]
) -> dict[str, Deliverable]:
    """Drop specs with unknown, left-out or cyclic dependencies; return the rest upstream-first.

    `known` are the names every spec file declares, including those left out.
    """
    valid = dict(held)
    while True:
        _drop_unresolved(valid, known, errors)
        try:
            order = TopologicalSorter({n: d.spec.depends_on for n, d in valid.items()}).static_order()
            return {name: valid[name] for name in order}
        except CycleError as exc:
            cycle = exc.args[1]
            for name in dict.fromkeys(cycle):
                dropped = valid.pop(name)
                errors.append(
                    CatalogError(
                        dropped.path,
                        "depends_on",
                        f"dependency cycle {' -> '.join(reversed(cycle))}; remove one of these dependencies",
                        dropped.spec.owner,
                    )
                )


def _drop_unresolved(valid: dict[str, Deliverable], known: set[str], errors: list[CatalogError]) -> None:
    """Remove, transitively, every spec that depends on something not in `valid`."""
    changed = True
    while changed:
        changed = False
        for name, deliverable in list(valid.items()):
            missing = [dep for dep in deliverable.spec.depends_on if dep not in valid]
            for dep in missing:
                reason = (
                    "it was left out of the catalog because of its own errors" if dep in known
                    else f"no such deliverable; known: {', '.join(sorted(known)) or 'none'}"
                )
                errors.append(CatalogError(deliverable.path, "depends_on", f"'{dep}': {reason}",
                                           deliverable.spec.owner))
            if missing:
                del valid[name]
                changed = True
