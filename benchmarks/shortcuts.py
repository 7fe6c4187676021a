"""Shortcut and confounding checks: what else the embeddings predict, findings within view strata, the finding
predicted by its confounder alone, and leave-one-source-out.

* **Confounder probes**: per model, the patient-grouped K-fold AUROC with which the embedding predicts each
  binary confounder over the sampled images: ``view_AP`` (AP or AP Supine vs PA), ``sex_M``, ``age_over_60``
  and ``source`` (the cohort's ``source`` column when it has two or more values, else ``dataset``; one level
  vs the rest). Same probe, augmentations and intervals as the main benchmark (``benchmarks.summary``).
* **View strata**: the main out-of-fold finding scores, AUROC within AP and within PA images
  (patient bootstrap), where a stratum holds at least ``MIN_STRATUM`` images of each class.
* **Confounder alone**: the AUROC of each confounder used as the score for the finding
  (max(a, 1 - a): either direction). A finding whose model AUROC interval reaches down to it is predicted
  *no better than its confounder*; the report says so in words.
* **Leave-one-source-out**: per label, pooled over datasets, train on every source but one, test on that
  source's originals (patient bootstrap interval); a held-out source with one class is reported as not
  estimable.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cohorts.folder import read_cohort_folder

from .config import BenchmarksConfig
from .crossval import Task, build_train_set, cross_validate, fold_scaler, image_moments, standardized
from .data import Features
from .metrics import binary_metrics, cluster_bootstrap
from .probes import fit_predict
from .splits import SplitError, patient_folds
from .summary import summarize

log = logging.getLogger(__name__)

CONFOUNDERS = ("view_AP", "sex_M", "age_over_60", "source")
MIN_STRATUM = 5


def confounders(cohort: Path, image_ids: np.ndarray) -> tuple[pd.DataFrame, str]:
    """Per image (index ``image_id``): the :data:`CONFOUNDERS` as 0/1 floats (NaN unknown) and ``source_name``;
    returns the table and a description of the ``source`` level coded 1."""
    folder = read_cohort_folder(cohort)
    manifest = folder.manifest.set_index("image_id").reindex(image_ids)
    clinical = folder.clinical.set_index("patient_id") if folder.clinical is not None else None

    def column(name: str) -> pd.Series:
        values = manifest[name] if name in manifest else pd.Series(np.nan, index=manifest.index, dtype=object)
        if clinical is not None and name in clinical:
            values = values.where(values.notna(), manifest["patient_id"].map(clinical[name]))   # no dtype guessing
        return values

    def flag(values: pd.Series, one: list[str], zero: list[str]) -> np.ndarray:
        v = values.astype("string")
        return np.where(v.isin(one).fillna(False), 1.0, np.where(v.isin(zero).fillna(False), 0.0, np.nan))

    view = manifest["view"].astype("string")
    sex = column("sex").astype("string").str.upper().str[0]
    age = pd.to_numeric(column("age"), errors="coerce")
    src = manifest["source"] if "source" in manifest and manifest["source"].nunique() > 1 else manifest["dataset"]
    src = src.astype("string")
    level = src.value_counts().index[0] if src.notna().any() else None
    table = pd.DataFrame({
        "view_AP": flag(view, ["AP", "AP Supine"], ["PA"]), "sex_M": flag(sex, ["M"], ["F"]),
        "age_over_60": np.where(age.isna(), np.nan, (age > 60).astype(float)),
        "source": flag(src, [level], [v for v in src.dropna().unique() if v != level]),
        "source_name": src.to_numpy(), "view": view.to_numpy()}, index=manifest.index)
    return table, f"source = {level} ({'source' if 'source' in manifest and manifest['source'].nunique() > 1 else 'dataset'} column)"


def confounder_probes(sample: pd.DataFrame, features: list[Features], conf: pd.DataFrame, *,
                      cfg: BenchmarksConfig) -> pd.DataFrame:
    """``results.csv``-shaped rows (label = confounder, dataset = ``confounders``) of each model predicting each
    confounder over the sampled images (one row per image), with the first configured probe."""
    images = sample.drop_duplicates("image_id")
    oofs, folds = [], []
    for name in CONFOUNDERS:
        y = conf.loc[images["image_id"], name].to_numpy()
        known = ~np.isnan(y)
        ids, patients, yk = images["image_id"].to_numpy()[known], images["patient_id"].to_numpy()[known], \
            y[known].astype(np.int64)
        try:
            fold = patient_folds(yk, patients, n_folds=cfg.n_folds, seed=cfg.seed)
        except SplitError as exc:
            log.info("confounder %s not probed: %s", name, exc)
            continue
        task = Task("confounders", name, ids, patients, yk, fold)
        for f in tqdm(features, desc=f"confounder {name}", leave=False):
            o, k = cross_validate(task, f, cfg.probes[0], cfg=cfg)
            oofs.append(o)
            folds.append(k)
    if not oofs:
        return pd.DataFrame()
    return summarize(pd.concat(oofs, ignore_index=True), pd.concat(folds, ignore_index=True), cfg=cfg)


def view_strata(oof: pd.DataFrame, conf: pd.DataFrame, *, cfg: BenchmarksConfig) -> pd.DataFrame:
    """AUROC of the main out-of-fold scores within AP and within PA images, per (dataset, label, model, probe)."""
    rows = []
    strata = np.where(conf["view_AP"] == 1, "AP", np.where(conf["view_AP"] == 0, "PA", ""))
    stratum = pd.Series(strata, index=conf.index)
    for key, sub in oof.groupby(["dataset", "label", "model", "probe"], sort=True):
        s = stratum.reindex(sub["image_id"]).to_numpy()
        for level in ("AP", "PA"):
            part = sub[s == level]
            n_pos, n_neg = int(part["y_true"].sum()), int((1 - part["y_true"]).sum())
            row = dict(zip(["dataset", "label", "model", "probe"], key)) | {"view": level, "n_positive": n_pos,
                                                                             "n_negative": n_neg}
            if min(n_pos, n_neg) >= MIN_STRATUM:
                y, score = part["y_true"].to_numpy(), part["y_score"].to_numpy()
                ci = cluster_bootstrap(y, score, part["patient_id"].to_numpy(), n_boot=cfg.bootstrap.n_boot,
                                       level=cfg.bootstrap.level, seed=cfg.seed)
                row |= {"auroc": float(binary_metrics(y, score)["auroc"][0]), "ci_low": ci["auroc"][0],
                        "ci_high": ci["auroc"][1]}
            rows.append(row)
    return pd.DataFrame(rows)


def confounder_alone(sample: pd.DataFrame, conf: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, label, confounder): AUROC of the confounder as the finding's score, max(a, 1 - a)."""
    rows = []
    for (ds, lab), sub in sample.groupby(["dataset", "label"], sort=True):
        for name in CONFOUNDERS:
            c = conf.loc[sub["image_id"], name].to_numpy()
            known = ~np.isnan(c)
            y = sub["y"].to_numpy()[known]
            if known.sum() == 0 or y.min() == y.max() or np.unique(c[known]).size < 2:
                continue   # unknown, one class, or a confounder constant within the task (AUROC 0.5 says nothing)
            a = float(binary_metrics(y, c[known])["auroc"][0])
            rows.append({"dataset": ds, "label": lab, "confounder": name, "auroc_alone": max(a, 1 - a),
                         "direction": "higher in positives" if a >= 0.5 else "lower in positives",
                         "n_known": int(known.sum())})
    return pd.DataFrame(rows, columns=["dataset", "label", "confounder", "auroc_alone", "direction", "n_known"])


