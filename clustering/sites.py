"""Site diagnostics: do the subtypes follow the sites (dataset, hospital, view, sex) instead of the patients?

Written to ``site_diagnostics.json`` (one entry per site column) and shown in both reports:

* composition: subtype x level counts (table) and a stacked bar figure;
* AMI and ARI of the subtypes against the column;
* ``classifier``: AUROC (macro one-vs-rest for more than two levels) of a logistic regression predicting
  the column from the clustered representation, out of fold over patient-grouped stratified folds
  (a patient's images never straddle folds); 0.5 = the latent does not know the site;
* ``mixing``: iLISI on the kNN graph (the inverse Simpson index of the levels among each point and
  its k neighbours, Korsunsky 2019 without the perplexity weights), as a score
  ``(mean iLISI - 1) / (expected - 1)`` where ``expected`` is the mean iLISI of the same graph with the
  levels randomly permuted (seeded; k + 1 draws per neighbourhood stay below the cohort's inverse
  Simpson index, so this is the fair "fully mixed" value): 1 = neighbourhoods as mixed as chance,
  0 = every neighbourhood from one level;
* ``replication``: every level with at least ``sites.min_patients`` units is clustered alone by the
  same method (Leiden at the chosen resolution on a kNN graph rebuilt on those units, or the mixture
  with the chosen class count), its clusters matched one-to-one to the pooled subtypes (Hungarian on
  the overlap), ``agreement`` = fraction of its units whose matched cluster is their pooled subtype;
* ``leave_one_out``: a cosine kNN classifier (k of the graph) trained on the other levels' units and
  their pooled subtypes predicts each level's units (a seeded sample of ``sites.loo_max_queries`` of them
  in larger levels, ``n_predicted``); ``accuracy`` and ``balanced_accuracy`` against the pooled subtypes
  (a subtype found only at one site cannot be predicted from the others).

Per-patient values: ``dataset`` and ``site`` are constant per patient by contract; ``view`` may differ
between a patient's images, and a patient gets the view of most of its images, ties to its earliest
image (by ``offset_days``, then ``acquired_at``, then manifest order); the number of patients whose
images disagree is recorded. Image-level clustering uses each image's own value.
"""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, balanced_accuracy_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from .config import SitesConfig  # noqa: E402
from .figures import save_figure  # noqa: E402
from .knn import nearest_in  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = ("dataset", "site", "view", "sex")


@dataclass
class SiteColumns:
    """Per-unit site values ``frame`` (n rows, one column each) and how each was resolved."""

    frame: pd.DataFrame
    how: dict[str, str]


def _mode_per_patient(manifest: pd.DataFrame, col: str) -> tuple[pd.Series, int]:
    """Per patient: the most frequent value of ``col``, ties to the earliest image; and how many patients disagree."""
    order = [c for c in ("offset_days", "acquired_at") if c in manifest.columns]
    m = manifest[["patient_id", col] + order].dropna(subset=[col]).reset_index(drop=True)
    m = m.assign(_pos=np.arange(len(m)), **{col: m[col].astype(str)})
    m = m.sort_values(order + ["_pos"], na_position="last", kind="stable")
    counts = m.groupby(["patient_id", col], sort=False).agg(n=("_pos", "size"), first=("_pos", "min")).reset_index()
    first_rank = m.drop_duplicates(["patient_id", col]).assign(rank=lambda d: np.arange(len(d)))[["patient_id", col, "rank"]]
    counts = counts.merge(first_rank, on=["patient_id", col]).sort_values(["patient_id", "n", "rank"],
                                                                         ascending=[True, False, True])
    disagree = int((counts.groupby("patient_id").size() > 1).sum())
    return counts.drop_duplicates("patient_id").set_index("patient_id")[col], disagree


