"""The dbt projects datasets are built from: the platform's `dbt_project/` and any a dataset names.

A project is onboarded as it is. The platform brings the connection (the outputs of its own
profile, `dbt_project/profiles.yml`, written under the project's profile name into a folder of
its own) and keeps everything dbt writes out of the project: parse output in a cache keyed by
the project's content (`.platform/dbt/`, shared by every instance, prepared by `make install`
and the image build), run targets and logs under the instance's state folder. The project's
asset keys start with its dbt project name (`warehouse` for the platform's own project, a name
no other project may take), so two projects' same-named models never collide.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import yaml

from platform_assets.settings import PROJECT_ROOT, dbt_project_dir, state_dir

PLATFORM_PREFIX = "warehouse"
_SOURCE_SUFFIXES = (".sql", ".yml", ".yaml", ".csv", ".py", ".md", ".jinja")
_SKIPPED_FOLDERS = {"target", "logs", "dbt_packages", "scripts", "__pycache__"}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class ProjectError(Exception):
    """A dbt project the platform cannot use; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class DbtProject:
    dir: Path
    name: str  # `name` in dbt_project.yml
    profile: str  # `profile` in dbt_project.yml
    key_prefix: str  # first part of its asset keys

    @property
    def is_platform(self) -> bool:
        return self.key_prefix == PLATFORM_PREFIX

    @property
    def dev_schema(self) -> str:
        """Where the dbt multi-asset builds the project's models outside any delivery."""
        return "dev" if self.is_platform else f"dev_{self.key_prefix}"

    def cache_dir(self) -> Path:
        """Parse output of this exact content: a changed file is a new folder, never a stale manifest."""
        return dbt_cache_root() / f"{self.key_prefix}-{source_digest(self.dir)}"

    def run_dir(self, label: str) -> Path:
        """A fresh target folder for one dbt invocation (dagster-dbt writes dbt.log there too)."""
        path = state_dir() / "dbt" / self.key_prefix / f"{label}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def profiles_dir(self) -> Path:
        """A folder holding profiles.yml with the platform's outputs under this project's profile name."""
        folder = dbt_cache_root() / "profiles" / self.profile
        text = yaml.safe_dump({self.profile: platform_profile()}, sort_keys=False)
        path = folder / "profiles.yml"
        if not path.exists() or path.read_text() != text:
            folder.mkdir(parents=True, exist_ok=True)
            staged = folder / f".profiles-{uuid.uuid4().hex[:8]}.yml"
            staged.write_text(text)
            os.replace(staged, path)  # concurrent writers write the same text; readers never see half
        return folder


def dbt_cache_root() -> Path:
    return PROJECT_ROOT / ".platform" / "dbt"


@cache
def platform_profile() -> dict:
    """The outputs of the platform's own profile: every warehouse setting comes from the environment."""
    profiles = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "profiles.yml").read_text())
    return profiles["platform_warehouse"]


def source_digest(project_dir: Path) -> str:
    """The project's sources (paths and bytes) and dbt's version: what a parse depends on."""
    digest = hashlib.sha256(metadata.version("dbt-core").encode())
    for folder, dirs, files in os.walk(project_dir):  # top-down, folders sorted: a stable order
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_FOLDERS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(_SOURCE_SUFFIXES) and name != "profiles.yml":
                path = Path(folder) / name
                digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def platform_project() -> DbtProject:
    return load_project(dbt_project_dir(), platform=True)


def project_at(folder: Path) -> DbtProject:
    """The project in `folder`: the platform's own when it is `dbt_project_dir()`."""
    folder = folder.resolve()
    return load_project(folder, platform=folder == dbt_project_dir())


def load_project(folder: Path, platform: bool = False) -> DbtProject:
    """The project in `folder`, read once per version of its dbt_project.yml: every dataset of a
    project asks for it at each load (1,000 datasets, one project, one read)."""
    spec_file = folder / "dbt_project.yml"
    try:
        stat = spec_file.stat()
        return _read_project(folder, platform, stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:  # also when it goes between the stat and the read
        raise ProjectError(f"{spec_file}: no dbt project there (dbt_project.yml is missing); "
                           "point dataset.project at the folder that holds dbt_project.yml") from None


@cache
def _read_project(folder: Path, platform: bool, mtime_ns: int, size: int) -> DbtProject:
    spec_file = folder / "dbt_project.yml"
    try:
        config = yaml.safe_load(spec_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ProjectError(f"{spec_file}: not valid YAML: {exc}") from None
    name, profile = config.get("name"), config.get("profile") or config.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProjectError(f"{spec_file}: field 'name': {name!r} is not a dbt project name "
                           "(lower-case letters, digits and '_')")
    if not platform and name == PLATFORM_PREFIX:
        raise ProjectError(f"{spec_file}: field 'name': '{PLATFORM_PREFIX}' is reserved for the platform's own "
                           "dbt project's asset keys; rename the project")
    return DbtProject(dir=folder, name=name, profile=str(profile),
                      key_prefix=PLATFORM_PREFIX if platform else name)
