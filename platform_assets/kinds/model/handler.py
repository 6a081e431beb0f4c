"""Models: trained from a published dataset, tracked and registered in MLflow, served per environment.

build: train in the sandbox on the exact dataset version the build pins (its audit schema), log
parameters, metrics, the model in skops format with signature and input example, and the dataset
lineage; register a model version (`build.py`). version = the MLflow model version.
evaluate: gates `metrics`, `champion`, `signature`, scored with the registered (pyfunc) models on
the build's holdout, each checked before it is loaded (`model_safety.py`). deploy: move the
environment's alias to the version and start a model server that loads `models:/<name>@<env>`
behind that (model, environment)'s own token; if it does not come up, the alias moves back. The
server keeps a sample of what it serves, which the scheduled `drift` check compares with the
holdout (platform_assets/kinds/model/drift_check.py).
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from platform_assets.expectations import Expectation
from platform_assets.handlers.base import BuildFailed, GateResult, KindHandler, StageContext
from platform_assets.kinds.model.build import (
    adopt,
    describe_inputs,
    model_fingerprint,
    registry_of,
    score,
    train,
    training_data,
    unfair_comparison,
)
from platform_assets.kinds.model.safety import serving_env
from platform_assets.kinds.model.workload import MODEL_SERVER, render_model_server
from platform_assets.model_token import (
    SAMPLE_ROWS_ENV,
    SAMPLE_TOKEN_ENV,
    SECRET_KEY,
    SERVER_TOKEN_ENV,
    model_token,
    sample_secret_name,
    sample_token,
    token_secret_name,
)
from platform_assets.serving_metrics import served_command
from platform_assets.slo import Slo
from platform_assets.specs import DeliverableSpec, StrictModel
from resources.deploy_target import DeployFailed, DeployTarget, ProcessLaunch, Workload
from resources.manifest_target import ManifestTarget

HOLDOUT = "holdout.parquet"
ADOPT_TAG = "platform/model_version"  # run tag: adopt this registered version instead of training
SERVER_PORT = 8080
SERVER_APP = "platform_assets.kinds.model.server:app"  # served behind the platform's wrapper (serving.py)
ROC_PLOT = "roc.png"


class MetricsGate(StrictModel):
    """Thresholds on holdout metrics, e.g. `roc_auc: ">= 0.70"` or `roc_auc: {min: 0.70}`."""

    thresholds: dict[str, Expectation] = Field(default_factory=dict)


class ChampionGate(StrictModel):
    """The challenger may trail the champion (what prod serves) on `metric` by at most `tolerance`."""

    metric: str = "roc_auc"
    tolerance: float = Field(default=0.01, ge=0)
    higher_is_better: bool = True


class SignatureGate(StrictModel):
    allow_breaking: bool = False


class ModelGates(StrictModel):
    metrics: MetricsGate = MetricsGate()
    champion: ChampionGate = ChampionGate()
    signature: SignatureGate = SignatureGate()


class DriftSettings(StrictModel):
    """When the scheduled `drift` check fails: a feature whose served values differ from the training
    holdout both significantly (KS or chi-square p-value below `significance`) and by enough to
    matter (population stability index above `psi_max`); platform_assets/kinds/model/drift.py says why both."""

    features: list[str] = Field(default_factory=list, description="features to compare; unset: every feature")
    psi_max: float = Field(default=0.2, gt=0)
    significance: float = Field(default=0.01, gt=0, lt=1)
    min_rows: int = Field(default=200, ge=20, description="fewer served rows than this are not judged")
    sample_rows: int = Field(default=5000, ge=100, le=100_000, description="served rows the model server keeps")


class ModelSettings(StrictModel):
    training_table: str = Field(description="a table published by a dataset in depends_on")
    label: str
    exclude: list[str] = Field(default_factory=list, description="columns that are not features")
    trainer: str = Field(default="train.py:train", pattern=r"^[\w./-]+\.py:[A-Za-z_]\w*$")
    params: dict[str, Any] = Field(default_factory=dict)
    trusted_types: list[str] = Field(
        default_factory=list,
        description="the types from platform.yaml's models.trusted_types this model needs (unset: all of them)",
    )
    train_timeout_s: float = Field(default=3600.0, gt=0, le=86400, description="the trainer's time limit")
    entity_key: str = Field(description="the column naming each row's entity: it decides the holdout (md5 of it)")
    test_fraction: float = Field(default=0.25, gt=0, lt=0.9, description="the holdout's share of the hash space")
    startup_timeout_s: float = Field(default=90.0, gt=0, le=900)
    serving_compute: str | None = Field(default=None, description="the model server's profile; unset: default_compute")
    replicas: int = Field(default=1, ge=1, le=50, description="model server pods on Kubernetes")
    drift: DriftSettings = DriftSettings()
    on_drift: Literal["alert", "retrain"] = Field(
        default="alert", description="retrain: a failed `drift` check requests build, evaluate, first environment")


class ModelSpec(DeliverableSpec):
    kind: Literal["model"]
    gates: ModelGates = ModelGates()
    model: ModelSettings
    slo: Slo | None = None


class ModelHandler(KindHandler):
    kind = "model"
    template = Path(__file__).with_name("template")
    workload_renderers = {MODEL_SERVER: render_model_server}
    technology = "mlflow"
    spec_model = ModelSpec
    gates = ("metrics", "champion", "signature")
    resources = frozenset({"mlflow", "warehouse", "sandbox"})
    serves = True
    follows_sources = True
    adopts = True
    watches_drift = True

    def retrains_on_drift(self, spec: Any) -> bool:
        return spec.model.on_drift == "retrain"

    def spec_paths(self, spec: Any) -> dict[str, str]:
        return {"model.trainer": spec.model.trainer.partition(":")[0]}

    def version(self, ctx: StageContext) -> str | None:
        """The registered version trained from the same code, settings and data, if any; or the
        version registered outside the platform that this run was asked to adopt."""
        adopting = ctx.run_tags.get(ADOPT_TAG)
        return adopting or registry_of(ctx).version_with_fingerprint(ctx.name, model_fingerprint(ctx))

    def reusable(self, ctx: StageContext, record: dict[str, Any]) -> bool:
        return ctx.artifacts.exists(ctx.name, record["version"], HOLDOUT)

    def adoption_tags(self, version: str) -> dict[str, str] | None:
        return {ADOPT_TAG: version}  # build adopts this registered version instead of training

    def build_failed(self, ctx: StageContext, version: str | None, reason: str) -> str | None:
        """A hand-in that could not be adopted (refused, or its inputs missing) says so on its
        registered version (`platform.build`), where its author looks."""
        from mlflow.exceptions import MlflowException

        version = version or ctx.run_tags.get(ADOPT_TAG)
        if version and ctx.run_tags.get(ADOPT_TAG) == version:
            try:
                registry_of(ctx).tag_version(ctx.name, version, {
                    "platform.build": f"failed: {reason}"[:5000], "platform.build_run_id": ctx.run_id or ""})
            except MlflowException as exc:  # not in the registry: the Dagster record still says why
                ctx.log.warning(f"could not tag {ctx.name} version {version} in MLflow: {exc}")
        return version

    def build(self, ctx: StageContext, version: str | None) -> dict[str, Any]:
        data = training_data(ctx)
        if version is not None and ctx.run_tags.get(ADOPT_TAG) == version:
            record = adopt(ctx, version, data)
        else:
            record = train(ctx, data)
        with tempfile.TemporaryDirectory() as tmp:
            data.x_test.assign(**{ctx.spec.model.label: data.y_test}).to_parquet(Path(tmp) / HOLDOUT)
            ctx.artifacts.put_file(ctx.name, record["version"], Path(tmp) / HOLDOUT)
        return {
            **record,
            "model_uri": f"models:/{ctx.name}/{record['version']}",
            "tracking_uri": registry_of(ctx).uri(),
            "features": {c: str(t) for c, t in data.x_train.dtypes.items()},
            "input_example": json.loads(data.x_test.head(3).to_json(orient="records")),
            "training": {"dataset": data.dataset, "dataset_version": data.dataset_version, "table": data.table,
                         "view": data.view, "train_rows": len(data.x_train), "holdout_rows": len(data.x_test)},
            "upstream_versions": ctx.upstream_versions,
        }

    def build_metadata(self, record: dict[str, Any]) -> dict[str, Any]:
        """A platform training says what it trained on; an adopted version says it was adopted and
        shows the training data its own run logged, since the platform did not train it."""
        training = record["training"]
        if record.get("adopted"):
            origin = {"adopted": f"registered outside the platform by MLflow run {record['run_id']}",
                      "logged_training_data": describe_inputs(record.get("logged_inputs") or []),
                      "scored_on": f"{training['holdout_rows']} holdout rows of {training['dataset']} "
                                   f"{training['dataset_version']} ({training['table']})"}
        else:
            origin = {"trained_on": f"{training['dataset']} {training['dataset_version']} ({training['table']})",
                      "rows": f"{training['train_rows']} train, {training['holdout_rows']} holdout"}
        return {
            "model_uri": record["model_uri"],
            "mlflow_run_id": record["run_id"],
            **origin,
            **{f"metric/{name}": round(value, 4) for name, value in record["metrics"].items()},
        }

    def evaluate(self, ctx: StageContext, version: str, record: dict[str, Any]) -> list[GateResult]:
        import pandas as pd

        holdout = pd.read_parquet(ctx.artifacts.path(ctx.name, version, HOLDOUT))
        label = ctx.spec.model.label
        champion = ctx.deployed(ctx.settings.last_environment)
        scored = score(ctx, version, holdout, label)
        if "error" in scored:
            raise BuildFailed(f"{ctx.name} version {version} cannot be scored on its holdout: {scored['error']}")
        champion_scored = None
        if champion is not None and champion.version != version:
            champion_scored = score(ctx, champion.version, holdout, label)
        plot = _plot(ctx, version, holdout[label], scored, champion.version if champion else None, champion_scored)
        gates = [
            _metrics_gate(ctx, scored["metrics"]),
            _champion_gate(ctx, version, champion.version if champion else None, scored, champion_scored, plot,
                           unfair_comparison(record)),
            _signature_gate(ctx, version, record, champion.version if champion else None),
        ]
        registry_of(ctx).tag_version(ctx.name, version, gate_tags(gates, ctx.run_id))
        return gates

    def evaluation_metadata(self, gates: list[GateResult]) -> dict[str, Any]:
        """The metrics side by side and the ROC plot, inline in the UI."""
        import dagster as dg

        champion = next(g for g in gates if g.name == "champion").metadata
        image = base64.b64encode(Path(champion["roc_plot"]).read_bytes()).decode()
        return {
            "metrics": dg.MetadataValue.md(champion["comparison"]),
            "roc_curve": dg.MetadataValue.md(f"![ROC curve](data:image/png;base64,{image})"),
            "roc_plot": dg.MetadataValue.path(champion["roc_plot"]),
        }

    def deploy(self, ctx: StageContext, version: str, record: dict[str, Any], target: DeployTarget) -> dict[str, Any]:
        """Move the alias, start the server on it; the alias goes back if the server does not come up."""
        registry = registry_of(ctx)
        alias = target.environment
        workload = self.workload(ctx, version, alias) if isinstance(target, ManifestTarget) else None
        previous = registry.alias_version(ctx.name, alias)
        registry.move_alias(ctx.name, alias, version)
        try:
            deployment = (target.deploy_workload(workload) if isinstance(target, ManifestTarget) and workload
                          else target.deploy(self._launch(ctx, version, alias, target)))
        except DeployFailed as exc:
            registry.move_alias(ctx.name, alias, previous)
            raise DeployFailed(f"{exc}; alias '{alias}' moved back to version {previous or '(none)'}",
                               {**exc.metadata, "alias_restored_to": previous}) from exc
        deployed_tags(registry, ctx, alias, version, previous)
        url = deployment.get("url")
        return {**deployment, "alias": alias, "model_uri": f"models:/{ctx.name}@{alias}",
                **({"predict_url": url + "/predict"} if url else {}), "auth": "bearer",
                "previous_alias_version": previous}

    def _launch(self, ctx: StageContext, version: str, alias: str, target: DeployTarget) -> ProcessLaunch:
        registry = registry_of(ctx)
        command, served = served_command(sys.executable, SERVER_APP, "127.0.0.1", "{port}")
        return ProcessLaunch(
            deliverable=ctx.name,
            version=version,
            command=command,
            health_path="/health",
            workdir=target.workspace(ctx.name, version),
            env={"MODEL_NAME": ctx.name, "MODEL_ALIAS": alias, "PLATFORM_VERSION": version,
                 "PLATFORM_ENVIRONMENT": alias, SERVER_TOKEN_ENV: model_token(ctx.settings, ctx.name, alias),
                 SAMPLE_TOKEN_ENV: sample_token(ctx.settings, ctx.name, alias),
                 SAMPLE_ROWS_ENV: str(ctx.spec.model.drift.sample_rows),
                 **registry.server_env(), **serving_env(ctx.settings.models.trusted_types), **served},
            startup_timeout_s=ctx.spec.model.startup_timeout_s,
        )

    def workload(self, ctx: StageContext, version: str, alias: str) -> Workload:
        """The model server as a Kubernetes workload: the platform's image, the registry of a tracking
        server, its (model, environment) token from a Secret the target provides in its namespace,
        sized by `model.serving_compute` (a GPU profile gets GPUs)."""
        registry, serving, settings = registry_of(ctx), ctx.settings.model_serving, ctx.spec.model
        config = ctx.settings.source or "platform.yaml"
        if not registry.tracking_uri or registry.tracking_uri.startswith(("sqlite:", "file:", "/")):
            raise DeployFailed(f"{config}: field 'mlflow.tracking_uri' must name a tracking server the cluster "
                               "can reach (e.g. http://mlflow.mlflow.svc:5000); a local store cannot serve "
                               "model servers on Kubernetes")
        image = serving.image or ctx.platform_image
        if not image:
            raise DeployFailed(f"{config}: field 'model_serving.image' is unset and this run has no code "
                               "location image to reuse; set it to the platform image that runs the model server")
        profile = settings.serving_compute or ctx.settings.default_compute
        secret = token_secret_name(ctx.settings, ctx.name, alias)
        sample_secret = sample_secret_name(ctx.settings, ctx.name, alias)
        command, served = served_command("python", SERVER_APP, "0.0.0.0", str(SERVER_PORT))
        return Workload(
            deliverable=ctx.name,
            kind=MODEL_SERVER,
            version=version,
            team=ctx.spec.owner,
            port=SERVER_PORT,
            health_path="/health",
            command=command,
            profile_name=profile,
            profile=ctx.settings.profile(profile),
            env={"MODEL_NAME": ctx.name, "MODEL_ALIAS": alias, "HOME": "/tmp", **registry.server_env(),
                 SAMPLE_ROWS_ENV: str(settings.drift.sample_rows),
                 **serving_env(ctx.settings.models.trusted_types), **served},
            secret_env={SERVER_TOKEN_ENV: (secret, SECRET_KEY), SAMPLE_TOKEN_ENV: (sample_secret, SECRET_KEY)},
            secrets={secret: {SECRET_KEY: model_token(ctx.settings, ctx.name, alias)},
                     sample_secret: {SECRET_KEY: sample_token(ctx.settings, ctx.name, alias)}},
            env_from_secrets=tuple(serving.env_secrets),
            image=image,
            startup_timeout_s=settings.startup_timeout_s,
            min_replicas=settings.replicas,
            egress=registry.server_egress(),
            options={"model_uri": f"models:/{ctx.name}@{alias}"},
        )

    def smoke_headers(self, ctx: StageContext, deployment: dict[str, Any]) -> dict[str, str]:
        return {"Authorization": f"Bearer {model_token(ctx.settings, ctx.name, deployment['alias'])}"}

    def verify(self, ctx: StageContext, deployment: dict[str, Any], target: DeployTarget) -> GateResult:
        """Serves the version, predicts the build's input example with the token, refuses without.

        On a manifest target the rollout's readiness probe (`/health` answers only once the model
        is loaded) is the check: the platform's step may not be able to reach the pods."""
        import httpx

        if isinstance(target, ManifestTarget):
            healthy, detail = target.verify(deployment)
            return GateResult("healthy", healthy, detail, {"model_uri": deployment["model_uri"]})

        token = model_token(ctx.settings, ctx.name, deployment["alias"])
        example = {"dataframe_records": ctx.build_record(deployment["version"])["input_example"]}
        problems = []
        try:
            health = httpx.get(deployment["health_url"], timeout=10).json()
            if str(health.get("version")) != deployment["version"]:
                problems.append(f"serves version {health.get('version')}, expected {deployment['version']}")
            answer = httpx.post(deployment["predict_url"], json=example, timeout=30,
                                headers={"Authorization": f"Bearer {token}"})
            if answer.status_code != 200 or len(answer.json()["predictions"]) != len(example["dataframe_records"]):
                problems.append(f"/predict answered HTTP {answer.status_code}: {answer.text[:200]}")
            anonymous = httpx.post(deployment["predict_url"], json=example, timeout=30)
            if anonymous.status_code != 401:
                problems.append(f"/predict without a token answered HTTP {anonymous.status_code}, expected 401")
        except httpx.HTTPError as exc:
            problems.append(f"no answer from {deployment['url']}: {exc}")
        summary = "; ".join(problems) or (f"serves {ctx.name} {deployment['version']} as "
                                          f"{deployment['model_uri']}; /predict needs the token")
        return GateResult("healthy", not problems, summary, {"predict_url": deployment["predict_url"]})