def site_columns(units: pd.DataFrame, manifest: pd.DataFrame, *, columns: list[str] | None) -> SiteColumns:
    """Resolve the site columns for each unit (module doc); unknown requested columns are errors."""
    wanted = list(columns) if columns is not None else [c for c in DEFAULT_COLUMNS
                                                        if c in manifest.columns or c in units.columns]
    missing = [c for c in wanted if c not in manifest.columns and c not in units.columns]
    if missing:
        raise ValueError(f"sites.columns lists {missing}, which are neither manifest nor clinical columns; fix the config")
    frame, how = pd.DataFrame(index=units.index), {}
    for col in wanted:
        if col in manifest.columns and "image_id" in units.columns:
            frame[col] = units.image_id.map(manifest.set_index("image_id")[col]).astype("string")
            how[col] = "the image's own value (image-level clustering)"
        elif col in manifest.columns:
            per_patient, disagree = _mode_per_patient(manifest, col)
            frame[col] = units.patient_id.map(per_patient).astype("string")
            how[col] = ("the value of most of the patient's images, ties to the earliest image; "
                        f"{disagree} patient(s) have images that disagree")
        else:
            frame[col] = units[col].astype("string")
            how[col] = "clinical table (one value per patient)"
    return SiteColumns(frame, how)


def ilisi(indices: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per point ``(n,)`` inverse Simpson index of ``levels`` among itself and its neighbours ``indices`` ``(n, k)``;
    NaN where the point's level is unknown."""
    codes, uniq = pd.factorize(pd.Series(levels), use_na_sentinel=True)
    neigh = np.hstack([np.arange(len(codes))[:, None], indices])
    nc = codes[neigh]
    counts = np.stack([(nc == c).sum(1) for c in range(len(uniq))], axis=1).astype(float)
    total = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        simpson = ((counts / total[:, None]) ** 2).sum(1)
        return np.where((total > 0) & (codes >= 0), 1.0 / simpson, np.nan)


def mixing(indices: np.ndarray, levels: np.ndarray, *, seed: int) -> dict[str, float | int | None]:
    """Mean iLISI, its value with the levels permuted (chance) and the score between (module doc)."""
    observed = float(np.nanmean(ilisi(indices, levels)))
    expected = float(np.nanmean(ilisi(indices, np.random.default_rng(seed).permutation(levels))))
    score = float(np.clip((observed - 1) / (expected - 1), 0, 1)) if expected > 1 else None
    return {"ilisi_mean": observed, "ilisi_chance": expected, "score": score, "k": int(indices.shape[1])}


def site_auroc(x: np.ndarray, levels: pd.Series, groups: np.ndarray, *, folds: int, seed: int) -> dict[str, object]:
    """Out-of-fold AUROC of a logistic regression predicting ``levels`` from ``x`` ``(n, d)``, patient-grouped folds."""
    ok = levels.notna().to_numpy()
    counts = levels[ok].value_counts()
    keep = counts[counts >= folds].index
    ok &= levels.isin(keep).to_numpy()
    if len(keep) < 2:
        return {"auroc": None, "note": f"fewer than 2 levels with >= {folds} units: no classifier"}
    y, _ = pd.factorize(levels[ok])
    xo, go = x[ok], groups[ok]
    n_folds = int(min(folds, pd.Series(go).groupby(y).nunique().min()))
    if n_folds < 2:
        return {"auroc": None, "note": "a level has a single patient: no patient-grouped folds"}
    proba = np.zeros((len(y), len(keep)))
    one_row_each = pd.Series(go).is_unique          # patient-level units: grouping is a no-op, and scikit-learn's
    cv = (StratifiedKFold if one_row_each else StratifiedGroupKFold)(   # grouped splitter takes ~25 s at 100k
        n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in cv.split(xo, y, None if one_row_each else go):   # StratifiedKFold warns about groups
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        model.fit(xo[train], y[train])
        proba[np.ix_(test, model.classes_)] = model.predict_proba(xo[test])
    auroc = (roc_auc_score(y, proba[:, 1]) if len(keep) == 2
             else roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    return {"auroc": float(auroc), "folds": n_folds, "n": int(ok.sum()), "levels": [str(k) for k in keep],
            "model": "standardised logistic regression, out of fold" + (", macro one-vs-rest" if len(keep) > 2 else "")}


def matched_agreement(pooled: np.ndarray, alone: np.ndarray) -> float:
    """Fraction of points whose ``alone`` cluster, matched one-to-one to a pooled cluster by overlap, is theirs."""
    table = pd.crosstab(pooled, alone)
    rows, cols = linear_sum_assignment(-table.to_numpy())
    return float(table.to_numpy()[rows, cols].sum() / len(pooled))


def replication(x: np.ndarray, labels: np.ndarray, levels: pd.Series, *, cluster: Callable[[np.ndarray, int], np.ndarray],
                min_units: int, seed: int) -> list[dict[str, object]]:
    """Each level with >= ``min_units`` units clustered alone, compared with the pooled ``labels`` on its units."""
    rows = []
    for level in sorted(levels.dropna().unique()):
        idx = np.flatnonzero((levels == level).fillna(False).to_numpy())
        if len(idx) < min_units:
            rows.append({"level": str(level), "n": int(len(idx)), "note": f"fewer than {min_units} units: not clustered alone"})
            continue
        alone = cluster(x[idx], seed)
        rows.append({"level": str(level), "n": int(len(idx)), "n_clusters_alone": int(len(np.unique(alone))),
                     "n_pooled_subtypes_here": int(len(np.unique(labels[idx]))),
                     "agreement": matched_agreement(labels[idx], alone),
                     "ari": float(adjusted_rand_score(labels[idx], alone))})
    return rows


def _knn_vote(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, k: int) -> np.ndarray:
    """Majority label of each test row's ``k`` cosine-nearest training rows (ties: the smaller label), as
    scikit-learn's uniform ``KNeighborsClassifier`` votes, with the exact blocked search of the kNN graph."""
    votes = y_train[nearest_in(x_train, x_test, k=k)]
    counts = np.zeros((len(votes), int(y_train.max()) + 1), np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(votes)), k), votes.ravel()), 1)
    return counts.argmax(1)


