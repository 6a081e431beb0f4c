"""The catalog loader: every kind of spec error names its file and field, and leaves the rest loaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.settings import PROJECT_ROOT, dbt_project_dir, load_settings
from platform_assets.spec_file import MAX_SPEC_BYTES
from tests.conftest import cli

SETTINGS = load_settings(PROJECT_ROOT / "platform.yaml")
REGISTRY = {
    "platform_team": "platform",
    "teams": {"platform": {"members": ["olga"]}, "team-a": {"members": ["alice", "bob"]}, "team-b": {}},
    "members": {"olga": {}, "alice": {}, "bob": {}},
}


@pytest.fixture(autouse=True)
def teams_file(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registry the specs here are checked against: teams team-a (alice, bob), team-b, platform."""
    path = tmp_path_factory.mktemp("registry") / "teams.yaml"
    path.write_text(yaml.safe_dump(REGISTRY))
    monkeypatch.setenv("PLATFORM_TEAMS_FILE", str(path))
    return path


def spec(name: str, **fields) -> dict:
    """A valid service spec owned by team-a; a field set to None is left out."""
    base = {
        "name": name,
        "kind": "service",
        "owner": "team-a",
        "description": f"{name} does things",
        "service": {"app": "pkg.app:app"},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def write(root: Path, folder: str, content: dict | str | bytes) -> Path:
    path = root / folder / "deliverable.yaml"
    path.parent.mkdir(parents=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def load(root: Path) -> Catalog:
    return load_catalog(root, SETTINGS)


def only_error(catalog: Catalog, path: Path) -> tuple[str, str]:
    errors = [e for e in catalog.errors if e.file == path]
    assert len(errors) == 1, [str(e) for e in catalog.errors]
    return errors[0].field, errors[0].message


def test_demo_catalog_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATFORM_TEAMS_FILE")
    catalog = load(PROJECT_ROOT / "catalog")
    assert catalog.errors == []
    assert "recommendations-api" in catalog.deliverables
    assert catalog.teams is not None and catalog.teams.source == PROJECT_ROOT / "teams.yaml"


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


def test_a_dependency_on_a_broken_spec_says_it_was_left_out(tmp_path: Path) -> None:
    write(tmp_path, "api", spec("api", owner="nobody"))
    web = write(tmp_path, "web", spec("web", depends_on=["api"]))
    write(tmp_path, "fine", spec("fine"))
    catalog = load(tmp_path)
    assert only_error(catalog, web) == ("depends_on", "'api': it was left out of the catalog because of its own errors")
    assert list(catalog.deliverables) == ["fine"]


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


def test_duplicate_names_reject_both_files_naming_each_other(tmp_path: Path) -> None:
    first = write(tmp_path, "one", spec("svc"))
    second = write(tmp_path, "two", spec("svc"))
    write(tmp_path, "fine", spec("fine"))
    catalog = load(tmp_path)
    for path, other in ((first, second), (second, first)):
        field, message = only_error(catalog, path)
        assert field == "name"
        assert message.startswith(f"the name 'svc' is also declared by {other}; only one deliverable may declare")
    assert list(catalog.deliverables) == ["fine"]


def dataset(name: str, *models: str) -> dict:
    return spec(name, kind="dataset", service=None, dataset={"models": list(models)})


def test_a_dbt_model_published_by_two_datasets_rejects_both(tmp_path: Path) -> None:
    first = write(tmp_path, "features", dataset("features", "customer_features"))
    second = write(tmp_path, "features-copy", dataset("features-copy", "customer_features", "orders"))
    write(tmp_path, "segments", dataset("segments", "customer_segments"))
    catalog = load(tmp_path)
    for path, other in ((first, second), (second, first)):
        field, message = only_error(catalog, path)
        assert field == "dataset.models"
        assert f"dbt model 'customer_features' of {dbt_project_dir()} is also declared by {other}" in message
    assert list(catalog.deliverables) == ["segments"]


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


def loads_only_fine(root: Path, broken: Path) -> tuple[str, str]:
    """Load `root` (holding a valid `fine` spec): the (field, message) of the one error of `broken`."""
    write(root, "fine", spec("fine"))
    catalog = load(root)
    assert list(catalog.deliverables) == ["fine"]
    return only_error(catalog, broken)


def model(name: str, trainer: str) -> dict:
    return spec(name, kind="model", service=None, model={"training_table": "t", "label": "y", "entity_key": "id",
                                                                  "trainer": trainer})


def test_a_trainer_outside_the_folder_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "churn", model("churn", "../../../elsewhere/x.py:train"))
    field, message = loads_only_fine(tmp_path, path)
    assert field == "model.trainer"
    assert "'../../../elsewhere/x.py' leads outside the deliverable's folder with '..'" in message


def test_the_filesystem_root_as_service_source_is_one_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", service={"app": "pkg.app:app", "source": "/"}))
    field, message = loads_only_fine(tmp_path, path)
    assert field == "service.source"
    assert "'/' is absolute; write it relative to the deliverable's folder" in message


def test_a_symlink_out_of_the_folder_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "report", spec("report", kind="notebook", service=None,
                                          notebook={"path": "shared/report.ipynb"}))
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (path.parent / "shared").symlink_to(elsewhere)
    field, message = loads_only_fine(tmp_path, path)
    assert field == "notebook.path"
    assert "leads outside the deliverable's folder through a symlink" in message and str(elsewhere) in message


