"""The three pipeline stages, shared by every kind.

Stages pass nothing through IO managers: each stage records the version it acted on in its
materialization, and the next stage reads that version back from the event log (records.py).
That is what makes promotion move the exact artifact that was evaluated, from any run, on any
pod. The deploy stage is where the promotion rules are enforced, whoever asked (a sensor, the
CLI, the UI, a hand-picked selection): the requester is verified and allowed, the version passed
its gates and, after the first environment, is healthy in the previous one, a `manual`
environment has a verified approval, and one deploy of an environment runs at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg

from platform_assets.handlers.base import BUILD_RECORD, BuildFailed, Deployed, GateResult, StageContext
from platform_assets.identity.approvals import APPROVAL_EVENT, check_approval
from platform_assets.identity.requester import (
    IDENTITY_SOURCE_TAG,
    REQUESTED_BY_TAG,
    Requester,
    permission_problem,
    registry,
    verified_requester,
)
from platform_assets.kinds.registry import get_handler
from platform_assets.post_deploy import post_deploy_check
from platform_assets.records import (
    KEPT,
    LAST_DEPLOY,
    LAST_UPDATED,
    ROLLBACK_TAG,
    TRIGGER_TAG,
    build_key,
    deploy_history,
    env_key,
    evaluate_key,
    evaluation_of,
    latest,
    observations,
    target_resource_key,
)
from platform_assets.settings import PlatformSettings
from platform_assets.specs import Deliverable
from resources.deploy_target import DeployFailed, DeployTarget

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
LOG_LINES = 10  # lines of a failed start's log in the step's failure message
# What a `kept` record does not restate from the record it keeps: it says who asked now, and why.
RESTATED = frozenset({"rollback_from", "trigger", "requested_by", KEPT, "attempted_version", "reason"})


def stage_context(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, deliverable: Deliverable, settings: PlatformSettings
) -> StageContext:
    """What a handler sees of a step: a stage's, or another step of the kind's (a job's scheduled run)."""
    instance = context.instance
    return StageContext(
        deliverable=deliverable,
        settings=settings,
        artifacts=context.resources.artifact_store,
        log=context.log,
        deployed=lambda env: latest(instance, env_key(deliverable.name, env)),
        deployed_of=lambda name, env: latest(instance, env_key(name, env)),
        resources=context.resources,
        run_id=context.run_id,
        platform_image=_code_image(context),
        run_tags=dict(context.run.tags),
        step_context=context,
    )


def _code_image(context: dg.AssetExecutionContext) -> str | None:
    origin = context.dagster_run.job_code_origin
    return origin.repository_origin.container_image if origin else None


def run_build(
    context: dg.AssetExecutionContext, deliverable: Deliverable, settings: PlatformSettings
) -> dg.MaterializeResult:
    ctx = stage_context(context, deliverable, settings)
    handler = get_handler(deliverable.kind)
    for upstream in deliverable.spec.depends_on:
        published = latest(context.instance, env_key(upstream, settings.last_environment))
        if published is None:
            raise _build_failed(context, ctx, None, (
                f"{deliverable.name} depends on '{upstream}', which has no version in "
                f"{settings.last_environment} yet; deliver {upstream} first"))
        ctx.upstream_versions[upstream] = published.version
    version = None
    try:
        version = handler.version(ctx)
        record = ctx.build_record(version) if version else None
        reused = record is not None and handler.reusable(ctx, record)
        if reused:
            context.log.info(f"{deliverable.name} {version} was built before; reusing its immutable artifact")
        else:
            record = handler.build(ctx, version)
            version = str(record["version"])
            ctx.artifacts.put_json(deliverable.name, version, BUILD_RECORD, record)
    except BuildFailed as exc:
        raise _build_failed(context, ctx, version, f"{deliverable.name} could not be built: {exc}") from exc
    return dg.MaterializeResult(
        metadata={"version": version, **_plain(handler.build_metadata(record)), "reused": reused,
                  "upstream_versions": ctx.upstream_versions},
        data_version=dg.DataVersion(version),
    )


def _build_failed(context: dg.AssetExecutionContext, ctx: StageContext, version: str | None,
                  reason: str) -> dg.Failure:
    """Record a failed build (`event: build_failed` on `<name>/build`, so `deliver history`,
    `deliver status` and the UI show it, and where the kind records it) and return the step's failure."""
    deliverable = ctx.deliverable
    version = get_handler(deliverable.kind).build_failed(ctx, version, reason)
    metadata = {"event": "build_failed", "reason": reason, "trigger": context.run.tags.get(TRIGGER_TAG, "manual"),
                **({"attempted_version": version} if version else {})}
    context.log_event(dg.AssetObservation(asset_key=build_key(deliverable.name), metadata=metadata))
    return dg.Failure(reason, metadata=metadata)


def run_evaluate(
    context: dg.AssetExecutionContext, deliverable: Deliverable, settings: PlatformSettings
) -> dg.MaterializeResult:
    built = latest(context.instance, build_key(deliverable.name))
    if built is None:
        key = build_key(deliverable.name).to_user_string()
        raise dg.Failure(f"{deliverable.name} has not been built yet; materialize {key} first")
    ctx = stage_context(context, deliverable, settings)
    record = _stored_build(ctx, built.version)
    handler = get_handler(deliverable.kind)
    gates = handler.evaluate(ctx, built.version, record)
    failed = [gate.name for gate in gates if not gate.passed]
    return dg.MaterializeResult(
        metadata={
            "version": built.version,
            "gates_passed": not failed,
            "failed_gates": failed,
            **{f"gate/{gate.name}": f"{'PASS' if gate.passed else 'FAIL'}: {gate.summary}" for gate in gates},
            **_plain(handler.evaluation_metadata(gates)),
        },
        check_results=[_check_result(gate) for gate in gates],
        data_version=dg.DataVersion(built.version),
    )


def run_deploy(context: dg.AssetExecutionContext, deliverable: Deliverable, settings: PlatformSettings,
               env: str) -> Iterator[dg.MaterializeResult]:
    """Deploy the version recorded upstream: evaluated (first env) or healthy in the previous env.

    Everything from choosing the version to the record happens under the environment's deploy
    lock, so concurrent deploys of one environment run one after the other. A deploy that changes
    nothing (refused, or the new version did not start) while an earlier version serves restates
    that version (`kept`) with a failed `last_deploy` check saying why, then fails the run: the
    environment is not shown as down, and the run still asks for a person's attention."""
    name = deliverable.name
    rollback_to = context.run.tags.get(ROLLBACK_TAG)
    requester = _authorized(context, deliverable, settings, env, rollback_to)
    target: DeployTarget = getattr(context.resources, target_resource_key(env))
    ctx = stage_context(context, deliverable, settings)
    handler = get_handler(deliverable.kind)
    with target.lock(name, f"run {context.run_id}", context.log.info):
        serving = latest(context.instance, env_key(name, env))
        attempted = None
        try:
            candidate, source_key = _candidate(context.instance, deliverable, settings, env, rollback_to)
            attempted = candidate.version
            context.log.info(f"deploy lock held: {name} {attempted} to {env}")
            if rollback_to is None:
                _require_approval(context.instance, deliverable, settings, env, attempted)
            deployment = handler.deploy(ctx, attempted, _stored_build(ctx, attempted), target)
        except (DeployFailed, dg.Failure) as exc:
            failure = _deploy_failure(context, env, attempted, serving, exc, requester)
            if serving is not None:
                yield _kept(context, ctx, target, env, serving, attempted, failure, requester)
            raise failure from exc
        health = post_deploy_check(ctx, handler, deployment, target)
        if not health.passed and rollback_to is None:
            _roll_back_unhealthy(context, ctx, env, attempted, health, requester)
        metadata: dict[str, Any] = {
            "version": attempted,
            "environment": env,
            "healthy": health.passed,
            "promoted_from": source_key.to_user_string(),
            "trigger": context.run.tags.get(TRIGGER_TAG, "manual"),
            "requested_by": requester.describe(),
            **({"rollback_from": serving.version if serving else None} if rollback_to else {}),
            **_plain({k: v for k, v in deployment.items() if k != "version"}),
            **_plain({k: v for k, v in health.metadata.items() if k == "slo"}),
        }
        done = (f"{name} {attempted} deployed to {env} and healthy" if health.passed else
                f"{name} {attempted} deployed to {env} but NOT healthy ({health.summary}); nothing healthy ran "
                f"there before to restore")
        yield dg.MaterializeResult(
            metadata=_record_metadata(metadata),
            check_results=[_check_result(health), _check_result(GateResult(LAST_DEPLOY, health.passed, done))],
            data_version=dg.DataVersion(attempted),
        )


def _deploy_failure(context: dg.AssetExecutionContext, env: str, attempted: str | None, serving: Deployed | None,
                    exc: Exception, requester: Requester) -> dg.Failure:
    """The step's failure: a refusal as it is; a version that did not start is also recorded as an
    `event: deploy_failed` observation, with the last lines of its log in the message."""
    if isinstance(exc, dg.Failure):
        return exc
    details = {
        "event": "deploy_failed",
        "attempted_version": attempted,
        "serving_version": serving.version if serving else None,
        "reason": str(exc),
        "requested_by": requester.describe(),
        **_plain(exc.metadata),
    }
    message = f"{exc}. Nothing changed: {env} keeps serving {serving.version if serving else 'nothing'}."
    tail = [line for line in str(exc.metadata.get("log_tail", "")).splitlines() if line.strip()][-LOG_LINES:]
    if tail:  # indented: a code block where the UI renders the reason as markdown
        message += f"\nLast lines of its log ({exc.metadata.get('log', 'log')}):\n\n" + "\n".join(
            f"    {line}" for line in tail)
    context.log_event(dg.AssetObservation(asset_key=context.asset_key, description=message, metadata=details))
    return dg.Failure(message, metadata=details)


def _kept(context: dg.AssetExecutionContext, ctx: StageContext, target: DeployTarget, env: str, serving: Deployed,
          attempted: str | None, failure: dg.Failure, requester: Requester) -> dg.MaterializeResult:
    """The record of a deploy that changed nothing: what still serves, checked again, marked `kept`,
    with the failure as the `last_deploy` check. Its update time stays the kept version's, so
    freshness checks do not mistake it for new data."""
    health = get_handler(ctx.deliverable.kind).verify(ctx, dict(serving.metadata), target)
    reason = failure.description or "the deploy failed"
    metadata = {k: v for k, v in serving.metadata.items() if k not in RESTATED}
    metadata.update({
        "healthy": health.passed, "trigger": context.run.tags.get(TRIGGER_TAG, "manual"),
        "requested_by": requester.describe(), KEPT: True, "attempted_version": attempted, "reason": reason,
        LAST_UPDATED: dg.MetadataValue.timestamp(float(serving.metadata.get(LAST_UPDATED) or serving.recorded_at or 0)),
    })
    context.log.warning(f"{env} keeps serving {serving.version}: {reason}")
    return dg.MaterializeResult(
        metadata=_record_metadata(metadata),
        check_results=[_check_result(health), _check_result(GateResult(LAST_DEPLOY, False, reason), WARN)],
        data_version=dg.DataVersion(serving.version),
    )


def _record_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A deploy record's metadata, `version` first (the UI lists it in this order), the URL as a link."""
    plain = _plain({"version": metadata["version"], **metadata})
    if isinstance(metadata.get("url"), str) and metadata["url"] != "none":
        plain["url"] = dg.MetadataValue.url(metadata["url"])
    return plain


def _authorized(context: dg.AssetExecutionContext, deliverable: Deliverable, settings: PlatformSettings, env: str,
                rollback_to: str | None) -> Requester:
    """The verified requester of this run, allowed to do what it does; dg.Failure otherwise."""
    name, action = deliverable.name, "rollback" if rollback_to else "promote"
    teams = registry(settings)
    requester, why = verified_requester(settings, teams, context.instance, context.run_id, context.run.tags)
    if requester is None:
        raise dg.Failure(
            f"{name} is not deployed to {env}: this run has no verified requester ({why}). With identity.mode "
            "verified, deploy from the UI behind the authenticating proxy or with `deliver promote` / "
            "`deliver rollback`, which sign the request with your SSH key."
        )
    request = requester.request
    if request is not None and (request.action, request.deliverable, request.environment) != (action, name, env):
        raise dg.Failure(f"the signed request of {request.signer} is to {request.action} {request.deliverable} in "
                         f"{request.environment}; this run would {action} {name} in {env}")
    if request is not None and rollback_to and request.version != rollback_to:
        raise dg.Failure(f"the signed request rolls back to {request.version}, this run to {rollback_to}")
    problem = permission_problem(requester, action, deliverable.spec.owner, teams, settings)
    if problem:
        raise dg.Failure(f"{requester.describe()} may not {action} {name} in {env}: {problem}")
    if request is not None:  # recorded on the run for the UI; the signature stays the proof
        context.instance.add_run_tags(context.run_id, {REQUESTED_BY_TAG: requester.name, IDENTITY_SOURCE_TAG: "ssh"})
    context.log.info(f"{action} of {name} in {env} requested by {requester.describe()}")
    return requester


def _candidate(instance: dg.DagsterInstance, deliverable: Deliverable, settings: PlatformSettings, env: str,
               rollback_to: str | None) -> tuple[Deployed, dg.AssetKey]:
    """The version that may enter `env`, from the records: gates passed and, after the first
    environment, healthy in the previous one; a rollback's target was healthy here before."""
    name = deliverable.name
    if rollback_to:
        return _healthy_before(instance, name, env, rollback_to), env_key(name, env)
    previous_env = settings.previous_environment(env)
    source_key = env_key(name, previous_env) if previous_env else evaluate_key(name)
    candidate = latest(instance, source_key)
    if candidate is None:
        raise dg.Failure(f"nothing to deploy to {env}: {source_key.to_user_string()} has no version yet")
    evaluation = candidate
    if previous_env is not None:
        if candidate.metadata.get("healthy") is not True:
            raise dg.Failure(
                f"{name} {candidate.version} is not healthy in {previous_env} (its deploy there failed its "
                f"`healthy` check), so it cannot be promoted to {env}. Fix it and deliver a healthy version to "
                f"{previous_env} first."
            )
        evaluation = evaluation_of(instance, name, candidate.version)
    if evaluation is None or evaluation.metadata.get("gates_passed") is not True:
        failed = ", ".join(evaluation.metadata.get("failed_gates", [])) if evaluation else "no evaluation recorded"
        raise dg.Failure(
            f"{name} {candidate.version} did not pass its gates ({failed}); it cannot be deployed. "
            "Fix the cause and build again."
        )
    return candidate, source_key


def _roll_back_unhealthy(context: dg.AssetExecutionContext, ctx: StageContext, env: str, version: str,
                         health: GateResult, requester: Requester) -> None:
    """A deploy that came up but failed `healthy`: redeploy the last healthy version, record both
    (a `deploy_unhealthy` observation, the restoring materialization) and fail the run, so change
    failure rate and time to restore can be read from the event log. When nothing can be restored
    (nothing healthy ran here, or it no longer starts) it returns: the unhealthy version stays and
    is recorded as running, with its failed `healthy` check saying why."""
    name = ctx.name
    previous = next((d for d in deploy_history(context.instance, name, env)
                     if d.version != version and d.metadata.get("healthy") is True), None)
    failure = {"event": "deploy_unhealthy", "attempted_version": version, "reason": health.summary,
               "restored_version": None, "requested_by": requester.describe(),
               **_plain({k: v for k, v in health.metadata.items() if k == "slo"})}
    restored = None
    if previous is not None:
        handler = get_handler(ctx.deliverable.kind)
        target: DeployTarget = getattr(context.resources, target_resource_key(env))
        try:
            restored = handler.deploy(ctx, previous.version, _stored_build(ctx, previous.version), target)
            failure["restored_version"] = previous.version
        except DeployFailed as exc:
            failure["restore_error"] = str(exc)
    context.log_event(dg.AssetObservation(asset_key=env_key(name, env), metadata=failure))
    if previous is None or restored is None:
        return
    check = handler.verify(ctx, restored, target)
    key = env_key(name, env)
    context.log_event(dg.AssetMaterialization(asset_key=key, metadata=_record_metadata({
        "version": previous.version, **{k: v for k, v in restored.items() if k != "version"}, "environment": env,
        "healthy": check.passed, "rollback_from": version, "trigger": "auto-rollback",
        "requested_by": requester.describe(),
    })))
    message = (f"{name} {version} deployed to {env} but is not healthy ({health.summary}); rolled back to "
               f"{previous.version}, which is {'healthy' if check.passed else 'NOT healthy either'}")
    # A run keeps one result per check: the restored version's, saying what the attempt measured.
    restored_check = GateResult(
        check.name, check.passed, f"{check.summary} (restored: {version} was not healthy: {health.summary})",
        {**check.metadata, "rolled_back": {"version": version, "reason": health.summary, **health.metadata}})
    for gate, severity in ((restored_check, ERROR), (GateResult(LAST_DEPLOY, False, message), WARN)):
        context.log_event(_check_evaluation(key, gate, severity))
    raise dg.Failure(message, metadata=failure)


def _healthy_before(instance: dg.DagsterInstance, name: str, env: str, version: str) -> Deployed:
    """The record of `version` when it last ran healthy in `env`: what a rollback redeploys."""
    for deployed in deploy_history(instance, name, env):
        if deployed.version == version and deployed.metadata.get("healthy") is True:
            return deployed
    raise dg.Failure(f"cannot roll {name} in {env} back to {version}: it never ran healthy there")


def _require_approval(instance: dg.DagsterInstance, deliverable: Deliverable, settings: PlatformSettings,
                      env: str, version: str) -> None:
    """A `manual` environment takes a version only with a verified, unexpired approval of it by one
    of its approvers; approvals whose proof does not verify are ignored and named in the failure."""
    policy = deliverable.spec.policy(env)
    if policy.mode != "manual":
        return
    teams = registry(settings)
    of_version = [m for m, _ in observations(instance, env_key(deliverable.name, env), APPROVAL_EVENT)
                  if str(m.get("version")) == version]
    checks = [check_approval(m, deliverable, env, settings, teams) for m in of_version]
    if any(check.valid for check in checks):
        return
    ignored = "; ".join(f"ignored an approval by {c.approver}: {c.reason}" for c in checks)
    raise dg.Failure(
        f"{deliverable.name} {version} needs an approval for {env} (promotion.{env}.mode is manual; "
        f"approvers: {', '.join(policy.approvers)}). Run: deliver approve {deliverable.name} "
        f"--version {version} --env {env}" + (f". {ignored}" if ignored else "")
    )


def _stored_build(ctx: StageContext, version: str) -> dict[str, Any]:
    record = ctx.build_record(version)
    if record is None:
        raise dg.Failure(f"the artifact of {ctx.name} {version} is gone from the artifact store; build it again")
    return record


def _check_evaluation(key: dg.AssetKey, gate: GateResult,
                      severity: dg.AssetCheckSeverity = ERROR) -> dg.AssetCheckEvaluation:
    """A check result logged on its own (a step that fails after it still leaves it in the log)."""
    return dg.AssetCheckEvaluation(asset_key=key, check_name=gate.name, passed=gate.passed, description=gate.summary,
                                   metadata=_check_metadata(gate), severity=severity)


def _check_result(gate: GateResult, severity: dg.AssetCheckSeverity = ERROR) -> dg.AssetCheckResult:
    """A gate as an asset check: its summary is the description the UI shows beside the check."""
    return dg.AssetCheckResult(check_name=gate.name, passed=gate.passed, description=gate.summary,
                               metadata=_check_metadata(gate), severity=severity)


def _check_metadata(gate: GateResult) -> dict[str, Any]:
    return {"summary": gate.summary, **_plain(gate.metadata)}


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Metadata values Dagster can store: lists become JSON, None becomes text."""
    return {key: _metadata_value(value) for key, value in values.items()}


def _metadata_value(value: Any) -> Any:
    if value is None:
        return dg.MetadataValue.text("none")
    if type(value) in (dict, list, tuple):  # exact types: TableSchema and other records are tuples too
        return dg.MetadataValue.json(list(value) if type(value) is tuple else value)
    return value
