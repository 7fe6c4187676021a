"""Fixtures of the survival-head tests: lifelines' rossi table (real recidivism data with tied times)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def rossi() -> pd.DataFrame:
    """Rossi et al. (1980) recidivism data shipped with lifelines: 432 rows, `week` (ties), `arrest`."""
    from lifelines.datasets import load_rossi

    return load_rossi()


@pytest.fixture(scope="session")
def rossi_fit(rossi: pd.DataFrame):
    """lifelines CoxPHFitter (Efron ties, no penalty) fitted on rossi."""
    from lifelines import CoxPHFitter

    return CoxPHFitter().fit(rossi, "week", "arrest")


@pytest.fixture(scope="session")
def rossi_xte(rossi: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X (432, 7) float64, time (432,), event (432,)) of rossi."""
    x = rossi.drop(columns=["week", "arrest"]).to_numpy(float)
    return x, rossi["week"].to_numpy(float), rossi["arrest"].to_numpy(float)


def write_toy_cohort(root, *, n: int = 80, seed: int = 0):
    """A small cohort in the contract format (docs/data-contracts.md) + an embedding store.

    Patients have 1-3 images (offsets 0, 2, 5 days); the 4-d ``toy`` embedding shows a latent severity,
    the clinical ``marker`` (binary, 30% missing) a second risk factor; ``age`` continuous, ``sex``
    categorical. Outcomes: ``time``/``event`` (exponential hazard, censoring at 30 d) and ``death30``
    (binary). Returns ``(cohort_dir, store_path)``.
    """
    from pathlib import Path

    from cohorts.folder import write_cohort_folder
    from embedders.store import write_store

    root = Path(root)
    rng = np.random.default_rng(seed)
    cohort = root / "cohort"
    cohort.mkdir(parents=True)
    severity = rng.normal(size=n)
    marker = rng.integers(0, 2, n)
    hazard = 0.03 * np.exp(1.0 * severity + 1.0 * marker)
    t_event = rng.exponential(1.0 / hazard)
    time = np.round(np.minimum(t_event, 30.0), 1) + 0.1
    event = (t_event <= 30.0).astype(int)
    pids = [f"toy/P{i:03d}" for i in range(n)]
    images = []
    for i, pid in enumerate(pids):
        for j, off in enumerate([0.0, 2.0, 5.0][: 1 + i % 3]):
            images.append({"image_id": f"{pid}/{j}", "patient_id": pid, "study_id": f"{pid}/{j}", "path": None,
                           "view": "AP", "dataset": "toy", "acquired_at": pd.NaT, "offset_days": off,
                           "_sev": severity[i]})
    manifest = pd.DataFrame(images)
    clinical = pd.DataFrame({
        "patient_id": pids, "age": rng.normal(60, 10, n).round(), "sex": rng.choice(["F", "M"], n),
        "marker": pd.array(np.where(rng.uniform(size=n) < 0.3, pd.NA, marker), dtype="Int8"),
        "time": time, "event": pd.array(event, dtype="Int8"),
        "death30": pd.array(event, dtype="Int8"), "true_severity": severity.round(3)})
    def spec(t, r, **kw):
        return {"type": t, "role": r, "unit": kw.get("unit"), "min": kw.get("min"),
                                   "max": kw.get("max"), "categories": kw.get("categories"), "description": ""}
    schema = {"patient_id": spec("categorical", "id"), "age": spec("continuous", "feature", unit="years", min=0, max=120),
              "sex": spec("categorical", "feature", categories=["F", "M"]), "marker": spec("binary", "feature"),
              "time": spec("continuous", "outcome", unit="days", min=0), "event": spec("binary", "outcome"),
              "death30": spec("binary", "outcome"), "true_severity": spec("continuous", "truth")}
    write_cohort_folder(cohort, manifest.drop(columns="_sev"), clinical=clinical, schema={"columns": schema})
    store = root / "store.zarr"
    ids = manifest["image_id"].to_numpy().astype(str)
    emb = np.stack([manifest["_sev"], rng.normal(size=len(ids)), rng.normal(size=len(ids)),
                    manifest["_sev"] + rng.normal(0, 0.5, len(ids))], axis=1).astype(np.float32)
    write_store(store, ids, {"toy": {"original": emb}}, manifest_sha256="toy")
    return cohort, store


@pytest.fixture(scope="session")
def toy_cohort(tmp_path_factory):
    """(cohort_dir, store_path) of :func:`write_toy_cohort` (80 patients)."""
    return write_toy_cohort(tmp_path_factory.mktemp("toy"))