def test_paths_inside_the_folder_and_symlinks_within_it_are_fine(tmp_path: Path) -> None:
    write(tmp_path, "svc", spec("svc", service={"app": "pkg.app:app", "source": "app", "tests": "../app/tests"}))
    churn = write(tmp_path, "churn", model("churn", "code/train.py:train")).parent
    (churn / "src").mkdir()
    (churn / "code").symlink_to(churn / "src")
    catalog = load(tmp_path)
    assert catalog.errors == [] and list(catalog.deliverables) == ["churn", "svc"]


def test_build_steps_resolve_spec_paths_inside_the_folder_too(tmp_path: Path) -> None:
    """A symlink swapped in after the catalog loaded: the build refuses it too, naming file and field."""
    from platform_assets.handlers.base import BuildFailed
    from platform_assets.handlers.spec_paths import resolve_in_folder
    from platform_assets.kinds.model.training import trainer_source

    path = write(tmp_path, "churn", model("churn", "train.py:train"))
    (tmp_path / "elsewhere.py").write_text("def train(features, labels, params):\n    return None\n")
    (path.parent / "train.py").symlink_to(tmp_path / "elsewhere.py")

    with pytest.raises(BuildFailed, match=r"churn/deliverable.yaml: field 'model.trainer': 'train.py' leads "
                                          r"outside the deliverable's folder through a symlink"):
        trainer_source(path, "train.py:train")
    (path.parent / "train.py").unlink()
    (path.parent / "train.py").write_text((tmp_path / "elsewhere.py").read_text())
    assert trainer_source(path, "train.py:train") == (path.parent.resolve() / "train.py", "train")
    assert resolve_in_folder(path, "notebook.path", "a/../b.ipynb") == path.parent.resolve() / "b.ipynb"


def test_a_byte_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(spec("svc", description="Caf_ menu")).replace("Caf_", "Caf\xe9")
    path = write(tmp_path, "svc", text.encode("latin-1"))
    field, message = loads_only_fine(tmp_path, path)
    line = text.splitlines().index("description: Caf\xe9 menu") + 1
    assert (field, message) == ("", f"byte 0xE9 on line {line} is not UTF-8; save the file as UTF-8")