def deployed_tags(registry: Any, ctx: StageContext, env: str, version: str, previous: str | None) -> None:
    """`platform.deployed.<env>` on the version now served there (when, by which Dagster run), and
    on the one it replaced, so the registry says which environments serve a version."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat(timespec="seconds")
    key = f"platform.deployed.{env}"
    registry.tag_version(ctx.name, version, {key: f"serving since {now} (run {ctx.run_id})"})
    if previous and previous != version:
        registry.tag_version(ctx.name, previous, {key: f"replaced by version {version} at {now}"})


def gate_tags(gates: list[GateResult], run_id: str | None) -> dict[str, str]:
    """`platform.gate.<name>`: `passed: ...` or `failed: ...` (MLflow caps a tag value at 5000 characters)."""
    tags = {f"platform.gate.{g.name}": f"{'passed' if g.passed else 'failed'}: {g.summary}"[:5000] for g in gates}
    return {**tags, "platform.evaluate_run_id": run_id} if run_id else tags


def _plot(ctx: StageContext, version: str, y_true: Any, scored: dict[str, Any], champion: str | None,
          champion_scored: dict[str, Any] | None) -> str:
    from platform_assets.kinds.model.training import roc_plot

    curves = {f"challenger v{version}": (y_true, scored["scores"])}
    if champion_scored and "scores" in champion_scored:
        curves[f"champion v{champion}"] = (y_true, champion_scored["scores"])
    with tempfile.TemporaryDirectory() as tmp:
        drawn = roc_plot(curves, Path(tmp) / ROC_PLOT, f"{ctx.name}: ROC on the holdout")
        registry_of(ctx).client().log_artifact(ctx.build_record(version)["run_id"], str(drawn), "evaluation")
        return str(ctx.artifacts.put_file(ctx.name, version, drawn))


def _metrics_gate(ctx: StageContext, metrics: dict[str, float]) -> GateResult:
    thresholds: dict[str, Expectation] = ctx.spec.gates.metrics.thresholds
    unmet = [problem for name, expectation in thresholds.items()
             if (problem := expectation.problem(name, metrics.get(name)) if name in metrics
                 else f"{name} is not a metric; known: {', '.join(metrics)}")]
    met = [f"{name} = {metrics[name]:.4f} ({e.describe()})" for name, e in thresholds.items() if name in metrics]
    summary = ("; ".join(unmet) or "; ".join(met)) if thresholds else "no thresholds in gates.metrics.thresholds"
    return GateResult("metrics", not unmet, summary, {"metrics": {k: round(v, 4) for k, v in metrics.items()},
                                                       "thresholds": {k: e.describe() for k, e in thresholds.items()}})


def _champion_gate(ctx: StageContext, version: str, champion: str | None, scored: dict[str, Any],
                   champion_scored: dict[str, Any] | None, plot: str, unfair: str | None) -> GateResult:
    gate: ChampionGate = ctx.spec.gates.champion
    env = ctx.settings.last_environment
    challenger_metrics = scored["metrics"]
    champion_metrics = (champion_scored or {}).get("metrics", {})
    comparison = _comparison_table(version, challenger_metrics, champion, champion_metrics)
    metadata = {"champion_version": champion, "comparison": comparison, "roc_plot": plot,
                "challenger_metrics": challenger_metrics, "champion_metrics": champion_metrics}
    if gate.metric not in challenger_metrics:
        return GateResult("champion", False, f"gates.champion.metric '{gate.metric}' is not a metric; known: "
                          f"{', '.join(challenger_metrics)}", metadata)
    if unfair:  # its holdout figures may be inflated: neither compared nor passed
        return GateResult("champion", False, unfair, metadata)
    if champion is None:
        return GateResult("champion", True, f"no champion in {env} yet", metadata)
    if champion == version:
        return GateResult("champion", True, f"version {version} is the champion in {env}", metadata)
    if champion_scored is None or "error" in champion_scored:
        reason = (champion_scored or {}).get("error", "not scored")
        return GateResult("champion", False, f"the champion {champion} could not score this holdout ({reason}); "
                          "compare them by hand and raise gates.champion.tolerance if the change is intended",
                          metadata)
    new, old = challenger_metrics[gate.metric], champion_metrics[gate.metric]
    margin = (new - old) if gate.higher_is_better else (old - new)
    passed = margin >= -gate.tolerance
    verdict = "within" if passed else "worse than"
    summary = (f"{gate.metric} {new:.4f} (v{version}) vs {old:.4f} (champion v{champion} in {env}): "
               f"{verdict} the tolerance {gate.tolerance:g}")
    return GateResult("champion", passed, summary, {**metadata, "margin": round(margin, 4)})


def _comparison_table(version: str, challenger: dict[str, float], champion: str | None,
                      champion_metrics: dict[str, float]) -> str:
    header = f"| metric | challenger v{version} | champion {('v' + champion) if champion else '(none)'} |"
    rows = [f"| {name} | {value:.4f} | {champion_metrics.get(name, float('nan')):.4f} |"
            for name, value in challenger.items()]
    return "\n".join([header, "|---|---|---|", *rows])


def _signature_gate(ctx: StageContext, version: str, record: dict[str, Any], champion: str | None) -> GateResult:
    """The model carries a signature whose inputs are the features it was trained on, by name and type."""
    from mlflow.models import get_model_info

    registry_of(ctx).activate()
    signature = get_model_info(f"models:/{ctx.name}/{version}").signature
    if signature is None or signature.inputs is None:
        return GateResult("signature", False, "the model was logged without a signature")
    inputs = _signature_inputs(signature)
    problems = [f"feature {name} missing from the signature" for name in record["features"] if name not in inputs]
    problems += [f"signature input {name} is not a feature" for name in inputs if name not in record["features"]]
    breaking: list[str] = []
    if champion and champion != version:
        old = _signature_inputs(get_model_info(f"models:/{ctx.name}/{champion}").signature)
        breaking = [f"input {n} removed" for n in old if n not in inputs]
        breaking += [f"input {n} retyped {old[n]} -> {inputs[n]}" for n in old if n in inputs and old[n] != inputs[n]]
        breaking += [f"input {n} added (callers must send it)" for n in inputs if n not in old]
    allow = ctx.spec.gates.signature.allow_breaking
    passed = not problems and (not breaking or allow)
    summary = "; ".join(problems + breaking) or f"{len(inputs)} inputs match the features"
    if breaking and not problems:
        summary += " (allowed by the spec)" if allow else "; set gates.signature.allow_breaking to ship it"
    return GateResult("signature", passed, summary, {"inputs": inputs, "breaking_changes": breaking})


def _signature_inputs(signature: Any) -> dict[str, str]:
    if signature is None or signature.inputs is None:
        return {}
    return {spec.name: str(spec.type) for spec in signature.inputs.inputs}
