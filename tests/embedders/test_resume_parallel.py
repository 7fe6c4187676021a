"""Resumability after a real SIGKILL, and Dask LocalCluster == single process, bit for bit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from embedders.config import EmbeddersConfig
from embedders.run import run_embedders

from .conftest import SQUEEZENET_DIR, assert_same_arrays, store_arrays, write_manifest

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, weights: Path, **kw: object) -> tuple[Path, EmbeddersConfig]:
    data = {"models": [{"name": "squeezenet1_1", "weights": str(weights)}, {"name": "radiomics"}],
            "augmentations": ["original", "rot+45"], "chunk_rows": 2, "batch_size": 3,
            "torch_threads": 1, **kw}
    path = tmp_path / "embedders.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, EmbeddersConfig.model_validate(data)


def _done_chunks(store: Path) -> int:
    return sum(1 for p in store.glob("*/*/done/c/*") if not p.name.endswith(".partial"))


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, covid_pngs: list[Path], shared_models: Path) -> None:
    manifest = write_manifest(tmp_path / "manifest.parquet", covid_pngs[:12])
    cfg_path, cfg = _config(tmp_path, shared_models / SQUEEZENET_DIR)
    reference = tmp_path / "reference.zarr"
    run_embedders(cfg, manifest=manifest, store=reference)
    expected = store_arrays(reference)
    total_chunks = len(expected) // 2 * (12 // 2)

    store = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "embedders.run", "--config", str(cfg_path), "--manifest", str(manifest),
           "--store", str(store)]
    kills = 0
    for target in (3, 12):          # kill early in the first model, then again in the middle of the run
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _done_chunks(store) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        assert 0 < _done_chunks(store) < total_chunks
    assert kills == 2

    run_embedders(cfg, manifest=manifest, store=store)      # resume
    assert_same_arrays(store_arrays(store), expected)
    assert all(v.all() for k, v in store_arrays(store).items() if k.endswith("/done"))
    assert not list(store.rglob("*.partial"))


def test_dask_two_workers_equal_single_process(tmp_path: Path, covid_pngs: list[Path], shared_models: Path) -> None:
    paths = list(covid_pngs[:7])
    paths[3] = None                                           # a row without image: reported, not done
    manifest = write_manifest(tmp_path / "manifest.parquet", paths)
    _, single_cfg = _config(tmp_path, shared_models / SQUEEZENET_DIR, augmentations=["original", "rot-45"])
    run_embedders(single_cfg, manifest=manifest, store=tmp_path / "single.zarr")
    parallel_cfg = single_cfg.model_copy(update={"workers": 2})
    run_embedders(parallel_cfg, manifest=manifest, store=tmp_path / "dask.zarr")
    single, parallel = store_arrays(tmp_path / "single.zarr"), store_arrays(tmp_path / "dask.zarr")
    assert_same_arrays(parallel, single)
    assert not single["radiomics/original/done"][3] and single["radiomics/original/done"].sum() == 6
    assert np.isfinite(single["squeezenet1_1/rot-45/embeddings"][single["squeezenet1_1/rot-45/done"]]).all()
    errors = (tmp_path / "dask.zarr.errors.csv").read_text()
    assert errors.count("img003") == 4                        # 2 models x 2 augmentations
