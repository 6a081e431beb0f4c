"""Installing a built wheel into an environment of its own, with uv.

The platform's site-packages (and the folder its own packages are imported from, for the serving
wrapper, platform_assets/serving.py) sit after the environment's own as a read-only base layer, so
common runtime dependencies (fastapi, uvicorn, prometheus-client) are reused, not installed again.
uv does not see a layer added by a `.pth` file, so the platform decides: when the base layer already
satisfies every requirement of the wheel, uv installs the wheel alone (no resolution, no network);
otherwise uv resolves the wheel's requirements into the environment, from its cache when an earlier
version (of this or any deliverable) fetched them already (linked, not copied), and from the index
only for what is new. uv runs with a minimal environment (plus how the machine reaches the index:
CA bundle, proxies, UV_* index settings): whatever it builds sees none of the platform's credentials.
"""

from __future__ import annotations

import os
import site
import subprocess
import tempfile
import venv
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from platform_assets.handlers.python_project import ProjectError
from platform_assets.sandbox import minimal_env, platform_secrets, redact
from platform_assets.settings import PROJECT_ROOT

INSTALLED_MARKER = ".installed"
# How the machine reaches the package index (its CA bundle, proxies, the index uv is told to use):
# the installer needs it; it carries no platform credential.
INDEX_ACCESS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
                "https_proxy", "no_proxy", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL",
                "UV_FIND_LINKS", "UV_NATIVE_TLS", "UV_OFFLINE")


def install_isolated(wheel: Path, venv_dir: Path) -> Path:
    """Install `wheel` into its own virtual environment at `venv_dir` (once); return its python."""
    python = venv_dir / "bin" / "python"
    installed = (venv_dir / INSTALLED_MARKER).exists()
    if not installed:
        venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(venv_dir)
    purelib = next((venv_dir / "lib").glob("python*/site-packages"))
    # Written on every deploy, so an environment installed by an earlier platform gets today's layer.
    base = dict.fromkeys([*site.getsitepackages(), str(PROJECT_ROOT)])
    (purelib / "_platform_base.pth").write_text("\n".join(base) + "\n")
    if installed:
        return python
    command = [uv_binary(), "pip", "install", "--python", str(python), "--quiet", "--no-progress", str(wheel)]
    if base_layer_satisfies(wheel):
        command.insert(3, "--no-deps")
    with tempfile.TemporaryDirectory(prefix="uv-home-") as home:
        access = {key: os.environ[key] for key in INDEX_ACCESS if key in os.environ}
        completed = subprocess.run(command, cwd=venv_dir, capture_output=True, text=True,
                                   env=minimal_env(Path(home), {**access, "UV_CACHE_DIR": str(uv_cache_dir())}))
    if completed.returncode != 0:
        output = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-20:])
        raise ProjectError(f"installing {wheel.name} failed (exit {completed.returncode}):\n"
                           f"{redact(output, platform_secrets())}")
    (venv_dir / INSTALLED_MARKER).write_text(wheel.name)
    return python


def base_layer_satisfies(wheel: Path) -> bool:
    """Whether the platform's own packages meet every requirement the wheel declares for this
    interpreter. A requirement with extras counts as unmet (its extras' requirements are not
    checked here), so uv resolves it."""
    for line in wheel_requirements(wheel):
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            return False
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if requirement.extras:
            return False
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def wheel_requirements(wheel: Path) -> list[str]:
    """The `Requires-Dist` lines of the wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        message = Parser().parsestr(archive.read(name).decode())
    return message.get_all("Requires-Dist") or []


def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def uv_cache_dir() -> Path:
    """uv's cache of the user running the platform, shared by every environment it creates (so an
    earlier version's downloads are reused); UV_CACHE_DIR moves it."""
    if os.environ.get("UV_CACHE_DIR"):
        return Path(os.environ["UV_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv"
