"""Paired model comparisons on the same folds: a fold-stratified, patient-clustered DeLong test, the Nadeau-Bengio
corrected resampled t-test over per-fold AUROCs, and multiple-comparison correction (Holm).

Why not DeLong on the pooled out-of-fold scores: the pooled scores come from K different fold models (their
scales differ, so the pooled AUROC is not the reported mean over folds), and a patient's several images are not
independent. :func:`fold_clustered_delong` runs DeLong within each test fold (one fitted model per fold, folds
hold disjoint patients, so fold estimates are independent given the fitted models) with Obuchowski's (1997)
cluster variance (all images of a patient form one cluster), and averages the K differences. It estimates the
difference in mean-over-folds AUROC *of the fitted fold models* on new patients from the same population; it
does not cover the variability of refitting (see ``summary`` for the procedure interval).
"""
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


def clustered_delong(y: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs (S,) of ``scores`` (S, n) and their (S, S) covariance with patients ``groups`` (n,) as clusters.

    Obuchowski (1997, Biometrics 53:567), the nonparametric clustered-ROC variance: per cluster i the sums
    V10_i, V01_i of the DeLong placements of its positive / negative images; with M positives in I10 clusters,
    N negatives in I01 clusters and I clusters, S10 = I10/((I10-1) M) sum_i (V10_i - m_i A)(V10_i - m_i A)',
    S01 likewise, S11 = I/(I-1) sum_i (V10_i - m_i A)(V01_i - n_i A)', cov = S10/M + S01/N + (S11 + S11')/(M N).
    With one image per patient it equals DeLong's covariance. NaN where a class has fewer than 2 clusters.
    """
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_clusters = int(g.max()) + 1
    comps = [_placements(s[y], s[~y]) for s in scores]
    auc = np.array([c[0].mean() for c in comps])
    M, N = int(y.sum()), int((~y).sum())
    i10, i01 = len(np.unique(g[y])), len(np.unique(g[~y]))
    if min(i10, i01) < 2:
        return auc, np.full((len(scores), len(scores)), np.nan)
    d10 = np.vstack([np.bincount(g[y], weights=c[0] - a, minlength=n_clusters) for c, a in zip(comps, auc)])
    d01 = np.vstack([np.bincount(g[~y], weights=c[1] - a, minlength=n_clusters) for c, a in zip(comps, auc)])
    s10 = i10 / ((i10 - 1) * M) * d10 @ d10.T
    s01 = i01 / ((i01 - 1) * N) * d01 @ d01.T
    s11 = n_clusters / (n_clusters - 1) * d10 @ d01.T
    return auc, s10 / M + s01 / N + (s11 + s11.T) / (M * N)


def fold_clustered_delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, groups: np.ndarray,
                          folds: np.ndarray) -> dict[str, float]:
    """Difference in mean-over-folds AUROC (a - b) with its standard error: :func:`clustered_delong` within each
    fold, differences averaged, variances summed / K^2 (folds hold disjoint patients). Returns diff, se, z, p."""
    diffs, variances = [], []
    for k in np.unique(folds):
        rows = np.flatnonzero(np.asarray(folds) == k)
        auc, cov = clustered_delong(np.asarray(y)[rows], np.vstack([np.asarray(score_a)[rows],
                                                                     np.asarray(score_b)[rows]]),
                                    np.asarray(groups)[rows])
        diffs.append(auc[0] - auc[1])
        variances.append(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff, var = float(np.mean(diffs)), float(np.sum(variances)) / len(diffs) ** 2
    if not np.isfinite(var):
        return {"diff": diff, "se": float("nan"), "z": float("nan"), "p": float("nan")}
    if var <= 1e-15:
        return {"diff": diff, "se": 0.0, "z": 0.0, "p": 1.0 if abs(diff) < 1e-12 else 0.0}
    z = diff / np.sqrt(var)
    return {"diff": diff, "se": float(np.sqrt(var)), "z": float(z), "p": float(2 * stats.norm.sf(abs(z)))}


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
    """Family-wise adjusted p-values: Holm's step-down, Bonferroni, or unchanged ('none'). NaN (an undefined
    test) stays NaN and does not count in the family."""
    p = np.asarray(p, dtype=np.float64)
    finite = np.isfinite(p)
    if not finite.all():
        out = np.full_like(p, np.nan)
        out[finite] = adjust_pvalues(p[finite], method=method)
        return out
    if method == "none" or len(p) == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * len(p))
    order = np.argsort(p)
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(1.0, stepped)
    return out


def compare_models(oof: pd.DataFrame, folds: pd.DataFrame, *, correction: str = "holm", level: float = 0.95,
                   equivalence_level: float = 0.90) -> pd.DataFrame:
    """Every pair of models per (dataset, label, probe), on the same images and folds.

    ``oof``: dataset, label, model, probe, fold, image_id, patient_id, y_true, y_score; ``folds``: dataset, label,
    model, probe, fold, auroc, n_train, n_test. ``auroc_a``/``auroc_b``/``diff``: pooled out-of-fold AUROC
    (descriptive only); ``fold_mean_diff``: difference of the mean-over-folds AUROCs, tested by
    :func:`fold_clustered_delong` (``delong_*``; interval ``diff_ci_*`` at ``level``, ``equiv_ci_*`` at
    ``equivalence_level`` for the equivalence rule of model selection) and by the Nadeau-Bengio t-test (``nb_*``).
    Adjusted p-values are computed over all rows of each test.
    """
    rows = []
    for (ds, lab, probe), sub in oof.groupby(["dataset", "label", "probe"], sort=True):
        wide = sub.pivot_table(index="image_id", columns="model", values="y_score", aggfunc="first")
        first = sub.drop_duplicates("image_id").set_index("image_id").loc[wide.index]
        y, fold = first["y_true"].to_numpy(), first["fold"].to_numpy()
        groups = first["patient_id"].to_numpy() if "patient_id" in first else wide.index.to_numpy()
        clustered = len(np.unique(groups)) < len(groups)
        per_fold = folds[(folds.dataset == ds) & (folds.label == lab) & (folds.probe == probe)]
        fold_auc = per_fold.pivot_table(index="fold", columns="model", values="auroc")
        sizes = per_fold.groupby("fold")[["n_train", "n_test"]].first().mean()
        for a, b in combinations(sorted(wide.columns), 2):
            both = wide[[a, b]].notna().all(axis=1).to_numpy()
            pooled = delong_test(y[both], wide[a].to_numpy()[both], wide[b].to_numpy()[both])
            dl = fold_clustered_delong(y[both], wide[a].to_numpy()[both], wide[b].to_numpy()[both], groups[both],
                                       fold[both])
            nb = corrected_ttest((fold_auc[a] - fold_auc[b]).to_numpy(), n_train=sizes.n_train,
                                 n_test=sizes.n_test)
            half, half_eq = (stats.norm.ppf((1 + lv) / 2) * dl["se"] for lv in (level, equivalence_level))
            rows.append({"dataset": ds, "label": lab, "probe": probe, "model_a": a, "model_b": b,
                         "auroc_a": pooled["auc_a"], "auroc_b": pooled["auc_b"],
                         "diff": pooled["auc_a"] - pooled["auc_b"],
                         "fold_mean_diff": float((fold_auc[a] - fold_auc[b]).mean()),
                         "diff_ci_low": dl["diff"] - half, "diff_ci_high": dl["diff"] + half,
                         "equiv_ci_low": dl["diff"] - half_eq, "equiv_ci_high": dl["diff"] + half_eq,
                         "delong_z": dl["z"], "delong_p": dl["p"], "nb_t": nb["t"], "nb_p": nb["p"],
                         "n_images": int(both.sum()), "n_patients": int(len(np.unique(groups[both]))),
                         "delong_method": "fold-stratified DeLong, " + (
                             "patient-clustered (Obuchowski 1997)" if clustered
                             else "one image per patient (clustering not needed)")})
    cols = ["dataset", "label", "probe", "model_a", "model_b", "auroc_a", "auroc_b", "diff", "fold_mean_diff",
            "diff_ci_low", "diff_ci_high", "equiv_ci_low", "equiv_ci_high", "delong_z", "delong_p", "delong_p_adj",
            "nb_t", "nb_p", "nb_p_adj", "n_images", "n_patients", "delong_method", "correction"]
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=cols)
    out["delong_p_adj"] = adjust_pvalues(out["delong_p"].to_numpy(), method=correction)
    out["nb_p_adj"] = adjust_pvalues(out["nb_p"].to_numpy(), method=correction)
    out["correction"] = correction
    return out[cols]
