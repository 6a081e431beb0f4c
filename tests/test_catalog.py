"""The catalog loader: every kind of spec error names its file and field, and leaves the rest loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.settings import PROJECT_ROOT, load_settings

SETTINGS = load_settings(PROJECT_ROOT / "platform.yaml")


def spec(name: str, **fields) -> dict:
    base = {
        "name": name,
        "kind": "service",
        "owner": "team-a",
        "description": f"{name} does things",
        "service": {"app": "pkg.app:app"},
    }
    base.update(fields)
    return base


def write(root: Path, folder: str, content: dict | str) -> Path:
    path = root / folder / "deliverable.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def load(root: Path) -> Catalog:
    return load_catalog(root, SETTINGS)


def only_error(catalog: Catalog, path: Path) -> tuple[str, str]:
    errors = [e for e in catalog.errors if e.file == path]
    assert len(errors) == 1, [str(e) for e in catalog.errors]
    return errors[0].field, errors[0].message


def test_demo_catalog_is_valid() -> None:
    catalog = load(PROJECT_ROOT / "catalog")
    assert catalog.errors == []
    assert "recommendations-api" in catalog.deliverables


def test_valid_specs_load_in_dependency_order(tmp_path: Path) -> None:
    write(tmp_path, "a", spec("web", depends_on=["api"]))
    write(tmp_path, "b", spec("api"))
    catalog = load(tmp_path)
    assert catalog.errors == []
    assert list(catalog.deliverables) == ["api", "web"]
    assert catalog.downstream_of("api") == ["web"]


@pytest.mark.parametrize("missing", ["name", "owner", "description"])
def test_required_field_missing(tmp_path: Path, missing: str) -> None:
    content = spec("svc")
    del content[missing]
    path = write(tmp_path, "svc", content)
    assert only_error(load(tmp_path), path) == (missing, "required field is missing")


def test_kind_section_missing(tmp_path: Path) -> None:
    content = spec("svc")
    del content["service"]
    path = write(tmp_path, "svc", content)
    assert only_error(load(tmp_path), path) == ("service", "required field is missing")


def test_unknown_kind_lists_valid_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", kind="servise"))
    field, message = only_error(load(tmp_path), path)
    assert field == "kind"
    assert "'servise' is not a known kind" in message and "service" in message


def test_name_must_be_dns_label(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("Bad_Name"))
    field, message = only_error(load(tmp_path), path)
    assert field == "name"
    assert "'Bad_Name' is not a DNS label" in message


def test_unknown_key_suggests_the_field_meant(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", depends_onn=["x"]))
    field, message = only_error(load(tmp_path), path)
    assert field == "depends_onn"
    assert "did you mean 'depends_on'?" in message


def test_unknown_nested_key_suggests_within_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", service={"app": "pkg.app:app", "helth_path": "/h"}))
    field, message = only_error(load(tmp_path), path)
    assert field == "service.helth_path"
    assert "did you mean 'health_path'?" in message


def test_unknown_gate_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", gates={"test": {}}))
    field, message = only_error(load(tmp_path), path)
    assert field == "gates.test"
    assert "did you mean 'tests'?" in message


def test_unknown_compute_profile_lists_profiles(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", compute="gpu-8"))
    field, message = only_error(load(tmp_path), path)
    assert field == "compute"
    assert "unknown compute profile 'gpu-8'" in message
    assert "cpu-small, cpu-large, gpu-1" in message.replace("cpu-large, cpu-small", "cpu-small, cpu-large")


def test_unknown_dependency(tmp_path: Path) -> None:
    write(tmp_path, "ok", spec("ok"))
    path = write(tmp_path, "svc", spec("svc", depends_on=["nope"]))
    catalog = load(tmp_path)
    field, message = only_error(catalog, path)
    assert field == "depends_on" and "'nope': no such deliverable" in message
    assert list(catalog.deliverables) == ["ok"]


def test_dependency_cycle_names_the_cycle_and_drops_dependents(tmp_path: Path) -> None:
    a = write(tmp_path, "a", spec("a", depends_on=["b"]))
    b = write(tmp_path, "b", spec("b", depends_on=["a"]))
    c = write(tmp_path, "c", spec("c", depends_on=["a"]))
    write(tmp_path, "d", spec("d"))
    catalog = load(tmp_path)
    assert list(catalog.deliverables) == ["d"]
    for path in (a, b):
        field, message = only_error(catalog, path)
        assert field == "depends_on" and "dependency cycle" in message and "a" in message and "b" in message
    assert "left out of the catalog" in only_error(catalog, c)[1]


def test_self_dependency(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", depends_on=["svc"]))
    assert only_error(load(tmp_path), path) == ("depends_on", "'svc' cannot depend on itself")


def test_duplicate_names_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "one", spec("svc"))
    second = write(tmp_path, "two", spec("svc"))
    catalog = load(tmp_path)
    field, message = only_error(catalog, second)
    assert field == "name"
    assert "one/deliverable.yaml" in message and "must be unique" in message
    assert catalog.deliverables["svc"].path == first


def test_promotion_to_unknown_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", promotion={"production": {"mode": "auto"}}))
    field, message = only_error(load(tmp_path), path)
    assert field == "promotion.production"
    assert "unknown environment 'production'; valid: staging, prod" in message


def test_manual_promotion_needs_approvers(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", promotion={"prod": {"mode": "manual"}}))
    field, message = only_error(load(tmp_path), path)
    assert field == "promotion.prod"
    assert "needs at least one approver" in message


def test_malformed_yaml_and_non_mapping(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken", "name: [unclosed\n")
    listed = write(tmp_path, "listed", "- just\n- a list\n")
    write(tmp_path, "fine", spec("fine"))
    catalog = load(tmp_path)
    assert "not valid YAML" in only_error(catalog, broken)[1]
    assert "a spec is a YAML mapping" in only_error(catalog, listed)[1]
    assert list(catalog.deliverables) == ["fine"]


def test_all_errors_of_one_file_are_listed(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", {"name": "svc", "kind": "service", "owner": "Team A", "colour": "red",
                                   "service": {"app": "not an import path"}})
    fields = {e.field for e in load(tmp_path).errors if e.file == path}
    assert fields == {"owner", "description", "colour", "service.app"}


def test_error_text_names_file_field_and_fix(tmp_path: Path) -> None:
    write(tmp_path, "svc", spec("svc", compute="huge"))
    [error] = load(tmp_path).errors
    assert "svc/deliverable.yaml: field 'compute': unknown compute profile 'huge'; valid:" in str(error)


def test_catalog_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from platform_assets.settings import catalog_dir

    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(tmp_path))
    assert catalog_dir(SETTINGS) == tmp_path.resolve()
    monkeypatch.delenv("PLATFORM_CATALOG_DIR")
    assert catalog_dir(SETTINGS) == PROJECT_ROOT / "catalog"


def test_missing_catalog_folder_is_reported(tmp_path: Path) -> None:
    catalog = load(tmp_path / "nowhere")
    assert "catalog folder not found" in catalog.errors[0].message
