"""Two optional studies (the Emory study's next steps).

* ``label_noise_study``: (a) one label mislabelled -- flip ``noise_fraction`` of a label's 1/0 values
  (5 seeded repeats) and see whether its association with the subtypes (Cramer's V, most-enriched
  subtype) survives; (b) one input feature corrupted -- permute the highest-variance input dimension
  across ``noise_fraction`` of the points, recluster at the chosen resolution, ARI to the original.
* ``cross_dataset_study``: cluster each dataset alone (same config and resolution) and compare with
  the pooled partition on that dataset's points (ARI); report how much the pooled subtypes are
  explained by the dataset (adjusted mutual information), a batch-effect warning sign.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from .config import ClusteringConfig
from .knn import pca_reduce
from .stability import recluster

log = logging.getLogger(__name__)

N_REPEATS = 5


def cramers_v(a: pd.Series, b: pd.Series) -> float:
    """Cramer's V between two categorical series (rows with missing values dropped)."""
    table = pd.crosstab(a, b).to_numpy()
    if min(table.shape) < 2:
        return float("nan")
    chi2 = stats.chi2_contingency(table, correction=False).statistic
    return float(np.sqrt(chi2 / table.sum() / (min(table.shape) - 1)))


def _most_enriched(subtype: pd.Series, y: pd.Series) -> str:
    return str(y.groupby(subtype).mean().idxmax())


def _rep(x: np.ndarray, cfg: ClusteringConfig) -> np.ndarray:
    if cfg.knn.pca_dims is not None and x.shape[1] > cfg.knn.pca_dims and len(x) > cfg.knn.pca_dims + 1:
        return pca_reduce(x, n_components=cfg.knn.pca_dims, seed=cfg.seed)[0]
    return x


def label_noise_study(x: np.ndarray, units: pd.DataFrame, cfg: ClusteringConfig, *, labels: np.ndarray,
                      resolution: float) -> pd.DataFrame:
    """Rows per corrupted label / feature: the clean association, the corrupted one, and agreement."""
    rng = np.random.default_rng(cfg.seed + 31)
    frac = cfg.studies.noise_fraction
    cols = cfg.studies.noise_columns or [c for c in units.columns if c.startswith("label_")]
    rows = []
    for col in cols:
        if col not in units.columns:
            raise ValueError(f"studies.noise_columns lists {col!r}, which is not a manifest/clinical column")
        y = pd.to_numeric(units[col], errors="coerce")
        ok = y.isin([0, 1])
        if ok.sum() < 10 or y[ok].nunique() < 2:
            continue
        sub, yy = units.subtype[ok], y[ok].astype(int)
        clean_v, clean_top = cramers_v(sub, yy), _most_enriched(sub, yy)
        vs, same = [], []
        for _ in range(N_REPEATS):
            flip = rng.random(len(yy)) < frac
            noisy = yy.where(~flip, 1 - yy)
            vs.append(cramers_v(sub, noisy))
            same.append(_most_enriched(sub, noisy) == clean_top)
        rows.append({"corrupted": col, "kind": "label flipped", "fraction": frac, "n": int(ok.sum()),
                     "clean_cramers_v": clean_v, "noisy_cramers_v_mean": float(np.mean(vs)),
                     "same_most_enriched_subtype": float(np.mean(same)), "ari_vs_clean": np.nan})
    rep = _rep(x, cfg)
    dim = int(np.argmax(rep.var(0)))
    aris = []
    for r in range(N_REPEATS):
        noisy = rep.copy()
        idx = np.flatnonzero(rng.random(len(rep)) < frac)
        noisy[idx, dim] = noisy[rng.permutation(idx), dim]
        lab = recluster(noisy, knn_cfg=cfg.knn, leiden_cfg=cfg.leiden, resolution=resolution, seed=cfg.seed + r)
        aris.append(adjusted_rand_score(labels, lab))
    rows.append({"corrupted": f"input dim {dim} (highest variance)", "kind": "feature permuted", "fraction": frac,
                 "n": len(rep), "ari_vs_clean": float(np.mean(aris)), "ari_vs_clean_min": float(np.min(aris))})
    return pd.DataFrame(rows)


def cross_dataset_study(x: np.ndarray, units: pd.DataFrame, cfg: ClusteringConfig, *, labels: np.ndarray,
                        resolution: float) -> pd.DataFrame:
    """Per dataset: subtypes found alone vs pooled (ARI), plus AMI(pooled subtype, dataset)."""
    if "dataset" not in units.columns or units.dataset.nunique() < 2:
        return pd.DataFrame([{"dataset": "-", "note": "only one dataset: nothing to compare"}])
    rows = [{"dataset": "pooled", "n": len(units), "n_subtypes": int(labels.max() + 1),
             "ami_subtype_vs_dataset": float(adjusted_mutual_info_score(units.dataset.astype(str), labels))}]
    for ds, idx in units.groupby("dataset").indices.items():
        if len(idx) <= max(3 * cfg.knn.k, 30):
            rows.append({"dataset": ds, "n": len(idx), "note": f"too few points for k={cfg.knn.k}"})
            continue
        alone = recluster(_rep(x[idx], cfg), knn_cfg=cfg.knn, leiden_cfg=cfg.leiden, resolution=resolution,
                          seed=cfg.seed)
        rows.append({"dataset": ds, "n": len(idx), "n_subtypes": int(alone.max() + 1),
                     "ari_alone_vs_pooled": float(adjusted_rand_score(labels[idx], alone))})
    return pd.DataFrame(rows)
