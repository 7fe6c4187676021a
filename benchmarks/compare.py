"""Paired model comparisons on the same folds: DeLong's test on pooled out-of-fold scores, the Nadeau-Bengio
corrected resampled t-test over per-fold AUROCs, and multiple-comparison correction (Holm)."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong structural components via midranks (Sun & Xu 2014): V10 (m,) and V01 (n,) for one score."""
    m, n = len(pos), len(neg)
    r_all = stats.rankdata(np.r_[pos, neg])
    v10 = (r_all[:m] - stats.rankdata(pos)) / n
    v01 = 1.0 - (r_all[m:] - stats.rankdata(neg)) / m
    return v10, v01


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """Two-sided DeLong test of AUROC(a) == AUROC(b) on the same images; returns auc_a, auc_b, z, p."""
    y = np.asarray(y).astype(bool)
    comps = [_placements(np.asarray(s)[y], np.asarray(s)[~y]) for s in (score_a, score_b)]
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    m, n = v10.shape[1], v01.shape[1]
    auc = v10.mean(axis=1)
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = auc[0] - auc[1]
    if var <= 1e-15:
        z, p = 0.0, 1.0 if abs(diff) < 1e-12 else 0.0
    else:
        z = diff / np.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "z": float(z), "p": float(p)}


def corrected_ttest(diffs: np.ndarray, *, n_train: float, n_test: float) -> dict[str, float]:
    """Nadeau & Bengio (2003) corrected resampled t-test over K per-fold differences.

    Variance (1/K + n_test/n_train) * s^2 instead of s^2/K accounts for overlapping training sets;
    t has K-1 degrees of freedom. ``n_train``/``n_test``: mean numbers of training/test images per fold.
    """
    d = np.asarray(diffs, dtype=np.float64)
    k = len(d)
    var = (1.0 / k + n_test / n_train) * d.var(ddof=1)
    if var <= 1e-15:
        return {"t": 0.0, "p": 1.0 if abs(d.mean()) < 1e-12 else 0.0}
    t = d.mean() / np.sqrt(var)
    return {"t": float(t), "p": float(2 * stats.t.sf(abs(t), k - 1))}


def adjust_pvalues(p: np.ndarray, *, method: str = "holm") -> np.ndarray:
    """Family-wise adjusted p-values: Holm's step-down, Bonferroni, or unchanged ('none')."""
    p = np.asarray(p, dtype=np.float64)
    if method == "none" or len(p) == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * len(p))
    order = np.argsort(p)
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(1.0, stepped)
    return out


def compare_models(oof: pd.DataFrame, folds: pd.DataFrame, *, correction: str = "holm") -> pd.DataFrame:
    """Every pair of models per (dataset, label, probe), on the same images and folds.

    ``oof``: dataset, label, model, probe, fold, image_id, y_true, y_score; ``folds``: dataset, label, model,
    probe, fold, auroc, n_train, n_test. Adjusted p-values are computed over all rows of each test.
    """
    rows = []
    for (ds, lab, probe), sub in oof.groupby(["dataset", "label", "probe"], sort=True):
        wide = sub.pivot_table(index="image_id", columns="model", values="y_score", aggfunc="first")
        y = sub.drop_duplicates("image_id").set_index("image_id").loc[wide.index, "y_true"].to_numpy()
        per_fold = folds[(folds.dataset == ds) & (folds.label == lab) & (folds.probe == probe)]
        fold_auc = per_fold.pivot_table(index="fold", columns="model", values="auroc")
        sizes = per_fold.groupby("fold")[["n_train", "n_test"]].first().mean()
        for a, b in combinations(sorted(wide.columns), 2):
            both = wide[[a, b]].notna().all(axis=1).to_numpy()
            dl = delong_test(y[both], wide[a].to_numpy()[both], wide[b].to_numpy()[both])
            nb = corrected_ttest((fold_auc[a] - fold_auc[b]).to_numpy(), n_train=sizes.n_train,
                                 n_test=sizes.n_test)
            rows.append({"dataset": ds, "label": lab, "probe": probe, "model_a": a, "model_b": b,
                         "auroc_a": dl["auc_a"], "auroc_b": dl["auc_b"], "diff": dl["auc_a"] - dl["auc_b"],
                         "fold_mean_diff": float((fold_auc[a] - fold_auc[b]).mean()),
                         "delong_z": dl["z"], "delong_p": dl["p"], "nb_t": nb["t"], "nb_p": nb["p"],
                         "n_images": int(both.sum())})
    cols = ["dataset", "label", "probe", "model_a", "model_b", "auroc_a", "auroc_b", "diff", "fold_mean_diff",
            "delong_z", "delong_p", "delong_p_adj", "nb_t", "nb_p", "nb_p_adj", "n_images", "correction"]
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=cols)
    out["delong_p_adj"] = adjust_pvalues(out["delong_p"].to_numpy(), method=correction)
    out["nb_p_adj"] = adjust_pvalues(out["nb_p"].to_numpy(), method=correction)
    out["correction"] = correction
    return out[cols]