def leave_one_out(x: np.ndarray, labels: np.ndarray, levels: pd.Series, *, k: int, max_queries: int,
                  seed: int) -> list[dict[str, object]]:
    """Per level: a cosine kNN classifier trained on the other levels predicts this level's pooled subtypes, for
    all its units or a seeded sample of ``max_queries`` of them (the exact search costs queries x training units:
    every unit of a million-point cohort would take hours; 5,000 give the accuracy within about 1.4 points)."""
    rows = []
    known = levels.notna().to_numpy()
    rng = np.random.default_rng(seed + 31)
    for level in levels.dropna().unique():
        test = (levels == level).fillna(False).to_numpy()
        train = known & ~test
        if train.sum() <= k:
            continue
        scored = np.flatnonzero(test)
        if len(scored) > max_queries:
            scored = np.sort(rng.choice(scored, size=max_queries, replace=False))
        pred = _knn_vote(x[train], labels[train], x[scored], k=min(k, int(train.sum())))
        with warnings.catch_warnings():          # predicted subtypes absent from this site: expected, reported below
            warnings.simplefilter("ignore", UserWarning)
            balanced = float(balanced_accuracy_score(labels[scored], pred))
        rows.append({"level": str(level), "n": int(test.sum()), "n_predicted": int(len(scored)),
                     "accuracy": float((pred == labels[scored]).mean()), "balanced_accuracy": balanced,
                     "subtypes_unseen_in_training": sorted(f"S{s + 1}" for s in set(labels[test]) - set(labels[train]))})
    return rows


