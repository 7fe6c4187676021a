"""Benchmark: the survival head vs CoxPH (and a random survival forest) on real tabular survival data.

Data sets: lifelines' ``gbsg2`` (686 patients) and GBSG (2,232), METABRIC (1,904), SUPPORT (8,873) from
``../shared/data/survival-benchmarks`` (DeepSurv HDF5 files, train + test joined, as pycox does; see its
README). Each table is written as a contract-format cohort (clinical.parquet + clinical_schema.json, no
images) and run through :func:`fusion.survival.run.run_survival` exactly as a user would: clinical tokens only,
no landmark, 5-fold out-of-fold Harrell's C. The fold split is fixed (``evaluation.fold_seed: 0``); each
of ``--seeds`` changes everything the head's training draws (initialisation, validation parts, batch
order), so the spread over seeds is the head's training instability alone. CoxPH is the stage's
``clinical_cox`` baseline (lifelines, ridge ``--penalizer``) on the same encoded design and folds.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/bench_survival.py [--datasets gbsg2 GBSG METABRIC SUPPORT]
        [--seeds 0 1 2] [--rsf] [--out runs/bench_survival]
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from fusion.survival.config import SurvivalConfig
from fusion.survival.run import run_survival

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "survival-benchmarks"
H5 = {"GBSG": "gbsg_cancer_train_test.h5", "METABRIC": "metabric_IHC4_clinical_train_test.h5",
      "SUPPORT": "support_train_test.h5"}


def load_table(name: str, *, data_dir: Path = DATA) -> pd.DataFrame:
    """Covariates + ``time`` + ``event`` of one benchmark set (gbsg2: lifelines; others: DeepSurv HDF5)."""
    if name == "gbsg2":
        from lifelines.datasets import load_gbsg2

        return load_gbsg2().rename(columns={"cens": "event"})
    import h5py

    parts = []
    with h5py.File(data_dir / H5[name], "r") as f:
        for split in ("train", "test"):
            g = f[split]
            x = pd.DataFrame(g["x"][:], columns=[f"x{i}" for i in range(g["x"].shape[1])])
            parts.append(x.assign(time=g["t"][:], event=g["e"][:].astype(int)))
    return pd.concat(parts, ignore_index=True)


def write_cohort(table: pd.DataFrame, root: Path) -> Path:
    """A contract-format cohort (docs/data-contracts.md) of ``table`` without images -> cohort folder."""
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"p{i:05d}" for i in range(len(table))]
    schema = {"patient_id": {"type": "categorical", "role": "id"},
              "time": {"type": "continuous", "role": "outcome", "unit": "days", "min": 0},
              "event": {"type": "binary", "role": "outcome"}}
    for col in table.columns.drop(["time", "event"]):
        values = table[col]
        if not pd.api.types.is_numeric_dtype(values):
            schema[col] = {"type": "categorical", "role": "feature", "categories": sorted(values.astype(str).unique())}
        elif set(values.unique()) <= {0, 1}:
            schema[col] = {"type": "binary", "role": "feature"}
        else:
            schema[col] = {"type": "continuous", "role": "feature"}
    clinical = table.assign(patient_id=ids)
    for col, spec in schema.items():
        if spec["type"] == "categorical" and col != "patient_id":
            clinical[col] = clinical[col].astype(str)
        elif spec["type"] == "binary":
            clinical[col] = pd.array(clinical[col].astype(int), dtype="Int8")
    clinical.to_parquet(root / "clinical.parquet", index=False)
    (root / "clinical_schema.json").write_text(json.dumps({"columns": schema}))
    pd.DataFrame({c: pd.Series(dtype=str) for c in ("image_id", "patient_id", "study_id", "path", "view", "dataset")}
                 ).to_parquet(root / "manifest.parquet", index=False)
    return root


def bench_config(seed: int, *, rsf: bool, penalizer: float, n_boot: int) -> SurvivalConfig:
    """The head as the stage runs it on a clinical-only table (defaults otherwise)."""
    return SurvivalConfig.model_validate({
        "seed": seed,
        "tokens": {"cxr": False, "latent": "none", "landmark_days": None},
        "head": {"linear_penalty": penalizer},
        "evaluation": {"folds": 5, "fold_seed": 0, "n_boot": n_boot, "penalizer": penalizer, "oracle_columns": [],
                       "baselines": ["clinical_cox"] + (["rsf"] if rsf else []), "metrics": ["c_index"]}})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["gbsg2", "GBSG", "METABRIC", "SUPPORT"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rsf", action="store_true", help="also a random survival forest (scikit-survival)")
    ap.add_argument("--penalizer", type=float, default=0.01, help="ridge penalty of the CoxPH baseline")
    ap.add_argument("--n-boot", type=int, default=10, help="bootstrap resamples (the table shows point estimates)")
    ap.add_argument("--out", type=Path, default=None, help="keep each run's outputs here (default: a temp folder)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.out or Path(tmp)
        for name in args.datasets:
            table = load_table(name)
            cohort = write_cohort(table, base / name / "cohort")
            for seed in args.seeds:
                t0 = time.perf_counter()
                cfg = bench_config(seed, rsf=args.rsf, penalizer=args.penalizer, n_boot=args.n_boot)
                paths = run_survival(cfg, cohort=cohort, store=None, out=base / name / f"seed{seed}")
                c = json.loads(paths["metrics"].read_text())["endpoints"]["death"]["metrics"]["c_index"]
                rows.append({"dataset": name, "patients": len(table), "events": int(table["event"].sum()), "seed": seed,
                             "seconds": time.perf_counter() - t0,
                             **{k: v["estimate"] for k, v in c.items() if " - " not in k}})
                print(json.dumps(rows[-1]), flush=True)
    frame = pd.DataFrame(rows)
    models = [m for m in ("head", "clinical_cox", "rsf") if m in frame]
    summary = frame.groupby("dataset", sort=False).agg(
        patients=("patients", "first"), events=("events", "first"),
        **{f"{m}_mean": (m, "mean") for m in models}, **{f"{m}_spread": (m, lambda v: v.max() - v.min()) for m in models},
        seconds=("seconds", "mean"))
    summary["head_minus_cox"] = summary["head_mean"] - summary["clinical_cox_mean"]
    summary["pass"] = (summary["head_minus_cox"] >= -0.005) & (summary["head_spread"] <= 0.01)
    print(f"\nOut-of-fold Harrell's C, 5 folds (split seed 0), head seeds {args.seeds}:")
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
