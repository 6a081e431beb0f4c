"""How a sandbox task's files travel between the step and its pod: objects in the artifact bucket
under a prefix of their own, reached by the pod only through URLs presigned for this task.

The step holds the S3 credentials (the platform's); the pod holds none. It gets a GET URL for the
task's folder and PUT URLs for its outputs and its result (platform_assets/sandbox_pod.py), each
valid for as long as the task may take, and the objects are deleted once the step has read them.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INPUTS, OUTPUTS, RESULT = "inputs.tar.gz", "outputs.tar.gz", "result.json"
# What a local run may have left in a task's folder that the pod must not receive.
_NOT_SENT = {".sandbox-home"}


@dataclass(frozen=True)
class TaskTransport:
    client: Any  # a boto3 S3 client
    bucket: str
    prefix: str  # this task's own key prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def send_inputs(self, workdir: Path) -> None:
        with tempfile.TemporaryFile() as tmp:
            with tarfile.open(fileobj=tmp, mode="w:gz") as archive:
                for child in sorted(workdir.iterdir()):
                    if child.name not in _NOT_SENT:
                        archive.add(child, arcname=child.name)
            tmp.seek(0)
            self.client.upload_fileobj(tmp, self.bucket, self.key(INPUTS))

    def pod_transport(self, outputs: tuple[str, ...], timeout_s: float, redact: list[str], expires_s: int,
                      env: list[str]) -> str:
        """The JSON the pod reads from `SANDBOX_TRANSPORT`: its three URLs and what to do, and the
        variables the task declared (the only ones of the pod's environment its command gets)."""
        def url(method: str, name: str) -> str:
            return self.client.generate_presigned_url(method, Params={"Bucket": self.bucket, "Key": self.key(name)},
                                                      ExpiresIn=expires_s)

        return json.dumps({"inputs_url": url("get_object", INPUTS), "outputs_url": url("put_object", OUTPUTS),
                           "result_url": url("put_object", RESULT), "outputs": list(outputs),
                           "timeout_s": timeout_s, "redact": redact, "env": env})

    def result(self) -> dict[str, Any] | None:
        """What the pod reported (exit code, timed out, output tail, outputs sent); None if nothing came."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(RESULT))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def receive_outputs(self, workdir: Path, declared: tuple[str, ...]) -> None:
        """Put the declared outputs the pod sent into `workdir`, each replacing what was there.

        The pod is untrusted: only members inside a declared output are unpacked, and the `data`
        filter refuses links, devices and paths that leave `workdir`."""
        with tempfile.TemporaryFile() as tmp:
            self.client.download_fileobj(self.bucket, self.key(OUTPUTS), tmp)
            tmp.seek(0)
            with tarfile.open(fileobj=tmp, mode="r:gz") as archive:
                members = [m for m in archive.getmembers() if _within(m.name, declared)]
                for name in declared:
                    if any(_within(m.name, (name,)) for m in members):
                        _remove(workdir / name)
                archive.extractall(workdir, members=members, filter="data")

    def delete(self) -> None:
        self.client.delete_objects(Bucket=self.bucket, Delete={
            "Objects": [{"Key": self.key(name)} for name in (INPUTS, OUTPUTS, RESULT)], "Quiet": True})


def _within(member: str, declared: tuple[str, ...]) -> bool:
    return any(member == name or member.startswith(name.rstrip("/") + "/") for name in declared)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