def no_better_than_confounder(results: pd.DataFrame, alone: pd.DataFrame, *, probe: str) -> list[str]:
    """Sentences for every (dataset, label, model) whose finding AUROC interval (patient bootstrap) reaches down to
    the AUROC of a confounder alone."""
    auroc = results[(results.metric == "auroc") & (results.probe == probe) & (results.ci_method == "patient_bootstrap")]
    merged = auroc.merge(alone, on=["dataset", "label"])
    hits = merged[merged["ci_low"] <= merged["auroc_alone"]]
    return [f"{r.dataset}/{r.label}: {r.model} ({probe}) AUROC {r['mean']:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] is "
            f"no better than {r.confounder} alone ({r.auroc_alone:.3f}, {r.direction})"
            for _, r in hits.sort_values(["dataset", "label", "model", "confounder"]).iterrows()]


def leave_one_source_out(sample: pd.DataFrame, features: list[Features], conf: pd.DataFrame, *,
                         cfg: BenchmarksConfig) -> pd.DataFrame:
    """Per label (pooled over datasets) and held-out source: train on the other sources' sampled images (with
    augmentations), AUROC on the held-out source's originals with a patient bootstrap interval."""
    probe, rows = cfg.probes[0], []
    for lab, sub in sample.groupby("label", sort=True):
        sub = sub.drop_duplicates("image_id")
        source = conf.loc[sub["image_id"], "source_name"].to_numpy()
        levels = sorted({s for s in source if isinstance(s, str)})
        if len(levels) < 2:
            continue
        task = Task("all", lab, sub["image_id"].to_numpy(), sub["patient_id"].to_numpy(), sub["y"].to_numpy(),
                    np.zeros(len(sub), dtype=np.int64))
        for held in levels:
            test, train = np.flatnonzero(source == held), np.flatnonzero(source != held)
            base = {"label": lab, "held_out": held, "probe": probe, "n_train": len(train), "n_test": len(test),
                    "test_positive": int(task.y[test].sum())}
            if len(set(task.y[test])) < 2 or len(set(task.y[train])) < 2:
                reason = "held-out source has one class" if len(set(task.y[test])) < 2 else "training sources have one class"
                rows += [base | {"model": f.model, "note": f"not estimable: {reason}"} for f in features]
                continue
            for f in features:
                pos = task.positions(f)
                scaler = fold_scaler(image_moments(f, pos), train)
                ts = build_train_set(f, pos, train, task.y, task.patients, scaler=scaler)
                score, _ = fit_predict(probe, ts, standardized(f.X["original"], pos[test], scaler), cfg=cfg,
                                       seed=cfg.seed)
                ci = cluster_bootstrap(task.y[test], score, task.patients[test], n_boot=cfg.bootstrap.n_boot,
                                       level=cfg.bootstrap.level, seed=cfg.seed)
                rows.append(base | {"model": f.model, "auroc": float(binary_metrics(task.y[test], score)["auroc"][0]),
                                    "ci_low": ci["auroc"][0], "ci_high": ci["auroc"][1], "note": ""})
    return pd.DataFrame(rows)


