"""What a deliverable's code needs to call the deliverables it depends on in one environment: their
stable URLs and, for models, a bearer token for that environment only. Resolved when deploying
(or running), so a redeploy follows where the upstreams run now. Services and batch jobs use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from platform_assets.handlers.base import StageContext
from platform_assets.model_token import model_token


@dataclass(frozen=True)
class Upstreams:
    """Where the upstreams of one deliverable are served in one environment, and how to call them."""

    urls: dict[str, str]  # <NAME>_URL
    tokens: dict[str, str]  # <NAME>_TOKEN variable -> the upstream whose bearer token it holds
    egress: tuple[tuple[str | None, int], ...]  # (namespace, port) of upstreams on Kubernetes


def dependency_endpoints(ctx: StageContext, env: str) -> Upstreams:
    """Each upstream served in `env`; resolved when deploying, so a redeploy follows where they run now."""
    urls: dict[str, str] = {}
    tokens: dict[str, str] = {}
    egress: list[tuple[str | None, int]] = []
    for upstream in ctx.spec.depends_on:
        deployed = ctx.deployed_of(upstream, env)
        if deployed is None or not deployed.metadata.get("url"):
            continue
        prefix = upstream.upper().replace("-", "_")
        urls[f"{prefix}_URL"] = str(deployed.metadata["url"])
        if deployed.metadata.get("auth") == "bearer":
            tokens[f"{prefix}_TOKEN"] = upstream
        if deployed.metadata.get("namespace") and deployed.metadata.get("port"):
            egress.append((str(deployed.metadata["namespace"]), int(deployed.metadata["port"])))
    return Upstreams(urls, tokens, tuple(egress))


def dependency_env(ctx: StageContext, env: str) -> dict[str, str]:
    """Upstream URLs and tokens as plain variables, for local processes and the build's tests (which
    get the first environment's, so contract tests can call the real upstream). Each token is that
    upstream's for `env` only: never the master, never another model's or environment's."""
    upstreams = dependency_endpoints(ctx, env)
    return {**upstreams.urls, **{name: model_token(ctx.settings, upstream, env)
                                 for name, upstream in upstreams.tokens.items()}}
