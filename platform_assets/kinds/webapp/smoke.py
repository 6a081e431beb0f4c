"""The web app's smoke check, run inside the sandbox (handler.py copies this file beside the bundle).

`python .platform-smoke.py job.json` serves the bundle's folder on 127.0.0.1 (with the config.json
the platform wrote there), opens its page in headless Chromium through Playwright, and records
every console error, uncaught page error and failed request until the page is idle and, when the
spec names one, the selector `wait_for` is visible. Calls to the upstreams' origins are relayed
by Playwright outside the page (so the check does not depend on their CORS headers, which the
local gateway's single origin never needs). Standalone: the standard library and Playwright.
"""

import functools
import json
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def main(job_file: str) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    job = json.loads(Path(job_file).read_text())
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=job["site"]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}{job['path']}"
    upstreams = {f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" for u in job["upstreams"]}
    problems: list[str] = []
    result = {"url": url, "title": None, "problems": problems}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=job["chromium"], headless=True,
                                                 args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            if upstreams:
                page.route(lambda u: f"{urlsplit(u).scheme}://{urlsplit(u).netloc}" in upstreams, _relay)
            page.goto(url, wait_until="networkidle", timeout=job["timeout_s"] * 1000)
            if job.get("wait_for"):
                page.wait_for_selector(job["wait_for"], state="visible", timeout=job["timeout_s"] * 1000)
            result["title"] = page.title()
            result["text"] = page.inner_text("body")[:2000]
            browser.close()
    except PlaywrightError as exc:
        problems.append(str(exc).splitlines()[0])
    finally:
        server.shutdown()
    Path(job["result"]).write_text(json.dumps(result))


def _relay(route: object) -> None:
    """The upstream's answer, fetched outside the page, handed to it as if same-origin."""
    response = route.fetch()  # type: ignore[attr-defined]
    route.fulfill(response=response, headers={**response.headers, "access-control-allow-origin": "*"})  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1])
