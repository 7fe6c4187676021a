"""Fixtures: a small cohort + fusion latents in the contract format (docs/data-contracts.md), written with the
owners' writers (cohorts.folder, fusion.latents)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cohorts.clinical import ID_SPEC
from cohorts.folder import write_cohort_folder
from fusion.latents import write_latents

torch.set_num_threads(1)

SCHEMA = {
    "patient_id": ID_SPEC,
    "age": {"type": "continuous", "role": "feature", "unit": "years", "min": 18, "max": 100, "categories": None,
            "description": "age at admission"},
    "sex": {"type": "categorical", "role": "feature", "unit": None, "min": None, "max": None, "categories": ["F", "M"],
            "description": "sex"},
    "lactate": {"type": "continuous", "role": "feature", "unit": "mmol/L", "min": 0, "max": 30, "categories": None,
                "description": "lactate"},
    "vasopressors": {"type": "binary", "role": "feature", "unit": None, "min": 0, "max": 1, "categories": None,
                     "description": "vasopressors on day 1"},
    "patient_name": {"type": "categorical", "role": "id", "unit": None, "min": None, "max": None, "categories": None,
                     "description": "planted identifying column"},
    "time": {"type": "continuous", "role": "outcome", "unit": "days", "min": 0, "max": None, "categories": None,
             "description": "days to death or censoring"},
    "event": {"type": "binary", "role": "outcome", "unit": None, "min": 0, "max": 1, "categories": None,
              "description": "death observed"},
    "true_subtype": {"type": "categorical", "role": "truth", "unit": None, "min": None, "max": None,
                     "categories": ["A", "B", "C"], "description": "planted subphenotype (evaluation only)"},
}


def make_cohort(root: Path, *, n_patients: int = 240, latent_dim: int = 16, seed: int = 0,
                images: bool = True) -> tuple[Path, Path]:
    """Write COHORT_DIR (manifest, clinical, schema, PNGs) and latents.zarr with 3 planted subtypes."""
    rng = np.random.default_rng(seed)
    cohort = root / "cohort"
    (cohort / "img").mkdir(parents=True, exist_ok=True)
    truth = rng.choice(3, size=n_patients, p=[0.5, 0.3, 0.2])
    pids = np.array([f"demo:{i:05d}" for i in range(n_patients)])
    centres = rng.normal(size=(3, latent_dim)) * 2.5
    latent = (centres[truth] + rng.normal(size=(n_patients, latent_dim))).astype(np.float32)
    hazard = np.array([0.01, 0.03, 0.08])[truth]
    t_event = rng.exponential(1 / hazard)
    t_cens = rng.uniform(10, 90, n_patients)
    clinical = pd.DataFrame({
        "patient_id": pids,
        "age": np.round(rng.normal(60, 12, n_patients) + 5 * truth, 1),
        "sex": rng.choice(["F", "M"], n_patients),
        "lactate": np.where(rng.random(n_patients) < 0.1, np.nan, rng.gamma(2 + truth, 1.0)),
        "vasopressors": (rng.random(n_patients) < np.array([0.2, 0.4, 0.7])[truth]).astype(float),
        "patient_name": [f"Name{i}" for i in range(n_patients)],
        "time": np.round(np.minimum(t_event, t_cens), 2),
        "event": (t_event <= t_cens).astype(int),
        "true_subtype": np.array(["A", "B", "C"])[truth],
    })
    rows = []
    for i, pid in enumerate(pids):
        for j in range(1 + (i % 2)):
            path = cohort / "img" / f"{i}_{j}.png"
            if images:
                arr = (np.clip(rng.normal(0.4 + 0.15 * truth[i], 0.1, (48, 48)), 0, 1) * 255).astype(np.uint8)
                Image.fromarray(arr).save(path)
            rows.append({"image_id": f"demo:{i}_{j}", "patient_id": pid, "study_id": f"demo:{i}_{j}",
                         "path": str(path), "view": "PA", "dataset": "demo" if i % 3 else "demo2",
                         "acquired_at": pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(i)),
                         "offset_days": float(j),
                         "label_Edema": int(rng.random() < [0.1, 0.6, 0.3][truth[i]]),
                         "label_Effusion": [1, 0, -1, None][rng.integers(0, 4)]})
    manifest = pd.DataFrame(rows)
    for c in ("label_Edema", "label_Effusion"):
        manifest[c] = manifest[c].astype("Int8")
    write_cohort_folder(cohort, manifest, clinical=clinical, schema={"columns": SCHEMA})
    latents = write_latents(root / "fusion" / "latents.zarr", pids, latent, split={"train": np.arange(n_patients)},
                            informed=np.ones(n_patients, bool), model="fixture")
    return cohort, latents


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 240-patient cohort with 3 planted subtypes and its latents (shared by the tests)."""
    return make_cohort(tmp_path_factory.mktemp("clustering"))
