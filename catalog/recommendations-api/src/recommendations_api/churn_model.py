"""Client of the churn model's endpoint, which the platform passes in as CHURN_MODEL_URL/_TOKEN."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

URL_ENV = "CHURN_MODEL_URL"
TOKEN_ENV = "CHURN_MODEL_TOKEN"


class ModelUnavailable(Exception):
    """The churn model cannot answer now; callers degrade instead of failing."""


def score(features: dict[str, Any], timeout_s: float = 5.0) -> tuple[float, str]:
    """(churn probability, model version) for one customer's features."""
    url, token = os.environ.get(URL_ENV), os.environ.get(TOKEN_ENV)
    if not url or not token:
        raise ModelUnavailable(f"no churn model configured ({URL_ENV} and {TOKEN_ENV} are not set)")
    request = urllib.request.Request(
        url.rstrip("/") + "/predict",
        data=json.dumps({"dataframe_records": [features]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode(errors="replace")
        raise ModelUnavailable(f"churn model answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ModelUnavailable(f"churn model unreachable at {url}: {exc}") from exc
    return float(body["predictions"][0][-1]), str(body["version"])
