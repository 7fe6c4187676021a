"""Tiny cohort + embedding store written directly in the data-contract format (docs/data-contracts.md)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cohorts.clinical import ID_SPEC
from cohorts.folder import write_cohort_folder
from embedders.store import write_store as store_writer

torch.set_num_threads(1)


def write_store(path: Path, image_ids: np.ndarray, models: dict[str, dict[str, np.ndarray]],
                done: dict[str, np.ndarray] | None = None) -> Path:
    """Store through the owner's writer (:func:`embedders.store.write_store`); ``done[model]`` masks originals."""
    sha = hashlib.sha256(",".join(image_ids).encode()).hexdigest()
    return store_writer(path, image_ids, models, manifest_sha256=sha, done=done, chunk_rows=64)


def make_fixture(root: Path, *, n_patients: int = 60, seed: int = 0, signal: float = 1.5,
                 augmentations: tuple[str, ...] = ("original", "bright"), missing: int = 1) -> tuple[Path, Path]:
    """Cohort folder (manifest, clinical, sample parquet) + store with models ``small`` (16,) and ``tokens`` (4, 8).

    Two datasets x two labels; patients have 1-2 images; the label shifts the embeddings by ``signal``
    along a fixed direction. ``missing`` sampled images of model ``tokens`` are not done in the store.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for ds in ("dsA", "dsB"):
        for p in range(n_patients):
            for i in range(1 + p % 2):
                rows.append({"image_id": f"{ds}_p{p}_i{i}", "patient_id": f"{ds}_p{p}", "dataset": ds})
    man = pd.DataFrame(rows)
    n = len(man)
    labels = {"Effusion": rng.integers(0, 2, n_patients * 2), "Edema": rng.integers(0, 2, n_patients * 2)}
    pat_index = man["patient_id"].astype("category").cat.codes.to_numpy()
    for lab, per_pat in labels.items():
        man[f"label_{lab}"] = pd.array(per_pat[pat_index], dtype="Int8")
    man["study_id"], man["path"], man["view"] = man["image_id"], None, "PA"
    man["acquired_at"], man["offset_days"] = pd.NaT, np.nan
    cohort = root / "cohort"
    cohort.mkdir(parents=True)
    sample = pd.concat([man.assign(label=lab, y=man[f"label_{lab}"].astype(int))[
        ["dataset", "label", "image_id", "patient_id", "y"]] for lab in labels], ignore_index=True)
    write_cohort_folder(cohort, man, clinical=pd.DataFrame({"patient_id": man["patient_id"].unique()}),
                        schema={"columns": {"patient_id": ID_SPEC}}, sample=sample)
    y_eff = man["label_Effusion"].to_numpy(dtype=float)
    y_ede = man["label_Edema"].to_numpy(dtype=float)
    direction16, direction8 = rng.standard_normal(16), rng.standard_normal(8)
    models: dict[str, dict[str, np.ndarray]] = {"small": {}, "tokens": {}}
    base16 = rng.standard_normal((n, 16))
    base8 = rng.standard_normal((n, 4, 8))
    for aug in augmentations:
        jitter = 0.0 if aug == "original" else 0.3
        models["small"][aug] = base16 + signal * np.outer(y_eff + y_ede, direction16) \
            + jitter * rng.standard_normal((n, 16))
        models["tokens"][aug] = base8 + signal * (y_eff + 0.8 * y_ede)[:, None, None] * direction8 \
            + jitter * rng.standard_normal((n, 4, 8))
    done = np.ones(n, bool)
    done[rng.choice(n, size=missing, replace=False)] = False
    store = write_store(root / "embeddings.zarr", man["image_id"].to_numpy(), models, {"tokens": done})
    return cohort, store


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """(cohort dir, store path) of the tiny fixture."""
    return make_fixture(tmp_path)


@pytest.fixture(scope="session")
def bench_fixture_factory():
    """:func:`make_fixture`, for module-scoped fixtures in the test files."""
    return make_fixture
