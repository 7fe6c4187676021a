"""The Embedding Atlas export opens through its double-click launcher in headless Chromium: served on
localhost, every point drawn, coloured by subtype; the static app costs no extra disk (hard links) and a
copy of the export folder works alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clustering.atlas import WRAPPERS, _static_dir, export_atlas, thumbnails

SHOTS = Path(os.environ.get("CXR_FUSION_SHOTS", "")) if os.environ.get("CXR_FUSION_SHOTS") else None


@pytest.fixture(scope="module")
def atlas(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 300
    k = rng.choice(3, n, p=[0.4, 0.35, 0.25])
    xy = np.array([[0, 0], [7, 0], [14, 0]])[k] + rng.normal(size=(n, 2))   # side by side: all in view
    table = pd.DataFrame({"patient_id": [f"demo:{i:04d}" for i in range(n)], "subtype": [f"S{j + 1}" for j in k],
                          "confidence": rng.random(n).round(3), "umap_1": xy[:, 0], "umap_2": xy[:, 1],
                          "age": rng.normal(60, 10, n).round(1)})
    root = tmp_path_factory.mktemp("atlas")
    img = root / "x.png"
    Image.fromarray((rng.random((40, 50)) * 255).astype(np.uint8)).save(img)
    table["thumbnail"], failed = thumbnails(pd.Series([str(img)] * 2 + [None] * (n - 2)), size=16)
    assert failed == 0 and table.thumbnail[0].startswith("data:image/png;base64,") and table.thumbnail[5] is None
    export_atlas(table, out=root / "atlas")
    return root / "atlas", table


def test_static_app_is_hard_linked_and_launchers_shipped(atlas) -> None:
    folder, _ = atlas
    static = _static_dir()
    for rel in ("index.html", *(p.relative_to(static) for p in (static / "assets").iterdir())):
        assert os.path.samefile(static / rel, folder / "app" / rel), rel        # stored once on disk
    for name in WRAPPERS:
        assert os.access(folder / name, os.X_OK) and "open_atlas.py" in (folder / name).read_text()
    assert (folder / "app" / "data" / "dataset.parquet").is_file() and (folder / "README.txt").is_file()


def _serve(folder: Path) -> tuple[subprocess.Popen, str]:
    """Start the Linux launcher (the same script every wrapper runs) without a browser; returns its URL."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(["sh", str(folder / "open_atlas_linux.sh"), "--no-browser"], stdout=subprocess.PIPE,
                            text=True, env=env)
    line = proc.stdout.readline()
    assert line.startswith("Embedding Atlas: http://127.0.0.1:"), line
    return proc, line.split(": ", 1)[1].strip()


def _colour_counts(png: Path) -> dict[str, int]:
    """Pixels of the categorical palette's blue, orange and green in the embedding view (upper left of the page;
    uncoloured points are all one blue-grey)."""
    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    a = a[60:440, : int(a.shape[1] * 0.65)]
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return {"blue": int(((b > r + 40) & (b > g + 10)).sum()),
            "orange": int(((r > 200) & (g > 110) & (g < 200) & (b < 150)).sum()),
            "green": int(((g > r + 30) & (g > b + 30)).sum())}


def test_launcher_serves_the_copied_export_and_points_are_coloured_by_subtype(atlas, tmp_path, browse) -> None:
    folder, table = atlas
    copy = tmp_path / "sent to a collaborator"
    shutil.copytree(folder, copy)                      # what a collaborator receives: the folder alone
    proc, url = _serve(copy)
    try:
        n = len(table)
        shot = (SHOTS or tmp_path) / "atlas_launcher.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        ready, _ = browse(url, f"document.body.innerText.includes('{n} / {n} points') && "
                               "document.querySelectorAll('canvas').length > 0 && document.body.innerText", screenshot=shot,
                          until_png=lambda png: min(_colour_counts(png).values()) > 200)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert ready, "the Atlas did not finish loading"
    assert f"{n} / {n} points" in ready and "subtype" in ready
    for s, c in table.subtype.value_counts().items():
        assert f"{s}\n{c}" in ready.replace("\t", "\n") or f"{s} {c}" in ready, (s, c)
    colours = _colour_counts(shot)
    assert min(colours.values()) > 200, colours     # three subtypes, three palette colours (not one colour)