def test_an_unreadable_spec_is_one_error(tmp_path: Path) -> None:
    """A dangling symlink: unreadable even for root (the tests run as root, so chmod 000 would not do)."""
    path = tmp_path / "svc" / "deliverable.yaml"
    path.parent.mkdir()
    path.symlink_to(tmp_path / "gone.yaml")
    field, message = loads_only_fine(tmp_path, path)
    assert field == "" and message.startswith(f"cannot be read (a symlink to {tmp_path / 'gone.yaml'})")


def test_a_fifo_named_like_a_spec_does_not_hang_the_load(tmp_path: Path) -> None:
    path = tmp_path / "svc" / "deliverable.yaml"
    path.parent.mkdir()
    os.mkfifo(path)
    field, message = loads_only_fine(tmp_path, path)
    assert field == "" and message.startswith("is not a regular file")


def test_an_oversized_spec_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", yaml.safe_dump(spec("svc")) + "# padding\n" * (MAX_SPEC_BYTES // 10))
    assert MAX_SPEC_BYTES == 64 * 1024 and path.stat().st_size > MAX_SPEC_BYTES
    field, message = loads_only_fine(tmp_path, path)
    assert field == "" and message.startswith("is larger than 64 KiB, the limit for this file")


def test_a_folder_named_deliverable_yaml_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "svc" / "deliverable.yaml"
    path.mkdir(parents=True)
    field, message = loads_only_fine(tmp_path, path)
    assert field == "" and message.startswith("is a folder; a spec is a YAML file")


BILLION_LAUGHS = """name: lol
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
description: *h
"""


def test_a_yaml_alias_bomb_is_refused_before_expanding(tmp_path: Path) -> None:
    path = write(tmp_path, "lol", BILLION_LAUGHS)
    field, message = loads_only_fine(tmp_path, path)
    assert field == "" and message.startswith("uses a YAML alias of the value on line")
    assert "aliases (*name) are not allowed in a spec" in message


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "svc", yaml.safe_dump(spec("svc")) + "owner: team-b\n")
    field, message = loads_only_fine(tmp_path, path)
    assert field == "" and message.startswith("the key 'owner' appears twice")


@pytest.mark.parametrize(("text", "field", "expected"), [
    ("- name: svc\n- kind: service\n", "", "a spec is a YAML mapping"),
    ("", "", "a spec is a YAML mapping"),
    ("name: svc\nkind: [service]\n", "kind", "'['service']' is not a known kind"),
    ("name: svc\nkind: service\nowner: team-a\ndescription: d\n1: x\nservice: {app: 'a.b:app'}\n", "1",
     "Keys should be strings"),
    ("name: svc\nkind: service\nowner: team-a\ndescription: d\ndepends_on: [null]\nservice: {app: 'a.b:app'}\n",
     "depends_on.0", "Input should be a valid string"),
    ("name: svc\nkind: service\nowner: team-a\ndescription: 2024-02-30\nservice: {app: 'a.b:app'}\n", "",
     "not valid YAML: day is out of range for month; quote the value"),
    ("name: !!python/object:os.system svc\n", "", "not valid YAML: could not determine a constructor"),
    ("name: svc\n---\nname: other\n", "", "not valid YAML: expected a single document"),
])
def test_odd_yaml_is_one_error_naming_the_field(tmp_path: Path, text: str, field: str, expected: str) -> None:
    path = write(tmp_path, "odd", text)
    found, message = loads_only_fine(tmp_path, path)
    assert found == field and expected in message


def test_an_owner_that_is_not_a_team_names_the_teams_and_the_registry(tmp_path: Path, teams_file: Path) -> None:
    path = write(tmp_path, "svc", spec("svc", owner="taem-a"))
    field, message = loads_only_fine(tmp_path, path)
    assert field == "owner"
    assert message == f"'taem-a' is not a team in {teams_file} (did you mean 'team-a'?); " \
                      "valid teams: platform, team-a, team-b"


