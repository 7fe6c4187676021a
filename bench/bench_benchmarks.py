"""Benchmark of `benchmarks.run` at the source study's full size, on synthetic embeddings.

1. Logistic, whole run: 2 datasets x 4 labels (1000 absent + 1000 present images each; the same 2000 images per
   dataset with a different label vector per finding) x 2 models with per-image shapes (1024,) and (32, 768)
   (mean-pooled), 6 augmentations (original + 5 training-only), 5 patient-grouped folds. Times the whole
   `run_benchmarks` call; reference: the straightforward implementation (sklearn Pipeline(StandardScaler,
   LogisticRegression) in float64 refitted per fold + a Python-loop bootstrap), one task, multiplied by 8.
2. LightGBM vs the source study's script, one label-model (2000 images x 6 augmentations x 1024-d, in memory),
   measured back to back *fold by fold, interleaved* (study fold k, ours fold k, ...) so that both see the same
   load on a shared host. The study's approach, re-written from its description (seeds/000: "LightGBM probe,
   100 trees" on the embeddings, augmented copies of the training images added, 5-fold CV): per fold a pandas
   float64 frame of the training originals + their 5 augmented copies, `LGBMClassifier(n_estimators=100)` with
   its defaults (all cores, 255 bins, every row and feature per tree), scores of the test originals. Ours:
   `benchmarks.probes.fit_predict("lightgbm", ...)` on the fold's `build_train_set` (see benchmarks/lgbm.py).
   Both use the same folds (one image per patient here, so patient folds = image folds). Reports wall and CPU
   seconds per fold, AUROC per fold, and the load average before/after each fit.

    nice -n 5 .venv/bin/python bench/bench_benchmarks.py [--workdir /tmp/bench_benchmarks] [--skip-logistic]
        [--skip-lightgbm] [--lgb-folds 5] [--keep] [--workers 0 1 2]
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


def study_lightgbm_fold(xs: dict[str, np.ndarray], y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The source study's approach for one fold (re-written from its description, not its code): a float64
    DataFrame of the training originals and their augmented copies, LGBMClassifier(n_estimators=100) with
    default settings, P(y=1) of the test originals."""
    import lightgbm as lgb

    cols = [f"embedding_{i}" for i in range(xs["original"].shape[1])]
    frame = pd.concat([pd.DataFrame(xs[a][train].astype(np.float64), columns=cols) for a in AUGS], ignore_index=True)
    clf = lgb.LGBMClassifier(n_estimators=100, verbose=-1)
    clf.fit(frame, np.tile(y[train], len(AUGS)))
    return clf.predict_proba(pd.DataFrame(xs["original"][test].astype(np.float64), columns=cols))[:, 1]


