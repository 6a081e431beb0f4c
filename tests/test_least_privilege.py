"""Deliverable code never runs with a platform credential (DESIGN.md, "Trust boundaries").

The test process holds what a platform worker holds (DAGSTER_HOME, the warehouse password, the
model token, cloud keys); a service's tests, its build backend, its app, its deployed process and a
notebook's kernel must see none of it, only what their spec declares, and no stored log may show a
secret's value. Everything runs for real: pytest, pip, uvicorn, a Jupyter kernel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
import subprocess
import sys
from pathlib import Path

import dagster as dg
import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from platform_assets.catalog import load_catalog
from platform_assets.sandbox import PYTHON, LocalSandbox, SandboxTask
from platform_assets.secret_store import MissingSecret, SecretRef, secret_path, write_secret
from resources.deploy_target import DeployFailed, ProcessLaunch
from resources.local_process import LocalProcessTarget
from tests.conftest import Platform

PLATFORM_CREDENTIALS = {
    "PLATFORM_PG_PASSWORD": "pg-password-of-the-platform",
    "PLATFORM_MODEL_TOKEN": "model-token-of-the-platform",
    "AWS_ACCESS_KEY_ID": "AKIAPLATFORMKEYID",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-of-the-platform",
}
FORBIDDEN = ("DAGSTER_HOME", *PLATFORM_CREDENTIALS)
SERVICE = "recommendations-api"
TEAM = "recs-team"
API_KEY = "recs-api-key-0123456789"
# Raises wherever the deliverable's code runs (tests, build backend, app import, deployed process) if it
# can see a platform credential: the build or the start then fails and the tests below with it.
GUARD = f"""
import os as _os

_LEAKED = [name for name in {FORBIDDEN!r} if name in _os.environ]
if _LEAKED:
    raise RuntimeError(f"platform credentials leaked into deliverable code: {{_LEAKED}}")
"""
API_KEY_SHA256 = hashlib.sha256(API_KEY.encode()).hexdigest()  # the test knows the digest, not the value
SECRET_TEST = f"""import hashlib
import os


def test_declared_secret_reaches_the_tests():
    assert hashlib.sha256(os.environ["RECS_API_KEY"].encode()).hexdigest() == "{API_KEY_SHA256}"
"""
PRINTING_TEST = """import os


def test_prints_the_secret():
    print("the key is", os.environ["RECS_API_KEY"])
    assert os.environ["RECS_API_KEY"] == "something else"
