"""kNN graph: exact search equals sklearn's brute force; PCA and ANN recall are measured, not assumed."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

import clustering.knn as knn_mod
from clustering.config import KnnConfig
from clustering.knn import build_knn, knn_exact, knn_ivf, measure_recall, normalize_rows, pca_reduce


def test_exact_knn_equals_sklearn_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(700, 24)).astype(np.float32)
    idx, dist = knn_exact(x, k=15, block_rows=128, progress=False)   # several blocks, ragged last one
    nn = NearestNeighbors(n_neighbors=16, metric="cosine", algorithm="brute").fit(x)
    ref_dist, ref_idx = nn.kneighbors(x)
    assert (ref_idx[:, 0] == np.arange(len(x))).all()
    np.testing.assert_array_equal(idx, ref_idx[:, 1:])
    np.testing.assert_allclose(dist, ref_dist[:, 1:], atol=2e-6)


def test_zero_rows_are_reported() -> None:
    x = np.ones((5, 3), np.float32)
    x[3] = 0
    with pytest.raises(ValueError, match=r"first rows \[3\]"):
        normalize_rows(x)


@pytest.mark.parametrize("exact_max_dims", [4096, 8])       # exact covariance path; randomized path for wide inputs
def test_pca_matches_sklearn(monkeypatch, exact_max_dims: int) -> None:
    monkeypatch.setattr(knn_mod, "_EXACT_PCA_MAX_DIMS", exact_max_dims)
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(500, 8)) @ rng.normal(size=(8, 64)) + 0.05 * rng.normal(size=(500, 64)) + 3.0).astype(np.float32)
    z, kept = pca_reduce(x, n_components=5, seed=0)
    ref = PCA(n_components=5, svd_solver="full").fit(x)
    assert kept == pytest.approx(ref.explained_variance_ratio_.sum(), rel=1e-4)
    # the same components up to sign: each score column correlates +-1 with sklearn's
    corr = np.corrcoef(z.T, ref.transform(x).T)[:5, 5:]
    np.testing.assert_allclose(np.abs(np.diag(corr)), 1.0, atol=1e-4)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    z2, _ = pca_reduce(x, n_components=5, seed=0)
    np.testing.assert_array_equal(z, z2)


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(10, d))[rng.integers(0, 10, n)] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("ann", ["ivf", "pynndescent"])
def test_approximate_path_reports_measured_recall(ann: str) -> None:
    x = _clustered(2500, 16, 3)
    g = build_knn(x, KnnConfig(k=10, pca_dims=None, exact_max_n=1000, recall_sample=300, ann=ann), seed=0,
                  progress=False)
    assert g.method == ann and g.recall_sample == 300
    assert not (g.indices == np.arange(len(x))[:, None]).any()    # self removed
    assert (np.diff(g.distances, axis=1) >= 0).all()              # nearest first
    recall, _ = measure_recall(x, g.indices, sample=300, seed=0)
    assert g.recall == recall and recall > 0.9
    exact = build_knn(x, KnnConfig(k=10, pca_dims=None), seed=0, progress=False)
    assert exact.method == "exact" and measure_recall(x, exact.indices, sample=300, seed=0)[0] == 1.0


def test_ivf_reaches_target_recall_is_reproducible_and_exact_when_probing_all_cells(monkeypatch) -> None:
    x = _clustered(3000, 24, 4)
    idx, dist, info = knn_ivf(x, k=15, seed=0, target_recall=0.9, progress=False)
    assert info["ivf_lists"] == round(np.sqrt(3000)) and 1 <= info["ivf_probes"] < info["ivf_lists"]
    assert measure_recall(x, idx, sample=3000, seed=0)[0] >= 0.9       # tuned with a margin on a 2000-point sample
    monkeypatch.setattr(knn_mod, "_threads", lambda: 1)                # same result on one thread
    monkeypatch.setattr(knn_mod, "_IVF_BLOCK", 512)                    # several query blocks
    idx2, dist2, _ = knn_ivf(x, k=15, seed=0, target_recall=0.9, progress=False)
    monkeypatch.setattr(knn_mod, "_threads", lambda: 3)
    idx3, dist3, _ = knn_ivf(x, k=15, seed=0, target_recall=0.9, progress=False)
    np.testing.assert_array_equal(idx2, idx3)
    np.testing.assert_array_equal(dist2, dist3)
    assert (idx2 == idx).mean() > 0.999                                # other blocks: same up to rounding ties
    ex_idx, ex_dist = knn_exact(x, k=15, progress=False)
    all_idx, all_dist, info = knn_ivf(x, k=15, seed=0, n_lists=20, n_probe=20, progress=False)
    assert info["ivf_probes"] == 20
    np.testing.assert_allclose(all_dist, ex_dist, atol=1e-6)
    assert (all_idx == ex_idx).mean() > 0.999                          # equal up to the order of exact ties
    # tiny cells: queries whose probed cells hold fewer than k points are searched exactly
    few_idx, _, info = knn_ivf(x[:300], k=15, seed=0, n_lists=100, n_probe=1, progress=False)
    assert info["ivf_exact_fallback_rows"] > 0 and (few_idx >= 0).all()
