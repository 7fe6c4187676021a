"""The README's tour of the stages runs as written: its bash block, executed verbatim with CONFIG pointing at a
smaller copy of the demo config and RUN at a temporary folder (the overrides the tour itself names), leaves
the pipeline's layout behind, stage by stage."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # minutes: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[2]
REDUCED = {   # the demo made small: this test checks that the commands chain, not the numbers
    "cohorts": {"sources": [{"kind": "demo", "n_patients": 150, "seed": 0, "image_size": 64}],
                "sampling": {"n_per_class": 20}},
    "embedders": {"augmentations": ["original", "bright"]},
    "benchmarks": {"n_folds": 3, "bootstrap": {"n_boot": 100}},
    "fusion": {"train": {"max_epochs": 15, "patience": 5}, "survival": {"enabled": False}},
    "clustering": {"stability": {"n_resamples": 3}, "leiden": {"n_seeds": 2, "n_subsamples": 2},
                   "atlas": {"application": False, "thumbnails": 0}, "studies": {"label_noise": False},
                   "characterize": {"montage_per_subtype": 2}},
}


def tour_block() -> str:
    """The first ```bash block under the README's 'A tour of the stages' heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("## A tour of the stages", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "no bash block in the README's tour"
    return match.group(1)


def test_readme_tour_runs_verbatim(tmp_path: Path, reduced_config) -> None:
    block = tour_block()
    assert "runs/demo" not in block and "python -m cohorts.run" in block and "python -m clustering.run" in block
    config, run = reduced_config("demo", tmp_path / "demo.yaml", REDUCED), tmp_path / "tour"
    env = {**os.environ, "CONFIG": str(config), "RUN": str(run), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("cohorts/manifest.parquet", "embedders/embeddings.zarr/zarr.json", "benchmarks/selection.json",
                "fusion/latents.zarr", "clustering/subtypes.csv", "clustering/subtypes.h5ad", "clustering/report.html"):
        assert (run / rel).exists(), rel
    metrics = json.loads((run / "clustering" / "metrics.json").read_text())
    assert metrics["n"] == 150 and metrics["leiden"]["n_subtypes"] >= 2
