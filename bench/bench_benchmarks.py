"""Benchmark of `benchmarks.run` at the source study's full size, on synthetic embeddings.

2 datasets x 4 labels (1000 absent + 1000 present images each; the same 2000 images per dataset with a
different label vector per finding) x 2 models with per-image shapes (1024,) and (32, 768) (mean-pooled),
6 augmentations (original + 5 training-only), 5 patient-grouped folds. Times the whole `run_benchmarks`
call (store read + pooling, 80 fold fits, bootstrap, comparisons, report) with the logistic probe, and the
same with the LightGBM probe (100 trees; one task, extrapolated, unless --lightgbm-full). Reference: the
straightforward implementation (sklearn Pipeline(StandardScaler, LogisticRegression) in float64 refitted
per fold + a Python-loop bootstrap calling sklearn's metrics per replicate), measured on one
(dataset, label) task for both models and multiplied by the number of tasks.

    .venv/bin/python bench/bench_benchmarks.py [--workdir /tmp/bench_benchmarks] [--skip-lightgbm] [--keep]
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repository root, for a plain checkout

from benchmarks.config import BenchmarksConfig  # noqa: E402
from benchmarks.run import run_benchmarks  # noqa: E402

DATASETS = ("mimic", "nih")
LABELS = ("Opacity", "Atelectasis", "Edema", "Effusion")
AUGS = ("original", "bright", "dark", "contrast", "rot+45", "rot-45")
MODELS = {"medimageinsight": (1024,), "cxr-foundation": (32, 768)}
N_PER_DATASET = 2000


def make_inputs(root: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write COHORT/sample.parquet and STORE.zarr (uncompressed float32, 500-row chunks) under ``root``."""
    rng = np.random.default_rng(seed)
    n = N_PER_DATASET * len(DATASETS)
    ids = np.array([f"{ds}-{i:05d}" for ds in DATASETS for i in range(N_PER_DATASET)])
    rows, y = [], np.zeros((n, len(LABELS)))
    for d, ds in enumerate(DATASETS):
        for j, lab in enumerate(LABELS):
            yy = rng.permutation(np.r_[np.ones(N_PER_DATASET // 2), np.zeros(N_PER_DATASET // 2)])
            y[d * N_PER_DATASET:(d + 1) * N_PER_DATASET, j] = yy
            rows.append(pd.DataFrame({"dataset": ds, "label": lab,
                                      "image_id": ids[d * N_PER_DATASET:(d + 1) * N_PER_DATASET],
                                      "patient_id": [f"{ds}/p{i}" for i in range(N_PER_DATASET)], "y": yy.astype(int)}))
    cohort = root / "cohort"
    cohort.mkdir(parents=True, exist_ok=True)
    pd.concat(rows, ignore_index=True).to_parquet(cohort / "sample.parquet", index=False)

    store = root / "embeddings.zarr"
    g = zarr.open_group(store, mode="w")
    g.attrs.update({"manifest_sha256": hashlib.sha256(ids.tobytes()).hexdigest(), "n_images": n})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g.create_array("image_id", shape=(n,), dtype="<U12", chunks=(n,))[:] = ids
    latent = rng.standard_normal((n, 64)).astype(np.float32)
    latent[:, :len(LABELS)] += 1.7 * y.astype(np.float32)      # one latent direction per finding (AUROC ~0.85)
    for model, shape in MODELS.items():
        d = int(np.prod(shape))
        mix = (rng.standard_normal((64, d)) / 8).astype(np.float32)
        mg = g.require_group(model)
        mg.attrs.update({"model": model, "output_shape": list(shape), "augmentations": list(AUGS)})
        for aug in AUGS:
            sub = mg.require_group(aug)
            emb = sub.create_array("embeddings", shape=(n, *shape), dtype="float32", chunks=(500, *shape),
                                   compressors=None)
            sub.create_array("done", shape=(n,), dtype=bool, chunks=(500,))[:] = True
            shift = 0.0 if aug == "original" else 0.3
            for start in range(0, n, 500):
                z = latent[start:start + 500] + shift * rng.standard_normal((500, 64), dtype=np.float32)
                x = z @ mix + rng.standard_normal((500, d), dtype=np.float32)
                emb[start:start + 500] = x.reshape(500, *shape)
    return cohort, store


def reference_one_task(cohort: Path, store: Path, *, dataset: str, label: str, n_boot: int) -> float:
    """Seconds for the straightforward implementation on one (dataset, label) task, both models."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from embedders.store import EmbeddingStore

    t0 = time.perf_counter()
    sample = pd.read_parquet(cohort / "sample.parquet").query("dataset == @dataset and label == @label")
    st = EmbeddingStore(store)
    for model in MODELS:
        xs = {}
        for aug in AUGS:
            ids, arr = st.read(model, aug)
            pos = pd.Index(ids).get_indexer(sample.image_id)
            x = np.asarray(arr[np.sort(pos)].compute(), dtype=np.float64)[np.argsort(np.argsort(pos))]
            xs[aug] = x.reshape(len(x), -1, x.shape[-1]).mean(axis=1)
        y, groups = sample.y.to_numpy(), sample.patient_id.to_numpy()
        oof = np.zeros(len(y))
        folds = StratifiedGroupKFold(5, shuffle=True, random_state=0).split(xs["original"], y, groups)
        for train, test in folds:
            X = np.concatenate([xs[a][train] for a in AUGS])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
                clf.fit(X, np.tile(y[train], len(AUGS)))
            oof[test] = clf.predict_proba(xs["original"][test])[:, 1]
        rng = np.random.default_rng(0)
        for _ in range(n_boot):                                 # patient bootstrap, one replicate at a time
            pick = rng.choice(len(y), len(y))                   # one image per patient here
            roc_auc_score(y[pick], oof[pick]), accuracy_score(y[pick], oof[pick] >= 0.5)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_benchmarks"))
    ap.add_argument("--skip-lightgbm", action="store_true")
    ap.add_argument("--lightgbm-full", action="store_true", help="all 8 tasks with LightGBM (default: 1, extrapolated)")
    ap.add_argument("--keep", action="store_true", help="reuse an existing synthetic store in --workdir")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = args.workdir
    print(f"load average at start: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    if not (args.keep and (root / "embeddings.zarr").exists()):
        shutil.rmtree(root, ignore_errors=True)
        t = time.perf_counter()
        cohort, store = make_inputs(root)
        print(f"synthetic inputs written in {time.perf_counter() - t:.1f} s (not part of the timings)")
    cohort, store = root / "cohort", root / "embeddings.zarr"

    cfg = BenchmarksConfig(probes=["logistic"])
    t = time.perf_counter()
    paths = run_benchmarks(cfg, cohort=cohort, store=store, out=root / "out_logistic")
    t_log = time.perf_counter() - t
    res = pd.read_csv(paths["results"]).query("metric == 'auroc' and ci_method == 'patient_bootstrap'")
    print(f"logistic probe, whole run: {t_log:.1f} s (target <= 120 s); "
          f"timings {pd.read_json(paths['run'], typ='series')['timings']}")
    print(f"  mean AUROC per model: {res.groupby('model')['mean'].mean().round(3).to_dict()}")

    t = time.perf_counter()
    t_ref_task = reference_one_task(cohort, store, dataset="mimic", label="Edema", n_boot=cfg.bootstrap.n_boot)
    t_ref = t_ref_task * len(DATASETS) * len(LABELS)
    print(f"reference (naive) implementation: {t_ref_task:.1f} s for 1 of {len(DATASETS) * len(LABELS)} tasks "
          f"-> {t_ref:.0f} s extrapolated; speed-up {t_ref / t_log:.1f}x")
    if not args.skip_lightgbm:
        n_tasks = len(DATASETS) * len(LABELS)
        subset = {} if args.lightgbm_full else {"datasets": ["mimic"], "labels": ["Edema"]}
        t = time.perf_counter()
        run_benchmarks(BenchmarksConfig(probes=["lightgbm"], **subset), cohort=cohort, store=store,
                       out=root / "out_lightgbm")
        t_lgb = time.perf_counter() - t
        if args.lightgbm_full:
            print(f"lightgbm probe (100 trees), whole run: {t_lgb:.1f} s")
        else:
            print(f"lightgbm probe (100 trees): {t_lgb:.1f} s for 1 of {n_tasks} tasks (2 models x 5 folds, store "
                  f"read included) -> ~{t_lgb * n_tasks:.0f} s extrapolated for the whole run")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