"""


@pytest.fixture
def credentials(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    """The platform, whose process holds DAGSTER_HOME (the fixture sets it) and the credentials."""
    for name, value in PLATFORM_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return platform


def environ(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def set_secret_with_cli(team: str, secret: str, key: str, value: str) -> None:
    completed = subprocess.run([sys.executable, "-m", "platform_assets.secret_store", "set", team, secret, key],
                               input=value, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def test_sandboxed_code_gets_its_declared_env_and_secrets_only(credentials: Platform, tmp_path: Path) -> None:
    set_secret_with_cli(TEAM, "recs-api", "api-key", API_KEY)
    assert stat.S_IMODE(secret_path(TEAM, "recs-api", "api-key").stat().st_mode) == 0o600
    script = ("import json, os\n"
              "json.dump(dict(os.environ), open('seen.json', 'w'))\n"
              "open('report.txt', 'w').write('key=' + os.environ['RECS_API_KEY'])\n"
              "print('token', os.environ['UPSTREAM_TOKEN'], 'key', os.environ['RECS_API_KEY'],\n"
              "      'platform', " + repr(PLATFORM_CREDENTIALS["PLATFORM_PG_PASSWORD"]) + ")\n")
    task = SandboxTask(deliverable=SERVICE, team=TEAM, purpose="tests", command=[PYTHON, "-c", script],
                       workdir=tmp_path, outputs=("seen.json", "report.txt"), redacted_outputs=("report.txt",),
                       env={"RECS_MODE": "test", "UPSTREAM_TOKEN": "upstream-token-value"},
                       secret_env={"RECS_API_KEY": ("recs-api", "api-key")})

    result = LocalSandbox().run(task)

    assert result.ok, result.output
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert not set(FORBIDDEN) & set(seen), seen
    assert (seen["RECS_MODE"], seen["RECS_API_KEY"]) == ("test", API_KEY)
    assert result.output == "token *** key *** platform ***", "tokens, secrets and the platform's own are hidden"
    assert (tmp_path / "report.txt").read_text() == "key=***"

    missing = SandboxTask(**{**task.__dict__, "secret_env": {"DB_PASSWORD": ("recs-db", "password")}})
    with pytest.raises(MissingSecret, match=r"secret 'recs-db' \(key 'password'\) of team recs-team is not in the "
                                            r"local secret store: write it to .*/platform/secrets/teams/recs-team/"
                                            r"recs-db/password \(mode 0600\)") as raised:
        LocalSandbox().run(missing)
    assert raised.value.variable == "DB_PASSWORD"


def test_deployed_process_sees_its_launch_only_and_logs_privately(credentials: Platform, tmp_path: Path) -> None:
    target = LocalProcessTarget(environment="prod", root=str(tmp_path / "prod"))
    server = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    launch = ProcessLaunch(deliverable="web", version="v1", workdir=tmp_path, health_path="/", command=server,
                           env={"PLATFORM_ENVIRONMENT": "prod", "UPSTREAM_URL": "http://127.0.0.1:1"},
                           secret_env={"RECS_API_KEY": API_KEY}, startup_timeout_s=15)
    try:
        started = target.deploy(launch)
        seen = environ(started["pid"])
        assert not set(FORBIDDEN) & set(seen), seen
        assert (seen["RECS_API_KEY"], seen["UPSTREAM_URL"]) == (API_KEY, "http://127.0.0.1:1")
        log = Path(started["log"])
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(log.parent.parent.stat().st_mode) == 0o700

        leaky = ("import os; print('key', os.environ['RECS_API_KEY'], 'token', os.environ['UPSTREAM_TOKEN']); "
                 "raise SystemExit(3)")
        crashing = ProcessLaunch(deliverable="web", version="v2", workdir=tmp_path, health_path="/",
                                 command=[sys.executable, "-c", leaky], env={"UPSTREAM_TOKEN": "upstream-token-value"},
                                 secret_env={"RECS_API_KEY": API_KEY})
        with pytest.raises(DeployFailed) as failure:
            target.deploy(crashing)
        assert "key *** token ***" in failure.value.metadata["log_tail"]
        assert API_KEY not in failure.value.metadata["log_tail"]
    finally:
        target.stop("web")


def guard_service(platform: Platform) -> Path:
    """The demo service with the credential guard in its package, its build backend (setup.py) and a
    test that its declared secret arrives; the spec declares that secret."""
    folder = platform.catalog / SERVICE
    package = folder / "src" / "recommendations_api" / "__init__.py"
    package.write_text(package.read_text() + GUARD)
    (folder / "setup.py").write_text(GUARD + "\nfrom setuptools import setup\n\nsetup()\n")
    (folder / "tests" / "conftest.py").write_text(GUARD)
    (folder / "tests" / "test_secret.py").write_text(SECRET_TEST)
    spec = yaml.safe_load((folder / "deliverable.yaml").read_text())
    spec["service"]["secrets"] = {"RECS_API_KEY": {"secret": "recs-api", "key": "api-key"}}
    (folder / "deliverable.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder


def failure_message(result: dg.ExecuteInProcessResult, node: str) -> str:
    failure = result.failure_data_for_node(node)
    assert failure is not None, f"{node} did not fail"
    return failure.error.message


def test_service_build_and_deploy_see_no_platform_credential(credentials: Platform) -> None:
    folder = guard_service(credentials)
    build, evaluate, staging = f"{SERVICE}/build", f"{SERVICE}/evaluate", f"{SERVICE}/staging"

    missing = credentials.materialize(build)
    message = failure_message(missing, "recommendations_api__build")
    assert f"{folder / 'deliverable.yaml'}: field 'service.secrets.RECS_API_KEY': secret 'recs-api'" in message
    assert f"write it to {secret_path(TEAM, 'recs-api', 'api-key')}" in message

    write_secret(TEAM, "recs-api", "api-key", API_KEY)
    delivered = credentials.materialize(build, evaluate, staging)

    assert delivered.success, [e.message for e in delivered.all_events if e.is_failure]
    built = credentials.latest(build)
    assert built["tests_failed"] == 0 and built["tests_passed"] >= 6, "the guard in conftest.py let them run"
    assert all(check.passed for check in delivered.get_asset_check_evaluations())
    running = credentials.current(SERVICE, "staging")
    seen = environ(running["pid"])
    assert not set(FORBIDDEN) & set(seen), seen
    assert seen["RECS_API_KEY"] == API_KEY and seen["PLATFORM_ENVIRONMENT"] == "staging"
    log = Path(running["log"])
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(log.parent.stat().st_mode) == 0o700

    secret_path(TEAM, "recs-api", "api-key").unlink()
    undeployable = credentials.materialize(f"{SERVICE}/prod")
    message = failure_message(undeployable, "recommendations_api__prod")
    assert "field 'service.secrets.RECS_API_KEY'" in message and "is not in the local secret store" in message
    assert credentials.current(SERVICE, "prod") is None

    write_secret(TEAM, "recs-api", "api-key", API_KEY)
    (folder / "tests" / "test_secret.py").write_text(PRINTING_TEST)
    printed = credentials.materialize(build, evaluate)

    [tests_gate] = [e for e in printed.get_asset_check_evaluations() if e.check_name == "tests"]
    assert not tests_gate.passed
    failures = tests_gate.metadata["failures"].value
    assert any("test_prints_the_secret" in failure and "***" in failure for failure in failures), failures
    version = credentials.latest(build)["version"]
    stored = (credentials.home / "platform" / "artifacts" / SERVICE / version / "tests.json").read_text()
    assert "the key is ***" in stored
    assert API_KEY not in stored and API_KEY not in json.dumps(failures)


def test_notebook_kernel_sees_no_platform_credential(credentials: Platform) -> None:
    folder = credentials.catalog / "env-report"
    folder.mkdir()
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python"}})
    parameters = new_code_cell("input_files = {}")
    parameters.metadata["tags"] = ["parameters"]
    probe = new_code_cell(
        "import os\nfrom IPython.display import display\n"
        f"leaked = [name for name in {FORBIDDEN!r} if name in os.environ]\n"
        "display({'application/vnd.platform.outputs+json': {'leaked': len(leaked), 'names': ','.join(leaked),"
        " 'home': os.environ['HOME']}, 'text/plain': f'leaked: {leaked}'}, raw=True)")
    nb.cells = [parameters, probe]
    nbformat.write(nb, folder / "report.ipynb")
    (folder / "deliverable.yaml").write_text(yaml.safe_dump({
        "name": "env-report", "kind": "notebook", "owner": "analytics", "description": "What a kernel can see.",
        "notebook": {"path": "report.ipynb"}, "gates": {"outputs": {"leaked": "== 0"}}}))

    result = credentials.materialize("env-report/build", "env-report/evaluate")

    assert result.success, [e.message for e in result.all_events if e.is_failure]
    outputs = credentials.latest("env-report/build")["outputs"]
    assert (outputs["leaked"], outputs["names"]) == (0, "")
    assert ".sandbox-home" in outputs["home"], "the kernel runs in the sandbox, with a HOME of its own"
    assert all(check.passed for check in result.get_asset_check_evaluations())


def test_manifest_targets_get_secret_references_never_values(credentials: Platform) -> None:
    from platform_assets.kinds.service.handler import ServiceHandler
    from resources.k8s_manifests import RenderContext, render
    from tests.test_deploy_manifests import stage_context

    write_secret(TEAM, "recs-api", "api-key", API_KEY)  # in the local store, which a manifest never reads
    ctx = stage_context(SERVICE)
    service = ctx.spec.service.model_copy(
        update={"secrets": {"RECS_API_KEY": SecretRef(secret="recs-api", key="api-key")}})
    ctx.deliverable = dataclasses.replace(ctx.deliverable, spec=ctx.spec.model_copy(update={"service": service}))

    manifests = render(ServiceHandler().workload(ctx, "abc", "staging"), RenderContext("staging", "recs-team-staging",
                                                                                        "registry/recs:abc"))

    [container] = manifests[0]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RECS_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "recs-api", "key": "api-key"}}
    assert API_KEY not in yaml.safe_dump_all(manifests)


def test_malformed_secrets_name_the_file_field_and_fix(credentials: Platform) -> None:
    spec_path = credentials.catalog / SERVICE / "deliverable.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["service"]["env"] = {"RECS_MODE": "prod"}
    spec["service"]["secrets"] = {"RECS_MODE": {"secret": "recs-api", "key": "mode"},
                                  "PLATFORM_VERSION": {"secret": "recs-api", "key": "v"},
                                  "bad-name": {"secret": "recs-api", "key": "k"}}
    spec_path.write_text(yaml.safe_dump(spec))
    [error] = [str(e) for e in load_catalog(credentials.catalog, credentials.settings).errors]
    assert error.startswith(f"{spec_path}: field 'service.secrets'"), error
    assert "'RECS_MODE' is also in 'env'" in error and "'PLATFORM_VERSION' is set by the platform" in error
    assert "'bad-name' is not an environment variable name" in error

    spec["service"]["env"] = {}
    spec["service"]["secrets"] = {"DB_PASSWORD": {"secret": "Recs_DB", "key": "../password"}}
    spec_path.write_text(yaml.safe_dump(spec))
    errors = "\n".join(str(e) for e in load_catalog(credentials.catalog, credentials.settings).errors)
    assert "field 'service.secrets.DB_PASSWORD.secret': 'Recs_DB' is not a secret name; use a DNS label" in errors
    assert "field 'service.secrets.DB_PASSWORD.key': '../password' is not a secret key" in errors