def test_an_approver_who_is_not_a_member_is_rejected(tmp_path: Path, teams_file: Path) -> None:
    policy = {"mode": "manual", "approvers": ["alice", "alcie", "mallory"]}
    path = write(tmp_path, "svc", spec("svc", promotion={"prod": policy}))
    field, message = loads_only_fine(tmp_path, path)
    assert field == "promotion.prod.approvers"
    assert message.startswith(f"'alcie' (did you mean 'alice'?), 'mallory' are not members in {teams_file}")


def test_a_broken_registry_is_one_error_and_the_specs_still_load(tmp_path: Path, teams_file: Path) -> None:
    teams_file.write_text(yaml.safe_dump({**REGISTRY, "platform_team": "ops"}))
    write(tmp_path, "other", spec("other", owner="team-unknown"))
    catalog = load(tmp_path)
    [error] = catalog.errors
    assert error.file == teams_file and "platform_team: 'ops' is not a team here" in error.message
    assert "owners and approvers are not checked until it loads" in error.message
    assert catalog.teams is None and list(catalog.deliverables) == ["other"]


def test_a_missing_registry_names_the_file_and_how_to_set_it(tmp_path: Path, teams_file: Path) -> None:
    teams_file.unlink()
    write(tmp_path, "svc", spec("svc"))
    catalog = load(tmp_path)
    [error] = catalog.errors
    assert error.file == teams_file and "not found" in error.message and "PLATFORM_TEAMS_FILE" in error.message
    assert list(catalog.deliverables) == ["svc"]


def test_the_registry_error_names_its_field(tmp_path: Path, teams_file: Path) -> None:
    teams_file.write_text(yaml.safe_dump({**REGISTRY, "teams": {**REGISTRY["teams"], "Bad Team": {}}}))
    [error] = load(tmp_path).errors
    assert (error.file, error.field) == (teams_file, "teams")
    assert str(error).startswith(f"{teams_file}: field 'teams': team names are DNS labels")


def test_deliver_validate_lists_every_problem_by_file_and_field(
    tmp_path: Path, teams_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog"
    write(catalog, "fine", spec("fine"))
    write(catalog, "one", spec("svc"))
    write(catalog, "two", spec("svc"))
    write(catalog, "orphan", spec("orphan", owner="team-z"))
    write(catalog, "latin", b"name: caf\xe9\n")
    write(catalog, "lol", BILLION_LAUGHS)
    write(catalog, "churn", model("churn", "../../../elsewhere/x.py:train"))
    write(catalog, "approved", spec("approved", promotion={"prod": {"mode": "manual", "approvers": ["mallory"]}}))
    monkeypatch.setenv("PLATFORM_CATALOG_DIR", str(catalog))

    completed = cli("validate")

    assert completed.returncode == 1, completed.stderr
    lines = completed.stdout.splitlines()
    expected = [
        f"{catalog}/approved/deliverable.yaml: field 'promotion.prod.approvers': 'mallory' is not a member in "
        f"{teams_file}",
        f"{catalog}/churn/deliverable.yaml: field 'model.trainer': '../../../elsewhere/x.py' leads outside",
        f"{catalog}/latin/deliverable.yaml: (whole file): byte 0xE9 on line 1 is not UTF-8",
        f"{catalog}/lol/deliverable.yaml: (whole file): uses a YAML alias",
        f"{catalog}/one/deliverable.yaml: field 'name': the name 'svc' is also declared by "
        f"{catalog}/two/deliverable.yaml",
        f"{catalog}/orphan/deliverable.yaml: field 'owner': 'team-z' is not a team in {teams_file}",
        f"{catalog}/two/deliverable.yaml: field 'name': the name 'svc' is also declared by "
        f"{catalog}/one/deliverable.yaml",
    ]
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, lines)
    assert lines[-1].startswith("1 deliverable(s) valid, 7 error(s) in 7 file(s)")
    assert len(lines) == 8

    teams_file.write_text("platform_team: [\n")
    broken = cli("validate").stdout.splitlines()
    assert any(line.startswith(f"{teams_file}: (whole file): not valid YAML") for line in broken), broken
