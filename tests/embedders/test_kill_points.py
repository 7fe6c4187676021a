"""Killed (SIGKILL through the fault-injection hook) at each crash-prone point, a rerun equals a clean run.

Points: store creation (root attrs written, image ids not yet), a model group between its
``embeddings`` and ``done`` arrays, and in the middle of writing the errors table (new content
complete, not yet renamed over the old file).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.safeio import FAULT_ENV
from embedders.config import EmbeddersConfig
from embedders.run import run_embedders
from embedders.store import EmbeddingStore

from .conftest import assert_same_arrays, store_arrays, write_manifest

REPO = Path(__file__).resolve().parents[2]
CFG = {"models": [{"name": "thumbnail"}], "augmentations": ["original", "bright"], "chunk_rows": 2, "batch_size": 2,
       "torch_threads": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, covid_pngs) -> tuple[Path, Path, Path]:
    """(manifest with a non-image first row and a missing file, config file, reference store of a clean run)."""
    root = tmp_path_factory.mktemp("kill")
    bad = root / "note.png"
    bad.write_text("Patient Jane Roe, MRN 1234567\n")         # a text file named as an image
    manifest = write_manifest(root / "manifest.parquet", [bad, *covid_pngs[:4], root / "missing.png"])
    cfg_path = root / "embedders.yaml"
    cfg_path.write_text(yaml.safe_dump(CFG))
    reference = root / "reference.zarr"
    run_embedders(EmbeddersConfig.model_validate(CFG), manifest=manifest, store=reference)
    return manifest, cfg_path, reference


def _killed_run(point: str, manifest: Path, cfg_path: Path, store: Path) -> None:
    env = {**os.environ, FAULT_ENV: point, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "embedders.run", "--config", str(cfg_path), "--manifest",
                           str(manifest), "--store", str(store)], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


@pytest.mark.parametrize("point", ["store-create", "group-arrays", "atomic-write"])
def test_rerun_after_a_kill_equals_a_clean_run(point: str, setup, tmp_path: Path) -> None:
    manifest, cfg_path, reference = setup
    store = tmp_path / "killed.zarr"
    _killed_run(point, manifest, cfg_path, store)
    errors = store.with_name(store.name + ".errors.csv")
    if point == "atomic-write":      # the first table write: the errors of the first chunk, renamed in never
        assert not errors.exists() and list(tmp_path.glob(f".{errors.name}.tmp-*"))
    run_embedders(EmbeddersConfig.model_validate(CFG), manifest=manifest, store=store)        # rerun
    assert_same_arrays(store_arrays(store), store_arrays(reference))
    assert (EmbeddingStore(store).image_ids() == EmbeddingStore(reference).image_ids()).all()
    assert errors.read_text() == reference.with_name(reference.name + ".errors.csv").read_text()
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".creating-" in p.name]
    assert "Jane" not in errors.read_text() and "1234567" not in errors.read_text()   # file content never echoed
