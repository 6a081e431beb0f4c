"""Serves one environment's copy of a web app's bundle: its files, and `/config.json`.

`PLATFORM_WEBAPP_ROOT` is the bundle's folder; `PLATFORM_WEBAPP_CONFIG` the JSON the deploy wrote
for this environment (its name and the addresses of the upstreams it calls), so one bundle serves
every environment. Run behind the serving wrapper (`served_command`), like a service, so its
requests are measured and probed the same way. Imported only by that process.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

ROOT_ENV, CONFIG_ENV = "PLATFORM_WEBAPP_ROOT", "PLATFORM_WEBAPP_CONFIG"
CONFIG_PATH = "/config.json"


def _config(request: Request) -> JSONResponse:
    return JSONResponse(json.loads(os.environ.get(CONFIG_ENV, "{}")), headers={"Cache-Control": "no-store"})


def create_app() -> Starlette:
    return Starlette(routes=[Route(CONFIG_PATH, _config),
                             Mount("/", StaticFiles(directory=os.environ[ROOT_ENV], html=True))])


app = create_app() if ROOT_ENV in os.environ else None
