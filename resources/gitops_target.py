"""Deploy target that writes manifests to a GitOps repository for Argo CD or Flux to apply.

Each deliverable gets `<repo>/<environment>/<deliverable>/` with one YAML file per object and a
`kustomization.yaml` listing them. When the folder is a git repository the change is committed
(and pushed, if asked), so the history is the deploy log and rolling back is a revert. The cluster
side (sync, health, rollback of a failed sync) belongs to Argo CD or Flux.

Secret values never go into the repository: the manifests only reference them (`secretKeyRef`),
and `Workload.secrets` (a model token per model and environment) is left to the operator, who
provides those Secrets in each namespace (External Secrets, Sealed Secrets; docs/platform-operator.md).
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path
from typing import Any

import yaml

from resources.deploy_target import DeployFailed, Workload
from resources.k8s_manifests import Manifest
from resources.manifest_target import ManifestTarget

KUSTOMIZATION = "kustomization.yaml"
AUTHOR = ["-c", "user.name=delivery-platform", "-c", "user.email=platform@delivery.local"]


def manifest_files(manifests: list[Manifest]) -> dict[str, str]:
    """File name -> YAML, one object per file, plus the kustomization that lists them."""
    files = {f"{m['kind'].lower()}-{m['metadata']['name']}.yaml": yaml.safe_dump(m, sort_keys=False)
             for m in manifests}
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": sorted(files)}
    return {**files, KUSTOMIZATION: yaml.safe_dump(kustomization, sort_keys=False)}


def _git(repo: Path, *args: str) -> str:
    completed = subprocess.run(["git", "-C", str(repo), *AUTHOR, *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise DeployFailed(f"git {' '.join(args)} failed in {repo}: {completed.stderr.strip()}")
    return completed.stdout.strip()


class GitOpsTarget(ManifestTarget):
    repo_path: str
    push: bool = False

    def folder(self, deliverable: str) -> Path:
        return Path(self.repo_path) / self.environment / deliverable

    def ship(self, workload: Workload, manifests: list[Manifest]) -> dict[str, Any]:
        repo = Path(self.repo_path)
        if not repo.is_dir():
            raise DeployFailed(f"platform.yaml: environments[{self.environment}].gitops_repo: {repo} is not a "
                               "folder; clone the GitOps repository there")
        folder = self.folder(workload.deliverable)
        folder.mkdir(parents=True, exist_ok=True)
        with (repo / ".platform-gitops.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            files = manifest_files(manifests)
            for stale in set(p.name for p in folder.glob("*.yaml")) - set(files):
                (folder / stale).unlink()
            for name, text in files.items():
                (folder / name).write_text(text)
            commit = self._commit(repo, folder, workload) if (repo / ".git").exists() else None
        return {"path": str(folder), "commit": commit, "files": sorted(files)}

    def _commit(self, repo: Path, folder: Path, workload: Workload) -> str:
        relative = str(folder.relative_to(repo))
        _git(repo, "add", "--all", "--", relative)
        if _git(repo, "status", "--porcelain", "--", relative):
            _git(repo, "commit", "-q", "-m", f"deploy {workload.deliverable} {workload.version} to "
                 f"{self.environment}", "--", relative)
            if self.push:
                _git(repo, "push", "-q")
        return _git(repo, "rev-parse", "HEAD")

    def verify(self, deployment: dict[str, Any]) -> tuple[bool, str]:
        """The manifests are in the repository; Argo CD or Flux reports the rollout's health."""
        folder = Path(deployment["path"])
        if not (folder / KUSTOMIZATION).exists():
            return False, f"{folder} has no {KUSTOMIZATION}"
        where = f"commit {deployment['commit'][:12]}" if deployment.get("commit") else "an uncommitted folder"
        return True, f"manifests of {deployment['version']} in {folder} ({where}); the GitOps controller syncs them"
