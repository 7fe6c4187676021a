"""kNN graph: exact search equals sklearn's brute force; PCA and ANN recall are measured, not assumed."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from clustering.config import KnnConfig
from clustering.knn import build_knn, knn_exact, measure_recall, normalize_rows, pca_reduce


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


def test_pca_matches_sklearn_subspace() -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(500, 8)) @ rng.normal(size=(8, 64)) + 0.05 * rng.normal(size=(500, 64))).astype(np.float32)
    z, kept = pca_reduce(x, n_components=5, seed=0)
    ref = PCA(n_components=5, svd_solver="full").fit(x)
    assert kept == pytest.approx(ref.explained_variance_ratio_.sum(), rel=1e-3)
    # same subspace: each sklearn component is explained by ours (|cos| ~ 1 after sign fixes)
    np.testing.assert_allclose(np.abs(np.corrcoef(z.T, ref.transform(x).T)[:5, 5:]).max(1), 1.0, atol=1e-3)
    z2, _ = pca_reduce(x, n_components=5, seed=0)
    np.testing.assert_array_equal(z, z2)


def test_approximate_path_reports_measured_recall() -> None:
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(10, 16))[rng.integers(0, 10, 2500)] + 0.5 * rng.normal(size=(2500, 16))).astype(np.float32)
    g = build_knn(x, KnnConfig(k=10, pca_dims=None, exact_max_n=1000, recall_sample=300), seed=0, progress=False)
    assert g.method == "pynndescent" and g.recall_sample == 300
    assert not (g.indices == np.arange(len(x))[:, None]).any()    # self removed
    recall, _ = measure_recall(x, g.indices, sample=300, seed=0)
    assert g.recall == recall and recall > 0.9
    exact = build_knn(x, KnnConfig(k=10, pca_dims=None), seed=0, progress=False)
    assert exact.method == "exact" and measure_recall(x, exact.indices, sample=300, seed=0)[0] == 1.0