def lightgbm_vs_study(*, n_folds_measured: int, seed: int = 0) -> pd.DataFrame:
    """Interleaved per-fold timings and AUROCs of the study's LightGBM approach and ours (see the module doc)."""
    from sklearn.metrics import roc_auc_score

    from benchmarks.crossval import build_train_set, fold_scaler, image_moments, standardized
    from benchmarks.data import Features
    from benchmarks.probes import fit_predict
    from benchmarks.splits import patient_folds

    rng = np.random.default_rng(seed)
    n, d = N_PER_DATASET, MODELS["medimageinsight"][0]
    y = rng.permutation(np.r_[np.ones(n // 2), np.zeros(n // 2)]).astype(np.int64)
    latent = rng.standard_normal((n, 64)).astype(np.float32)
    latent[:, 0] += 1.7 * y
    mix = (rng.standard_normal((64, d)) / 8).astype(np.float32)
    xs = {a: (latent + (0.0 if a == "original" else 0.3) * rng.standard_normal((n, 64), dtype=np.float32)) @ mix
          + rng.standard_normal((n, d), dtype=np.float32) for a in AUGS}
    patients = np.array([f"p{i}" for i in range(n)])
    feats = Features("medimageinsight", "mean", (d,), patients, xs, {a: np.ones(n, bool) for a in AUGS})
    folds = patient_folds(y, patients, n_folds=5, seed=seed)
    pos, moments, cfg = np.arange(n), image_moments(feats, np.arange(n)), BenchmarksConfig(probes=["lightgbm"])
    rows = []
    for k in range(n_folds_measured):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        for who in ("study", "ours"):
            load0, t, c = os.getloadavg()[0], time.perf_counter(), time.process_time()
            if who == "study":
                score, info = study_lightgbm_fold(xs, y, train, test), {}
            else:
                scaler = fold_scaler(moments, train)
                ts = build_train_set(feats, pos, train, y, patients, scaler=scaler)
                score, info = fit_predict("lightgbm", ts, standardized(xs["original"], test, scaler), cfg=cfg,
                                          seed=seed * 1000 + k)
            rows.append({"fold": k, "approach": who, "wall_s": time.perf_counter() - t,
                         "cpu_s": time.process_time() - c, "auroc": roc_auc_score(y[test], score),
                         "load_before": load0, "load_after": os.getloadavg()[0], **info})
            r = rows[-1]
            print(f"  fold {k} {who:5s}: {r['wall_s']:6.1f} s wall, {r['cpu_s']:6.1f} s CPU, AUROC {r['auroc']:.4f}"
                  f" (load {r['load_before']:.1f} -> {r['load_after']:.1f}){'  ' + str(info) if info else ''}",
                  flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_benchmarks"))
    ap.add_argument("--skip-logistic", action="store_true", help="only the LightGBM comparison (no store written)")
    ap.add_argument("--skip-lightgbm", action="store_true")
    ap.add_argument("--lgb-folds", type=int, default=5, help="folds of the 5 measured in the LightGBM comparison")
    ap.add_argument("--keep", action="store_true", help="reuse an existing synthetic store in --workdir")
    ap.add_argument("--workers", type=int, nargs="+", default=[0], help=(
        "logistic whole run once per value: 0 = in this process, N = a Dask LocalCluster of N workers "
        "(benchmarks.grid); the outputs of every run are checked equal to the first"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = args.workdir
    print(f"load average at start: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()}, nice {os.nice(0)})")
    if not args.skip_logistic:
        if not (args.keep and (root / "embeddings.zarr").exists()):
            shutil.rmtree(root, ignore_errors=True)
            t = time.perf_counter()
            make_inputs(root)
            print(f"synthetic inputs written in {time.perf_counter() - t:.1f} s (not part of the timings)")
        cohort, store = root / "cohort", root / "embeddings.zarr"
        cfg = BenchmarksConfig(probes=["logistic"])
        first = None
        for workers in args.workers:
            t = time.perf_counter()
            paths = run_benchmarks(cfg, cohort=cohort, store=store, out=root / f"out_logistic_w{workers}",
                                   workers=workers)
            t_run = time.perf_counter() - t
            results = pd.read_csv(paths["results"])
            same = "" if first is None else (
                "; results.csv equal to the first run" if results.equals(first) else "; results.csv DIFFERS")
            first = results if first is None else first
            print(f"logistic probe, whole run, workers={workers or 'in process'}: {t_run:.1f} s (target <= 120 s)"
                  f"{same}; load {os.getloadavg()[0]:.2f}")
        t_log = t_run
        res = results.query("metric == 'auroc' and ci_method == 'patient_bootstrap'")
        print(f"  timings of the last run {pd.read_json(paths['run'], typ='series')['timings']}")
        print(f"  mean AUROC per model: {res.groupby('model')['mean'].mean().round(3).to_dict()}")
        t_ref_task = reference_one_task(cohort, store, dataset="mimic", label="Edema", n_boot=cfg.bootstrap.n_boot)
        t_ref = t_ref_task * len(DATASETS) * len(LABELS)
        print(f"reference (naive) implementation: {t_ref_task:.1f} s for 1 of {len(DATASETS) * len(LABELS)} tasks "
              f"-> {t_ref:.0f} s extrapolated; speed-up {t_ref / t_log:.1f}x")
    if not args.skip_lightgbm:
        print(f"LightGBM, one label-model ({N_PER_DATASET} images x {len(AUGS)} augmentations x 1024-d), "
              f"{args.lgb_folds} of 5 folds, study's approach vs ours, interleaved:")
        df = lightgbm_vs_study(n_folds_measured=args.lgb_folds)
        tot = df.groupby("approach")[["wall_s", "cpu_s", "auroc"]].agg({"wall_s": "sum", "cpu_s": "sum",
                                                                        "auroc": "mean"})
        s, o = tot.loc["study"], tot.loc["ours"]
        print(f"  study: {s.wall_s:.1f} s wall, {s.cpu_s:.1f} s CPU, mean AUROC {s.auroc:.4f}")
        print(f"  ours:  {o.wall_s:.1f} s wall, {o.cpu_s:.1f} s CPU, mean AUROC {o.auroc:.4f}")
        print(f"  speed-up {s.wall_s / o.wall_s:.1f}x wall, {s.cpu_s / o.cpu_s:.1f}x CPU; AUROC difference "
              f"(ours - study) {o.auroc - s.auroc:+.4f}; load {df.load_before.min():.1f}-{df.load_after.max():.1f}")
        root.mkdir(parents=True, exist_ok=True)
        df.to_csv(root / "lightgbm_vs_study.csv", index=False)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
