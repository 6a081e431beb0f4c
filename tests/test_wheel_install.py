"""Installing a service's wheel into its own environment with uv, reusing the platform's packages.

Real wheels (written here, as a build backend writes them) and the real uv; the one case that needs
a package the platform lacks resolves it from the package index, as a deploy does.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from platform_assets.handlers.python_project import ProjectError
from platform_assets.handlers.wheel_install import INSTALLED_MARKER, base_layer_satisfies, install_isolated


def make_wheel(folder: Path, name: str, requires: list[str]) -> Path:
    """A pure-Python wheel of module `name` (version 1.0) declaring `requires`."""
    files = {f"{name}/__init__.py": f"VERSION = '1.0'\nNAME = {name!r}\n",
             f"{name}-1.0.dist-info/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: 1.0\n"
             + "".join(f"Requires-Dist: {line}\n" for line in requires),
             f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                            "Tag: py3-none-any\n"}
    record = "".join(f"{path},sha256={digest(text)},{len(text.encode())}\n" for path, text in files.items())
    files[f"{name}-1.0.dist-info/RECORD"] = record + f"{name}-1.0.dist-info/RECORD,,\n"
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=")


def site_packages(venv: Path) -> set[str]:
    return {p.name for p in next((venv / "lib").glob("python*/site-packages")).iterdir()}


def test_the_base_layer_decides_what_needs_resolving(tmp_path: Path) -> None:
    assert base_layer_satisfies(make_wheel(tmp_path, "plain", []))
    assert base_layer_satisfies(make_wheel(tmp_path, "served", ["fastapi>=0.100", "uvicorn",
                                                                 "pywin32; sys_platform == 'win32'"]))
    assert not base_layer_satisfies(make_wheel(tmp_path, "newer", ["fastapi>=9999"]))
    assert not base_layer_satisfies(make_wheel(tmp_path, "missing", ["tomli-w>=1"]))
    assert not base_layer_satisfies(make_wheel(tmp_path, "extras", ["uvicorn[standard]"]))


def test_a_wheel_the_base_layer_satisfies_is_installed_alone_and_imports_its_requirements(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "served_app", ["fastapi>=0.100"])
    python = install_isolated(wheel, tmp_path / "venv")
    start = time.perf_counter()
    again = install_isolated(wheel, tmp_path / "venv")
    reused_s = time.perf_counter() - start

    assert again == python and (tmp_path / "venv" / INSTALLED_MARKER).read_text() == wheel.name
    assert "fastapi" not in site_packages(tmp_path / "venv"), "fastapi comes from the platform's layer"
    assert {"served_app", "served_app-1.0.dist-info", "_platform_base.pth"} <= site_packages(tmp_path / "venv")
    imported = subprocess.run([str(python), "-c", "import served_app, fastapi; print(served_app.NAME)"],
                              capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "served_app"
    assert reused_s < 1, "an installed environment is reused, not installed again"


@pytest.mark.e2e
def test_a_requirement_beyond_the_base_layer_is_resolved_into_the_environment_only(tmp_path: Path) -> None:
    python = install_isolated(make_wheel(tmp_path, "needs_more", ["tomli-w>=1"]), tmp_path / "venv")

    assert "tomli_w" in site_packages(tmp_path / "venv")
    subprocess.run([str(python), "-c", "import needs_more, tomli_w, fastapi"], check=True)
    with pytest.raises(ModuleNotFoundError):
        import tomli_w  # noqa: F401  (the platform itself does not get it)


@pytest.mark.e2e
def test_an_unresolvable_requirement_names_the_package(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "broken_app", ["platform-no-such-package-4f1c>=1"])
    with pytest.raises(ProjectError) as failed:
        install_isolated(wheel, tmp_path / "venv")
    assert "installing broken_app-1.0-py3-none-any.whl failed" in str(failed.value)
    assert "platform-no-such-package-4f1c" in str(failed.value)
    assert not (tmp_path / "venv" / INSTALLED_MARKER).exists()
