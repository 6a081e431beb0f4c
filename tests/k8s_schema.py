"""Kubernetes checks shared by the tests: schema validation at a pinned version, and the Pod
Security "restricted" profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

# The cluster version the manifests must be valid for (kubernetes-validate ships schemas 1.25-1.37).
K8S_VERSION = "1.33.0"
NOT_API_OBJECTS = {"Kustomization"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def validate(manifest: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError unless `manifest` is valid (strict: no unknown fields)."""
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def manifests_in(path: Path) -> list[dict[str, Any]]:
    """The Kubernetes API objects of a YAML file (every document with apiVersion and kind)."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    return [doc for doc in docs if "apiVersion" in doc and "kind" in doc and doc["kind"] not in NOT_API_OBJECTS]


def pod_spec_of(manifest: dict[str, Any]) -> dict[str, Any] | None:
    if manifest["kind"] == "Pod":
        return manifest["spec"]
    if manifest["kind"] == "CronJob":
        return manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    template = manifest.get("spec", {}).get("template")
    return template["spec"] if template else None


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(field) or []


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps a pod spec (camelCase) from the "restricted" Pod Security profile; [] if it passes."""
    problems = [f"{field} is true" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)]
    pod_security = pod.get("securityContext") or {}
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    if pod_security.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    for container in _containers(pod):
        name, security = container["name"], container.get("securityContext") or {}
        if security.get("privileged"):
            problems.append(f"{name}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot is not true (pod or container)")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = (security.get("seccompProfile") or pod_security.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}, not RuntimeDefault or Localhost")
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name}: uses a hostPort")
    return problems


def assert_valid_and_restricted(manifest: dict[str, Any]) -> None:
    validate(manifest)
    pod = pod_spec_of(manifest)
    if pod is not None:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert restricted_violations(pod) == [], f"{where} is not 'restricted': {restricted_violations(pod)}"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects `labels`."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if not {"In": present and labels[key] in values, "NotIn": not present or labels[key] not in values,
                "Exists": present, "DoesNotExist": not present}[operator]:
            return False
    return True
