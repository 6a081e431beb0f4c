"""Artifacts on S3 (or any S3-compatible store) through dagster-aws's `S3Resource`.

On Kubernetes every step runs in its own pod, so the build's wheel and records must be somewhere
all pods reach. Objects live at `s3://<bucket>/<prefix>/<deliverable>/<version>/<file>`.
Credentials come only from the AWS environment (variables, profile, or the pod's IAM role); this
module is imported only when platform.yaml says `artifacts: {type: s3}`, so boto3 stays out of
local loads. Artifacts are immutable, so a file downloaded once is served from the local cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from platform_assets.settings import state_dir
from resources.artifact_store import ArtifactStore, atomic_write, to_json


def s3_client(endpoint_url: str | None, region_name: str | None) -> Any:
    """A boto3 S3 client through dagster-aws's `S3Resource` (credentials from the AWS environment)."""
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=endpoint_url, region_name=region_name).get_client()


class S3ArtifactStore(ArtifactStore):
    bucket: str
    prefix: str = "artifacts"
    endpoint_url: str | None = None
    region_name: str | None = None
    cache_dir: str | None = None
    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client(self.endpoint_url, self.region_name)
        return self._client

    def key(self, deliverable: str, version: str, filename: str) -> str:
        return "/".join(part for part in (self.prefix.strip("/"), deliverable, version, filename) if part)

    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}"

    def _cached(self, deliverable: str, version: str, filename: str) -> Path:
        base = Path(self.cache_dir) if self.cache_dir else state_dir() / "artifact-cache"
        return base / self.bucket / self.key(deliverable, version, filename)

    def exists(self, deliverable: str, version: str, filename: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=self.key(deliverable, version, filename))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def path(self, deliverable: str, version: str, filename: str) -> Path:
        cached = self._cached(deliverable, version, filename)
        if cached.exists():
            return cached
        if not self.exists(deliverable, version, filename):
            raise FileNotFoundError(f"artifact {deliverable}@{version}/{filename} not found in {self.location()}")
        key = self.key(deliverable, version, filename)
        return atomic_write(cached, lambda tmp: self.client().download_fileobj(self.bucket, key, tmp), mode="wb")

    def put_file(self, deliverable: str, version: str, source: Path, filename: str | None = None) -> Path:
        name = filename or source.name
        self.client().upload_file(str(source), self.bucket, self.key(deliverable, version, name))
        return atomic_write(self._cached(deliverable, version, name),
                            lambda tmp: shutil.copyfile(source, tmp.name), mode="wb")

    def put_json(self, deliverable: str, version: str, filename: str, data: Any) -> str:
        key = self.key(deliverable, version, filename)
        self.client().put_object(Bucket=self.bucket, Key=key, Body=to_json(data).encode(),
                                 ContentType="application/json")
        return f"s3://{self.bucket}/{key}"

    def get_json(self, deliverable: str, version: str, filename: str) -> Any:
        from botocore.exceptions import ClientError

        key = self.key(deliverable, version, filename)
        try:
            body = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise FileNotFoundError(f"artifact {deliverable}@{version}/{filename} not found in "
                                    f"{self.location()}: {exc}") from exc
        return json.loads(body)
