"""DeLong test, Nadeau-Bengio corrected t-test and Holm adjustment against independent references."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from benchmarks.compare import adjust_pvalues, compare_models, corrected_ttest, delong_test


def _delong_bruteforce(y, a, b):
    """Reference: DeLong, DeLong & Clarke-Pearson (1988), eqs. for the structural components written out
    pairwise (psi = 1, 1/2, 0 over all m*n positive/negative pairs), O(m n); independent of the
    midrank algorithm (Sun & Xu 2014) in benchmarks.compare."""
    y = np.asarray(y, bool)
    v10, v01 = [], []
    for s in (a, b):
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = y.sum(), (~y).sum()
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    L = np.array([1.0, -1.0])
    var = L @ (s10 / m + s01 / n) @ L
    z = (np.mean(v10[0]) - np.mean(v10[1])) / np.sqrt(var)
    return z, 2 * stats.norm.sf(abs(z))


def test_delong_matches_pairwise_reference_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    a = np.round(y * 0.8 + rng.normal(size=150), 1)          # rounded: many ties
    b = np.round(0.5 * a + y * 0.3 + rng.normal(size=150), 1)
    out = delong_test(y, a, b)
    z_ref, p_ref = _delong_bruteforce(y, a, b)
    assert out["auc_a"] == pytest.approx(roc_auc_score(y, a)) and out["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert out["z"] == pytest.approx(z_ref, rel=1e-10)
    assert out["p"] == pytest.approx(p_ref, rel=1e-10)
    swapped = delong_test(y, b, a)
    assert swapped["p"] == pytest.approx(out["p"]) and swapped["z"] == pytest.approx(-out["z"])
    assert delong_test(y, a, a)["p"] == 1.0


def test_delong_auc_on_hanley_mcneil_1982_rating_data():
    """Hanley & McNeil (1982, Radiology 143:29, Table 1): 109 CT images rated 1-5; normals (58):
    33, 6, 6, 11, 2; abnormals (51): 3, 2, 2, 11, 33. Published area under the ROC curve: 0.893."""
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    ratings = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)].astype(float)
    y = np.r_[np.zeros(58), np.ones(51)]
    out = delong_test(y, ratings, np.full_like(ratings, 3.0))   # vs an uninformative constant rating
    assert out["auc_a"] == pytest.approx(0.893, abs=5e-4)
    assert out["auc_b"] == 0.5
    assert out["p"] < 1e-10


def test_delong_equals_proc_roc_test():
    """Reference: R pROC 1.18.0 ``roc.test(method = "delong")`` (Debian r-cran-proc), run on these data:

        normal <- c(33, 6, 6, 11, 2); abnormal <- c(3, 2, 2, 11, 33)
        ratings <- c(rep(1:5, normal), rep(1:5, abnormal)); y <- c(rep(0, 58), rep(1, 51))
        i <- 0:108; second <- ifelse(i %% 4 == 0, 6 - ratings, ratings)
        roc.test(roc(y, ratings, direction = "<"), roc(y, second, direction = "<"), method = "delong")

    printed Z = 3.956357646448, p = 0.000076101202, AUCs 0.893171061528 and 0.687457741717. (The same
    pROC reproduces its manual's aSAH example, s100b vs wfns: Z = -2.209, p = 0.02718.)
    """
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    ratings = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)].astype(float)
    y = np.r_[np.zeros(58), np.ones(51)]
    second = np.where(np.arange(109) % 4 == 0, 6 - ratings, ratings)
    out = delong_test(y, ratings, second)
    assert out["z"] == pytest.approx(3.956357646448, abs=1e-9)
    assert out["p"] == pytest.approx(0.000076101202, abs=1e-11)
    assert (out["auc_a"], out["auc_b"]) == pytest.approx((0.893171061528, 0.687457741717), abs=1e-11)


def test_corrected_ttest_is_more_conservative_than_naive():
    d = np.array([0.02, 0.03, 0.025, 0.015, 0.035])
    out = corrected_ttest(d, n_train=1600, n_test=400)
    k, s = len(d), d.std(ddof=1)
    t_ref = d.mean() / np.sqrt((1 / k + 400 / 1600) * s**2)    # Nadeau & Bengio (2003), eq. for the corrected variance
    assert out["t"] == pytest.approx(t_ref)
    assert out["p"] == pytest.approx(2 * stats.t.sf(t_ref, k - 1))
    assert out["p"] > stats.ttest_1samp(d, 0).pvalue


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5, 0.02])
    assert np.allclose(adjust_pvalues(p, method="holm"), multipletests(p, method="holm")[1])
    assert np.allclose(adjust_pvalues(p, method="bonferroni"), multipletests(p, method="bonferroni")[1])
    assert np.allclose(adjust_pvalues(np.array([0.01, 0.04, 0.03]), method="holm"), [0.03, 0.06, 0.06])


def test_compare_models_pairs_and_adjusts():
    rng = np.random.default_rng(1)
    n = 200
    y = rng.integers(0, 2, n)
    fold = np.arange(n) % 5
    scores = {"good": y + rng.normal(size=n), "bad": rng.normal(size=n), "copy": y + rng.normal(size=n)}
    oof = pd.concat([pd.DataFrame({"dataset": "d", "label": "L", "model": m, "probe": "logistic", "fold": fold,
                                   "image_id": np.arange(n).astype(str), "y_true": y, "y_score": s})
                     for m, s in scores.items()])
    folds = (oof.groupby(["dataset", "label", "model", "probe", "fold"])
             .apply(lambda g: roc_auc_score(g.y_true, g.y_score), include_groups=False).rename("auroc").reset_index()
             .assign(n_train=160, n_test=40))
    cmp = compare_models(oof, folds)
    assert len(cmp) == 3 and set(zip(cmp.model_a, cmp.model_b)) == {("bad", "copy"), ("bad", "good"), ("copy", "good")}
    row = cmp[(cmp.model_a == "bad") & (cmp.model_b == "good")].iloc[0]
    assert row.delong_p_adj < 0.001 and row.delong_p_adj >= row.delong_p
    assert (cmp.delong_p_adj >= cmp.delong_p).all() and (cmp.nb_p_adj >= cmp.nb_p).all()


def test_clustered_delong_equals_delong_with_one_image_per_patient():
    from benchmarks.compare import clustered_delong

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    a, b = y + rng.normal(size=120), 0.5 * y + rng.normal(size=120)
    auc, cov = clustered_delong(y, np.vstack([a, b]), np.arange(120))
    ref = delong_test(y, a, b)
    z = (auc[0] - auc[1]) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert auc == pytest.approx([ref["auc_a"], ref["auc_b"]]) and z == pytest.approx(ref["z"], rel=1e-10)


def test_clustered_delong_is_not_fooled_by_copies_of_a_patient():
    """Each patient's image copied 3 times: plain DeLong sees 3x the data (SE / sqrt(3)), the clustered
    variance (Obuchowski 1997) stays that of the patients (exactly, with one class per patient)."""
    from benchmarks.compare import clustered_delong

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80)
    s = np.vstack([y + rng.normal(size=80), rng.normal(size=80)])
    _, cov1 = clustered_delong(y, s, np.arange(80))
    _, cov3 = clustered_delong(np.tile(y, 3), np.tile(s, 3), np.tile(np.arange(80), 3))
    naive = delong_test(np.tile(y, 3), np.tile(s[0], 3), np.tile(s[1], 3))
    assert cov3 == pytest.approx(cov1, rel=1e-10) and cov1[0, 0] > 0
    assert naive["z"] == pytest.approx(delong_test(y, s[0], s[1])["z"] * np.sqrt(3), rel=0.02)


def test_fold_clustered_delong_averages_fold_differences():
    from benchmarks.compare import fold_clustered_delong

    rng = np.random.default_rng(5)
    n = 300
    y, fold, groups = rng.integers(0, 2, n), np.arange(n) % 5, np.arange(n) // 2
    a, b = y + rng.normal(size=n), 0.3 * y + rng.normal(size=n)
    out = fold_clustered_delong(y, a, b, groups, fold)
    per_fold = [roc_auc_score(y[fold == k], a[fold == k]) - roc_auc_score(y[fold == k], b[fold == k])
                for k in range(5)]
    assert out["diff"] == pytest.approx(np.mean(per_fold)) and out["p"] < 0.01 and out["se"] > 0
