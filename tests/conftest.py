"""Shared test fixtures: the location of ../shared (real data and weights), skipped when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXR_FUSION_SHARED", REPO.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is not there (CI always has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CXR_FUSION_SHARED)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """Path to ../shared/models; skips the test when it is not there."""
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"real weights not found at {SHARED_MODELS} (set CXR_FUSION_SHARED)")
    return SHARED_MODELS


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chromium-headless-shell")


@pytest.fixture(scope="session")
def render_html():
    """``render(path, screenshot) -> dom``: open an HTML file in headless Chromium, return the DOM after the
    page's scripts ran and save a 1200 x 2000 screenshot; skips the test when no browser is installed
    (.ci/run installs Debian's chromium)."""
    import shutil
    import subprocess

    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser found (tried {', '.join(BROWSERS)}); e.g. apt-get install chromium")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]

    def render(path: Path, screenshot: Path) -> str:
        url = Path(path).resolve().as_uri()
        dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        subprocess.run(flags + ["--window-size=1200,2000", f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=120)
        return dom

    return render


@pytest.fixture(scope="session")
def browse():
    """``browse(url, until_js, *, screenshot, timeout, until_png) -> (value, png_path)``: open ``url`` in headless Chromium
    (WebGL through SwiftShader), poll the JavaScript expression ``until_js`` until it is truthy (or ``timeout``
    seconds pass), wait ``settle`` seconds more, evaluate it again and save a screenshot (retaken until
    ``until_png(path)`` holds, when given, within the same ``timeout``); drives the browser over the DevTools
    protocol, for pages that load asynchronously (the Embedding Atlas app). Skips without a browser."""
    import base64
    import json
    import re
    import shutil
    import subprocess
    import time
    import urllib.request

    from websockets.sync.client import connect

    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip(f"no headless browser found (tried {', '.join(BROWSERS)}); e.g. apt-get install chromium")

    def open_page(url: str, until_js: str, *, screenshot: Path, timeout: float = 120, settle: float = 6,
                  size: tuple[int, int] = (1400, 900), until_png=None) -> tuple[object, Path]:
        proc = subprocess.Popen([browser, "--headless", "--no-sandbox", "--use-angle=swiftshader",
                                 "--enable-unsafe-swiftshader", "--remote-debugging-port=0", "--no-first-run",
                                 "--disable-background-networking", f"--window-size={size[0]},{size[1]}",
                                 "about:blank"], stderr=subprocess.PIPE, text=True)
        try:
            port = next(int(m.group(1)) for line in proc.stderr
                        if (m := re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)))
            pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=30).read())
            with connect(next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page"), max_size=2**27) as ws:
                ids = iter(range(1, 10**9))

                def call(method: str, **params: object) -> dict:
                    i = next(ids)
                    ws.send(json.dumps({"id": i, "method": method, "params": params}))
                    while (msg := json.loads(ws.recv())).get("id") != i:
                        pass
                    return msg.get("result", {})

                call("Page.navigate", url=url)
                deadline, value = time.monotonic() + timeout, None
                while time.monotonic() < deadline and not value:
                    value = call("Runtime.evaluate", expression=until_js, returnByValue=True).get("result", {}).get("value")
                    time.sleep(0.5)
                if value:           # let the page finish drawing, then read the condition's value again
                    time.sleep(settle)
                    value = call("Runtime.evaluate", expression=until_js, returnByValue=True).get("result", {}).get("value")
                while True:         # drawing lags behind the DOM on a loaded machine: poll screenshots too
                    screenshot.write_bytes(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
                    if until_png is None or until_png(screenshot) or time.monotonic() > deadline:
                        return value, screenshot
                    time.sleep(2)
        finally:
            proc.kill()
            proc.wait()

    return open_page


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files marked slow (end-to-end runs of minutes) first, the rest in their usual order: with ``make test``'s
    worker processes (pytest-xdist, one file per worker at a time) the long files then start at once instead of
    finishing last on one worker while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