def site_diagnostics(x: np.ndarray, labels: np.ndarray, sites: SiteColumns, *, indices: np.ndarray,
                     groups: np.ndarray, model_inputs: set[str], cluster: Callable[[np.ndarray, int], np.ndarray] | None,
                     cfg: SitesConfig, seed: int) -> dict[str, object]:
    """All diagnostics for every site column with >= 2 levels (module doc); JSON-ready.

    ``x`` ``(n, d)`` is the clustered representation, ``labels`` ``(n,)`` the subtypes (0..K-1),
    ``indices`` ``(n, k)`` the kNN graph, ``groups`` ``(n,)`` patient ids; ``cluster`` is None when there
    are no subtypes to replicate.
    """
    out: dict[str, object] = {}
    k = indices.shape[1]
    subtype = pd.Series([f"S{i + 1}" for i in labels])
    for col in sites.frame.columns:
        levels = sites.frame[col].reset_index(drop=True)
        n_levels = levels.nunique()
        if n_levels < 2:
            out[col] = {"levels": levels.value_counts().to_dict(), "resolved": sites.how[col],
                        "note": "one level only: nothing to compare"}
            continue
        ok = levels.notna().to_numpy()
        entry: dict[str, object] = {
            "levels": {str(a): int(b) for a, b in levels.value_counts().items()}, "missing": int((~ok).sum()),
            "resolved": sites.how[col], "model_input": col in model_inputs,
            "composition": {s: {str(a): int(b) for a, b in row.items()}
                            for s, row in pd.crosstab(subtype[ok], levels[ok]).iterrows()},
            "ami": float(adjusted_mutual_info_score(levels[ok], subtype[ok])),
            "ari": float(adjusted_rand_score(levels[ok], subtype[ok])),
            "classifier": site_auroc(x, levels, groups, folds=cfg.cv_folds, seed=seed),
            "mixing": mixing(indices, levels.to_numpy(dtype=object, na_value=None), seed=seed)}
        if cluster is not None and not entry["model_input"]:
            entry["replication"] = replication(x, labels, levels, cluster=cluster,
                                               min_units=max(cfg.min_patients, 2 * k), seed=seed)   # a kNN graph needs > k
            entry["leave_one_out"] = leave_one_out(x, labels, levels, k=k, max_queries=cfg.loo_max_queries,
                                                   seed=seed)
        out[col] = entry
    return out


def top_levels(comp: pd.DataFrame, *, keep: int = 7) -> pd.DataFrame:
    """Subtype x level counts with the ``keep`` largest levels as columns and the rest summed into 'other'."""
    if comp.shape[1] <= keep + 1:
        return comp
    order = comp.sum(0).sort_values(ascending=False).index
    return pd.concat([comp[order[:keep]], comp[order[keep:]].sum(1).rename(f"other ({len(order) - keep} levels)")],
                     axis=1)


def composition_figure(diagnostics: dict[str, object], *, path: Path) -> Path | None:
    """Stacked bars: share of each level within each subtype, one panel per site column with >= 2 levels."""
    cols = [c for c, d in diagnostics.items() if "composition" in d]
    if not cols:
        return None
    fig, axes = plt.subplots(1, len(cols), figsize=(3.6 * len(cols) + 1, 3.8), dpi=110, squeeze=False)
    for ax, col in zip(axes[0], cols):
        comp = top_levels(pd.DataFrame(diagnostics[col]["composition"]).T.fillna(0))
        comp = comp.loc[sorted(comp.index, key=lambda s: (len(s), s))]
        share = comp.div(comp.sum(1), axis=0)
        bottom = np.zeros(len(share))
        for level in share.columns:
            ax.bar(share.index, share[level], bottom=bottom, label=str(level))
            bottom += share[level].to_numpy()
        for i, n in enumerate(comp.sum(1)):
            ax.text(i, 1.01, f"n={int(n)}", ha="center", fontsize=7)
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{col} (AMI {diagnostics[col]['ami']:.2f})", fontsize=9)
        ax.set_ylabel("share of the subtype")
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle("Subtype composition by site column", fontsize=10)
    return save_figure(fig, path)
