"""Published notebook reports on S3 (or any S3-compatible store), through dagster-aws's `S3Resource`.

Same contract as `LocalReportStore`: each version is written once under its own key,
`<prefix>/<env>/<deliverable>/<version>/index.html` with `report.json` beside it, and the
environment's `current.json` object is written last, naming the version. A single PUT is atomic,
so readers see the old report or the new one; earlier versions stay for rollback. `public_url`
(a CDN or static website in front of the bucket) makes the links clickable; otherwise they are
`s3://` URIs. Imported only when platform.yaml says `reports: {type: s3}`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from resources.report_store import CURRENT, INFO, REPORT_FILE


class S3ReportStore(dg.ConfigurableResource):
    bucket: str
    prefix: str = "reports"
    endpoint_url: str | None = None
    region_name: str | None = None
    public_url: str | None = None
    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        if self._client is None:
            from dagster_aws.s3 import S3Resource

            self._client = S3Resource(endpoint_url=self.endpoint_url, region_name=self.region_name).get_client()
        return self._client

    def key(self, env: str, deliverable: str, *parts: str) -> str:
        return "/".join(p for p in (self.prefix.strip("/"), env, deliverable, *parts) if p)

    def url(self, key: str) -> str:
        return f"{self.public_url.rstrip('/')}/{key}" if self.public_url else f"s3://{self.bucket}/{key}"

    def publish(self, env: str, deliverable: str, version: str, html: Path) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            if self._info(env, deliverable, version) is None:
                body = html.read_bytes()
                info = {"version": version, "sha256": hashlib.sha256(body).hexdigest(),
                        "stored_at": datetime.now(UTC).isoformat(timespec="microseconds")}
                self._put(self.key(env, deliverable, version, REPORT_FILE), body, "text/html; charset=utf-8")
                self._put(self.key(env, deliverable, version, INFO), json.dumps(info).encode(), "application/json")
            self._put(self.key(env, deliverable, f"{CURRENT}.json"), json.dumps({"version": version}).encode(),
                      "application/json")
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"s3://{self.bucket}: {exc}") from exc
        published = self.current(env, deliverable)
        assert published is not None
        return published

    def current(self, env: str, deliverable: str) -> dict[str, Any] | None:
        pointer = self._get_json(self.key(env, deliverable, f"{CURRENT}.json"))
        return self._describe(env, deliverable, pointer["version"]) if pointer else None

    def read(self, env: str, deliverable: str, version: str) -> bytes:
        from botocore.exceptions import ClientError

        key = self.key(env, deliverable, version, REPORT_FILE)
        try:
            return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise FileNotFoundError(f"s3://{self.bucket}/{key}") from exc

    def versions(self, env: str, deliverable: str) -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        prefix = self.key(env, deliverable) + "/"
        infos = [self._get_json(obj["Key"]) for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                 for obj in page.get("Contents", []) if obj["Key"].endswith("/" + INFO)]
        return [info["version"] for info in sorted(filter(None, infos), key=lambda info: info["stored_at"])]

    def _info(self, env: str, deliverable: str, version: str) -> dict[str, Any] | None:
        return self._get_json(self.key(env, deliverable, version, INFO))

    def _describe(self, env: str, deliverable: str, version: str) -> dict[str, Any]:
        info = self._info(env, deliverable, version) or {"version": version}
        key = self.key(env, deliverable, version, REPORT_FILE)
        return {**info, "path": f"s3://{self.bucket}/{key}", "url": self.url(key),
                "current_url": self.url(self.key(env, deliverable, f"{CURRENT}.json"))}

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def _get_json(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return json.loads(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
