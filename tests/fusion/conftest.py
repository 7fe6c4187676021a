"""Fixtures for fusion tests: a small cohort (written with cohorts.folder) + store in the contract format
(docs/data-contracts.md).

Planted structure: three subtypes (clinical column ``true_subtype``, role truth). The clinical
features mainly separate subtype 0 from the others, the CXR embeddings mainly subtype 2 from the
others, so only the two together recover all three. Missing values, patients without a clinical
row and patients without images are all present.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cohorts.folder import write_cohort_folder
from embedders.store import write_store

MODEL = "synthetic"


def write_contract_cohort(root: Path, *, n_patients: int = 120, dim: int = 16, tokens: int = 1,
                          seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/cohort`` (manifest, clinical, schema) and ``root/store.zarr``; return both paths."""
    rng = np.random.default_rng(seed)
    cohort, store = root / "cohort", root / "store.zarr"
    cohort.mkdir(parents=True, exist_ok=True)
    pids = [f"demo-{i:04d}" for i in range(n_patients)]
    subtype = rng.choice(3, size=n_patients, p=[0.4, 0.3, 0.3])
    lactate = np.clip(1.5 + 2.5 * (subtype == 0) + rng.normal(0, 0.6, n_patients), 0.2, 20)
    il6 = np.clip(np.exp(3 + 1.2 * (subtype == 0) + 0.3 * (subtype == 1) + rng.normal(0, 0.4, n_patients)), 1, 5000)
    vaso = (rng.random(n_patients) < np.where(subtype == 0, 0.8, 0.2)).astype(float)
    clin = pd.DataFrame({
        "patient_id": pids,
        "age": np.round(rng.normal(60, 12, n_patients).clip(18, 99)),
        "lactate": lactate, "il6": il6, "vasopressors": vaso,
        "sex": rng.choice(["F", "M"], n_patients).astype(object),
        "true_subtype": subtype.astype(str),
        "time": rng.exponential(30, n_patients).round(1), "event": (rng.random(n_patients) < 0.4).astype(int),
    })
    for col in ("age", "lactate", "il6", "vasopressors", "sex"):
        clin.loc[rng.random(n_patients) < 0.25, col] = None
    clin = clin.iloc[n_patients // 10:]                # the first 10% of patients have no clinical row
    spec = {"type": "continuous", "role": "feature", "categories": None, "description": ""}
    schema = {"columns": {
        "patient_id": {**spec, "type": "categorical", "role": "id", "unit": None, "min": None, "max": None},
        "age": {**spec, "unit": "years", "min": 0, "max": 120},
        "lactate": {**spec, "unit": "mmol/L", "min": 0, "max": 30},
        "il6": {**spec, "unit": "pg/mL", "min": 0, "max": 100000},
        "vasopressors": {**spec, "type": "binary", "unit": None, "min": None, "max": None},
        "sex": {**spec, "type": "categorical", "unit": None, "min": None, "max": None, "categories": ["F", "M"]},
        "true_subtype": {**spec, "type": "categorical", "role": "truth", "unit": None, "min": None, "max": None,
                         "categories": ["0", "1", "2"]},
        "time": {**spec, "role": "outcome", "unit": "days", "min": 0, "max": None},
        "event": {**spec, "type": "binary", "role": "outcome", "unit": None, "min": None, "max": None},
    }}

    centers = rng.normal(0, 1, (3, dim))
    centers[1] = centers[0] + rng.normal(0, 0.15, dim)     # CXR barely tells subtype 0 from 1
    rows = []
    for i, pid in enumerate(pids):
        if i % 10 == 9:                                     # every 10th patient has no image
            continue
        for j in range(int(rng.integers(1, 4))):
            rows.append({"image_id": f"{pid}-img{j}", "patient_id": pid, "study_id": f"{pid}-s{j}",
                         "path": None, "view": "AP", "dataset": "demo", "acquired_at": pd.NaT,
                         "offset_days": float(j * 3 - 1) if i % 7 else np.nan, "_s": subtype[i]})
    manifest = pd.DataFrame(rows)
    write_cohort_folder(cohort, manifest.drop(columns="_s"), clinical=clin, schema=schema)
    emb = centers[manifest["_s"].to_numpy()] + rng.normal(0, 0.5, (len(manifest), dim))
    if tokens > 1:
        emb = emb[:, None, :] + rng.normal(0, 0.3, (len(manifest), tokens, dim))
    done = np.ones(len(manifest), bool)
    done[::17] = False                                      # a few images never got an embedding
    write_store(store, manifest["image_id"].to_numpy(), {MODEL: {"original": emb.astype(np.float32)}},
                manifest_sha256="fixture", done={MODEL: done})
    return cohort, store


@pytest.fixture(scope="session")
def contract_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cohort_dir, store) of 120 synthetic patients, vector embeddings of dim 16."""
    return write_contract_cohort(tmp_path_factory.mktemp("fusion_fixture"))


@pytest.fixture(scope="session", autouse=True)
def _jax_compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Share compiled XLA programs between the tests' identical fits (fresh cache per session)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _tiny_config(**overrides: object):
    from fusion.config import FusionConfig

    base = {"seed": 0, "cxr": {"model": MODEL, "pooling": "mean"},
            "model": {"hidden": 16, "latent_dim": 4, "n_layers": 1, "attention_heads": 2},
            "kl": {"warmup_steps": 10}, "train": {"max_epochs": 4, "batch_size": 32, "warmup_steps": 2},
            "evaluation": {"ablations": False, "knn_k": 5}, "survival": {"enabled": False}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return FusionConfig.model_validate(base)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory ``tiny_config(**section_overrides) -> FusionConfig`` small enough to compile and train in seconds."""
    return _tiny_config


@pytest.fixture(scope="session")
def store_model() -> str:
    """Name of the model group in the fixture store."""
    return MODEL