def _cell(mean: float, lo: float, hi: float) -> str:
    return "" if pd.isna(mean) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def run_shortcut_checks(sample: pd.DataFrame, features: list[Features], oof: pd.DataFrame, results: pd.DataFrame, *,
                        cohort: Path, out: Path, cfg: BenchmarksConfig) -> tuple[dict[str, Path], list[str]]:
    """Run every check of this module; write ``shortcuts.csv`` (confounder probes, results.csv-shaped),
    ``view_strata.csv``, ``confounder_alone.csv``, ``loso.csv``; return the paths and report.md sections."""
    from .report import _df_table

    conf, level = confounders(cohort, sample["image_id"].unique())
    probes = confounder_probes(sample, features, conf, cfg=cfg)
    strata = view_strata(oof[oof.probe == cfg.probes[0]], conf, cfg=cfg)
    alone = confounder_alone(sample, conf)
    loso = leave_one_source_out(sample, features, conf, cfg=cfg)
    paths = {"shortcuts": out / "shortcuts.csv", "view_strata": out / "view_strata.csv",
             "confounder_alone": out / "confounder_alone.csv", "loso": out / "loso.csv"}
    for key, df in (("shortcuts", probes), ("view_strata", strata), ("confounder_alone", alone), ("loso", loso)):
        df.to_csv(paths[key], index=False)
    parts = ["## Shortcuts and confounders",
             f"How well each embedding predicts a confounder ({cfg.probes[0]} probe, {cfg.n_folds}-fold patient-grouped "
             f"CV over the sampled images; {level}). An AUROC near 1 means the confounder is written in the "
             "embedding, so a finding that travels with it can be predicted through it."]
    if len(probes):
        auroc = probes[(probes.metric == "auroc") & (probes.ci_method == "patient_bootstrap")]
        table = auroc.assign(cell=[_cell(m, lo, hi) for m, lo, hi in auroc[["mean", "ci_low", "ci_high"]].to_numpy()])
        parts.append(_df_table(table.pivot_table(index="model", columns="label", values="cell", aggfunc="first")
                               .reset_index()))
    words = no_better_than_confounder(results, alone, probe=cfg.probes[0])
    parts += ["**Findings predicted no better than a confounder alone** (the model's AUROC interval reaches down to "
              "the AUROC of the confounder used as the score):",
              "\n".join(f"- {w}" for w in words) if words else "_none_",
              "Confounder alone as the finding's score (AUROC, either direction):",
              _df_table(alone, floatfmt="{:.3f}")]
    if len(strata):
        s = strata.assign(cell=[_cell(m, lo, hi) for m, lo, hi in
                                strata.reindex(columns=["auroc", "ci_low", "ci_high"]).to_numpy()])
        parts += [f"Finding AUROC within each view ({cfg.probes[0]} probe, patient bootstrap; empty: fewer than "
                  f"{MIN_STRATUM} images of a class in the stratum):",
                  _df_table(s.pivot_table(index=["dataset", "label", "model"], columns="view", values="cell",
                                          aggfunc="first").reset_index())]
    parts += ["## Leave-one-source-out",
              "Per label, pooled over datasets: train on every other source, test on the held-out one (originals, "
              "patient bootstrap interval)."]
    if len(loso):
        cells = loso.assign(auroc=[_cell(m, lo, hi) for m, lo, hi in
                                   loso.reindex(columns=["auroc", "ci_low", "ci_high"]).to_numpy()])
        parts.append(_df_table(cells[["label", "held_out", "model", "auroc", "n_train", "n_test", "test_positive",
                                      "note"]]))
    else:
        parts.append("_one source only: not applicable_")
    return paths, parts
