"""Turns the catalog into Dagster assets: build -> evaluate -> one asset per environment.

Asset bodies only orchestrate: they call the shared stage functions in stages.py. Nothing here
imports a kind's heavy libraries; handlers import those inside the functions that use them.
"""


from collections.abc import Callable, Iterator

import dagster as dg

from platform_assets.catalog import Catalog, load_catalog
from platform_assets.compute import ComputeTags, stage_pool, step_compute
from platform_assets.kinds.registry import HANDLERS, get_handler
from platform_assets.liveness import live_check_specs, live_key, served
from platform_assets.records import HEALTHY, LAST_DEPLOY, build_key, env_key, evaluate_key, target_resource_key
from platform_assets.settings import PlatformSettings, catalog_dir
from platform_assets.specs import Deliverable
from platform_assets.stages import run_build, run_deploy, run_evaluate
from platform_assets.workspace import holds_platform_assets, identifier

CATALOG_KEY = dg.AssetKey(["platform", "catalog"])
LIVE_CHECKS = "platform_live"
CATALOG_CHECK = "specs_valid"
PLATFORM_GROUP = "platform"

StageBody = Callable[[dg.AssetExecutionContext], dg.MaterializeResult | Iterator[dg.MaterializeResult]]


def deliverable_assets(
    deliverable: Deliverable, settings: PlatformSettings, compute_tags: ComputeTags | None = None
) -> list[dg.AssetsDefinition]:
    spec = deliverable.spec
    compute_tags = compute_tags or ComputeTags(settings)
    handler = get_handler(spec.kind)
    name = spec.name
    shared = {
        "group_name": identifier(spec.owner),  # one asset group per team
        "owners": [f"team:{spec.owner}"],
        "kinds": {spec.kind, handler.technology},
        "metadata": {"spec": dg.MetadataValue.path(str(deliverable.path))},
    }
    needs = {"artifact_store", *handler.resources}

    def stage(
        key: dg.AssetKey,
        stage_name: str,
        deps: list[dg.AssetKey],
        checks: list[dg.AssetCheckSpec],
        body: StageBody,
        description: str,
        resources: set[str],
    ) -> dg.AssetsDefinition:
        compute = step_compute(spec, stage_name, settings)
        pool = stage_pool(handler.step_pool(settings), settings.profile(compute).pool, key, stage_name, settings)

        @dg.asset(
            key=key,
            deps=deps,
            check_specs=checks,
            description=description,
            tags={"deliverable": name, "stage": stage_name},
            op_tags=compute_tags(compute, stage_name),
            required_resource_keys=resources,
            pool=pool,
            **shared,
        )
        def _stage(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
            # A generator, so a stage may record its result while it still holds a lock (deploy).
            result = body(context)
            if isinstance(result, dg.MaterializeResult):
                yield result
            else:
                yield from result

        return _stage

    assets = [
        stage(
            build_key(name),
            "build",
            [env_key(upstream, settings.last_environment) for upstream in spec.depends_on]
            + handler.build_deps(deliverable),
            [],
            lambda context: run_build(context, deliverable, settings),
            f"Build {name}: {spec.description}",
            needs,
        ),
        stage(
            evaluate_key(name),
            "evaluate",
            [build_key(name)],
            [dg.AssetCheckSpec(gate, asset=evaluate_key(name), blocking=True,
                               description=f"gate '{gate}' of {name}") for gate in handler.gates],
            lambda context: run_evaluate(context, deliverable, settings),
            f"Evaluate {name} through its gates: {', '.join(handler.gates)}",
            needs,
        ),
    ]
    upstream = evaluate_key(name)
    for env in settings.environment_names:
        key = env_key(name, env)
        assets.append(
            stage(
                key,
                "deploy",
                [upstream],
                [dg.AssetCheckSpec(HEALTHY, asset=key, blocking=True,
                                   description=f"{name} answers its health check in {env}"),
                 dg.AssetCheckSpec(LAST_DEPLOY, asset=key, description=(
                     f"the last deploy to {env} took effect; when it did not, the version that still serves is "
                     "restated (`kept`) and this check says why"))],
                _deploy_body(deliverable, settings, env),
                f"{name} in {env} ({spec.policy(env).mode} promotion): the version serving there is `version` in "
                "the latest materialization; `last_deploy` says whether the last attempt took effect",
                {*needs, target_resource_key(env)},
            )
        )
        upstream = key
    return assets


def _deploy_body(deliverable: Deliverable, settings: PlatformSettings, env: str) -> StageBody:
    return lambda context: run_deploy(context, deliverable, settings, env)


def catalog_key(team: str | None = None) -> dg.AssetKey:
    """`platform/catalog` (every spec: the single location, or the shared one); a team's own specs
    when each team has a code location."""
    return CATALOG_KEY if holds_platform_assets(team) else dg.AssetKey(["platform", f"catalog_{identifier(team)}"])


def catalog_asset(
    settings: PlatformSettings, catalog: Catalog, kind_problems: list[str], team: str | None = None
) -> dg.AssetsDefinition:
    """The catalog itself, so spec errors are visible in the UI beside the assets they concern.

    `kind_problems` (e.g. a dbt project that does not parse) were found while loading and are
    reported with every check, since only a reload of the code location can clear them. A team's
    location reports its own specs' errors; the shared one every spec's.
    """
    key = catalog_key(team)
    scope = None if holds_platform_assets(team) else team  # the shared location lists every spec

    def errors_of(loaded: Catalog) -> list[str]:
        return [*map(str, loaded.owned_by(scope).errors), *kind_problems]

    errors_at_load = "\n".join(f"- {error}" for error in errors_of(catalog)) or "none"
    specs = "the deliverable catalog" if scope is None else f"{team}'s specs"

    @dg.asset(
        key=key,
        group_name=PLATFORM_GROUP if scope is None else identifier(team),
        kinds={"yaml"},
        description=(
            f"{specs} in {catalog.root}: {len(catalog.owned_by(scope))} valid, "
            f"{len(errors_of(catalog))} error(s) "
            "when the definitions were loaded. Materialize to re-check; `deliver validate` shows the same."
        ),
        metadata={"catalog_dir": dg.MetadataValue.path(str(catalog.root)),
                  "errors_at_load": dg.MetadataValue.md(errors_at_load)},
        check_specs=[dg.AssetCheckSpec(CATALOG_CHECK, asset=key, description="every spec is valid")],
    )
    def _catalog(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        current = load_catalog(catalog.root, settings)
        errors = errors_of(current)
        listing = "\n".join(f"- {error}" for error in errors)
        return dg.MaterializeResult(
            metadata={"deliverables": len(current.owned_by(scope)), "errors": len(errors)},
            check_results=[
                dg.AssetCheckResult(
                    check_name=CATALOG_CHECK,
                    passed=not errors,
                    description=listing or "all specs valid",
                    metadata={"errors": dg.MetadataValue.md(listing or "none")},
                )
            ],
        )

    return _catalog


def all_kind_assets(
    catalog: Catalog, settings: PlatformSettings, team: str | None = None
) -> tuple[list[dg.AssetsDefinition], list[str]]:
    """What the kinds add once (with `team`: what that team's location holds), and their problems:
    `deliver validate` prints the same text."""
    assets: list[dg.AssetsDefinition] = []
    problems: list[str] = []
    for kind, handler in HANDLERS.items():
        kind_assets, kind_problems = handler.kind_assets([d for d in catalog if d.kind == kind], settings, team)
        assets.extend(kind_assets)
        problems.extend(f"kind '{kind}': {problem}" for problem in kind_problems)
    return assets, problems


def build_assets(
    settings: PlatformSettings, catalog: Catalog | None = None, team: str | None = None
) -> list[dg.AssetsDefinition]:
    """Every asset of the catalog, or (`team`) of one team's code location: the whole catalog is
    read, so a team's assets name their upstreams in other locations."""
    catalog = catalog or load_catalog(catalog_dir(settings), settings)
    assets, problems = all_kind_assets(catalog, settings, team)
    assets.append(catalog_asset(settings, catalog, problems, team))
    compute_tags = ComputeTags(settings)
    for deliverable in catalog.owned_by(team):
        assets.extend(deliverable_assets(deliverable, settings, compute_tags))
    return assets


def live_checks(catalog: Catalog, settings: PlatformSettings) -> dg.AssetChecksDefinition | None:
    """The non-blocking `live` check of every environment of every deliverable that serves, in one
    definition: the runtime sensor records it, so deploy runs never do. Executing it (from the UI)
    probes the selected deployments now, without restarting anything."""
    owners = served(catalog)
    pairs = [(name, env) for name in owners for env in settings.environment_names]
    if not pairs:
        return None

    @dg.multi_asset_check(
        specs=live_check_specs(pairs), name=LIVE_CHECKS, can_subset=True,
        description="Whether each deployment runs: probed now (the platform_runtime sensor records it every tick)",
        required_resource_keys={target_resource_key(env) for env in settings.environment_names},
        # Sized and placed like a deploy step: on Kubernetes its account may read the Deployments.
        op_tags=ComputeTags(settings)(settings.default_compute, "deploy"),
    )
    def _live(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        from platform_assets.runtime_probes import probe_now

        wanted = [(name, env) for name, env in pairs if live_key(name, env) in context.selected_asset_check_keys]
        targets = {env: getattr(context.resources, target_resource_key(env)) for env in settings.environment_names}
        for name, env, live in probe_now(context.instance, settings, targets, owners, wanted):
            yield live.result(name, env)

    return _live
