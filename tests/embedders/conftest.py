"""Fixtures for the embedders tests: small manifests over the real covid-chestxray PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

SQUEEZENET_DIR = "squeezenet1_1-kermany-pneumonia"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def covid_pngs(shared_data: Path) -> list[Path]:
    """The first 24 real covid-chestxray PNGs, in metadata order."""
    root = shared_data / "covid-chestxray-dataset"
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    return [root / p for p in meta["png_file"].iloc[:24]]


def write_manifest(path: Path, image_paths: list[Path | str | None]) -> Path:
    """A contract-shaped manifest.parquet with ids ``img000..`` over ``image_paths``."""
    ids = [f"img{i:03d}" for i in range(len(image_paths))]
    pd.DataFrame({
        "image_id": ids, "patient_id": [f"p{i // 2}" for i in range(len(ids))], "study_id": ids,
        "path": [None if p is None else str(p) for p in image_paths], "view": "PA", "dataset": "covid-chestxray",
    }).to_parquet(path)
    return path


def store_arrays(store: Path) -> dict[str, np.ndarray]:
    """Every embeddings/done array of a store, keyed by its path (for bit-exact comparisons)."""
    root = zarr.open_group(store, mode="r")
    out = {}
    for model, group in root.groups():
        for aug, sub in group.groups():
            out[f"{model}/{aug}/embeddings"] = sub["embeddings"][:]
            out[f"{model}/{aug}/done"] = sub["done"][:]
    return out


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same keys and bit-identical contents (NaN rows included)."""
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), f"{key} differs"
