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
