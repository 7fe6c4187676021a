"""Leiden: identical labels run after run (also across processes), canonical labels, resolution choice."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from clustering.config import KnnConfig, LeidenConfig
from clustering.knn import build_knn
from clustering.leiden import canonical, connectivities, run_leiden, to_igraph
from clustering.sweep import choose_resolution, sweep
from core.parallel import on_dask

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import numpy as np
from clustering.config import KnnConfig, LeidenConfig
from clustering.knn import build_knn
from clustering.leiden import connectivities
from clustering.sweep import sweep
rng = np.random.default_rng(5)
x = (rng.normal(size=(6, 12))[rng.integers(0, 6, 900)] * 1.2 + rng.normal(size=(900, 12))).astype(np.float32)
knn = build_knn(x, KnnConfig(), seed=3, progress=False)
res = sweep(connectivities(knn), LeidenConfig(resolutions=[0.3, 1.0], n_seeds=3, n_subsamples=2), rep=knn.rep,
            knn_cfg=KnnConfig(), seed=3, progress=False)
print(res.resolution, ",".join(map(str, res.labels)))
"""


def _labels_in_subprocess() -> str:
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "random", "PATH": ""})
    return out.stdout.strip().splitlines()[-1]


def test_same_config_and_seed_give_identical_labels_across_processes() -> None:
    first, second = _labels_in_subprocess(), _labels_in_subprocess()
    assert first == second
    assert len(set(first.split(" ")[1].split(","))) >= 2


def test_seed_matters_and_backends_agree_on_quality() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(5, 10))[rng.integers(0, 5, 600)] * 1.5 + rng.normal(size=(600, 10))).astype(np.float32)
    adj = connectivities(build_knn(x, KnnConfig(), seed=0, progress=False))
    g = to_igraph(adj)
    a = run_leiden(g, resolution=1.0, seed=1)
    np.testing.assert_array_equal(a, run_leiden(g, resolution=1.0, seed=1))
    b = run_leiden(g, resolution=1.0, seed=1, backend="leidenalg")
    np.testing.assert_array_equal(b, run_leiden(g, resolution=1.0, seed=1, backend="leidenalg"))
    qa = g.modularity(a.tolist(), weights="weight")
    qb = g.modularity(b.tolist(), weights="weight")
    assert abs(qa - qb) < 0.02


def test_canonical_orders_by_size_then_first_member() -> None:
    np.testing.assert_array_equal(canonical(np.array([7, 3, 3, 9, 9, 9, 7])), [1, 2, 2, 0, 0, 0, 1])


def _table(**cols) -> pd.DataFrame:
    table = pd.DataFrame(cols)
    table["stability"] = table[["seed_ari", "subsample_ari"]].min(1)
    return table


def test_choice_takes_the_most_modular_stable_resolution_and_respects_cluster_counts() -> None:
    table = _table(resolution=[0.1, 0.5, 1.0, 2.0, 3.0], n_clusters=[1, 2, 3, 5, 20],
                   seed_ari=[1.0, 1.0, 0.95, 0.9, 1.0], subsample_ari=[1.0, 0.99, 0.9, 0.5, 1.0],
                   modularity=[0.0, 0.5, 0.6, 0.7, 0.3])
    res, why, stable = choose_resolution(table, LeidenConfig(max_clusters=12, min_stability=0.6))
    assert (res, stable) == (1.0, True) and "modularity" in why   # 1 and 20 clusters excluded; 2.0 not stable
    res, _, _ = choose_resolution(table, LeidenConfig(max_clusters=12, min_stability=0.6, modularity_tolerance=0.15))
    assert res == 0.5                                             # ties within the tolerance go to the coarser one
    res, why, stable = choose_resolution(table, LeidenConfig(max_clusters=12, min_stability=0.995))
    assert not stable and "no stable structure" in why
    res, _, _ = choose_resolution(table, LeidenConfig(max_clusters=12, min_stability=0.6, stability_margin=0.05))
    assert res == 0.5                                             # 3 clusters: 0.9 is not within 0.05 of 0.99


def test_sweep_reports_every_resolution() -> None:
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(3, 8))[rng.integers(0, 3, 300)] * 3 + rng.normal(size=(300, 8))).astype(np.float32)
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    res = sweep(connectivities(knn), LeidenConfig(resolutions=[0.05, 0.2, 1.0], n_seeds=2, n_subsamples=2),
                rep=knn.rep, knn_cfg=KnnConfig(), seed=0, progress=False)
    assert list(res.sweep.resolution) == [0.05, 0.2, 1.0]
    assert res.sweep.chosen.sum() == 1 and res.labels.max() + 1 == 3 and res.stable


def test_noise_has_no_stable_structure() -> None:
    """Gaussian noise: the old rule returned 10 clusters at stability 0.38; now no partition is reported."""
    x = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    res = sweep(connectivities(knn), LeidenConfig(n_seeds=3, n_subsamples=3), rep=knn.rep, knn_cfg=KnnConfig(),
                seed=0, progress=False)
    assert not res.stable and (res.labels == 0).all() and "no stable structure" in res.reason
    assert res.sweep[res.sweep.n_clusters >= 2].subsample_ari.max() < 0.5


def test_subset_graphs_are_rebuilt_not_induced() -> None:
    """An induced subgraph keeps the full data's neighbourhoods (points lose neighbours, none gains new ones),
    which overstates stability; each subset gets its own kNN graph: every point has k neighbours again, and from
    an exact wide search it is exactly the subset's own exact kNN graph (what a rebuild finds)."""
    from clustering.subgraphs import neighbour_pool, subset_knn
    from clustering.sweep import subsample_nodes

    x = np.random.default_rng(1).normal(size=(400, 16)).astype(np.float32)
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    adj = connectivities(knn)
    pool = neighbour_pool(knn.rep, KnnConfig(), fraction=0.8, seed=0)
    subsets = subsample_nodes(400, knn_cfg=KnnConfig(), cfg=LeidenConfig(n_subsamples=3), seed=0)
    assert len(subsets) == 3
    for nodes in subsets:
        sub = subset_knn(pool, nodes)
        s_adj = connectivities(sub)
        induced = adj[nodes][:, nodes]
        assert (np.diff(s_adj.indptr) >= 15).all() and (np.diff(induced.indptr) < 15).any()
        assert (s_adj != 0).sum() > ((s_adj != 0).multiply(induced != 0)).sum()   # edges the full graph lacks
        rebuilt = build_knn(knn.rep[nodes], KnnConfig(pca_dims=None), seed=0, progress=False)
        np.testing.assert_array_equal(np.sort(sub.indices, 1), np.sort(rebuilt.indices, 1))
        np.testing.assert_allclose(sub.distances, rebuilt.distances, atol=1e-5)
    small = np.sort(np.random.default_rng(2).choice(400, 60, replace=False))   # most rows lack k drawn neighbours
    sub = subset_knn(pool, small)
    assert sub.params["rows_searched_again"] > 0
    rebuilt = build_knn(knn.rep[small], KnnConfig(pca_dims=None), seed=0, progress=False)
    np.testing.assert_array_equal(np.sort(sub.indices, 1), np.sort(rebuilt.indices, 1))


def test_sweep_labels_do_not_depend_on_the_worker_count_or_dask() -> None:
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(4, 10))[rng.integers(0, 4, 600)] * 1.5 + rng.normal(size=(600, 10))).astype(np.float32)
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    cfg = LeidenConfig(resolutions=[0.2, 1.0], n_seeds=2, n_subsamples=2)
    one, two = (sweep(connectivities(knn), cfg, rep=knn.rep, knn_cfg=KnnConfig(), seed=0, progress=False, workers=w)
                for w in (1, 2))
    with on_dask(workers=2):                                      # the runs as Dask tasks (clustering.run --workers)
        dask = sweep(connectivities(knn), cfg, rep=knn.rep, knn_cfg=KnnConfig(), seed=0, progress=False)
    for other in (two, dask):
        pd.testing.assert_frame_equal(one.sweep, other.sweep)
        np.testing.assert_array_equal(one.labels, other.labels)


def test_nested_planted_classes_are_kept_apart() -> None:
    """Two of three planted classes lie close: merging them is the most stable partition (the old most-stable
    rule chose 2 classes, as on the demo); the near-best-stability + modularity rule keeps the three."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    truth = rng.choice(3, 450)
    base, other = np.linalg.qr(rng.normal(size=(12, 2)))[0].T
    centres = np.stack([np.zeros(12), 8 * base, 8 * base + 3.5 * other]) + 5 * rng.normal(size=12)
    x = (centres[truth] + rng.normal(size=(450, 12))).astype(np.float32)
    knn = build_knn(x, KnnConfig(), seed=0, progress=False)
    res = sweep(connectivities(knn), LeidenConfig(n_seeds=3, n_subsamples=4, resolutions=[0.05, 0.1, 0.3, 0.5, 1.0]),
                rep=knn.rep, knn_cfg=KnnConfig(), seed=0, progress=False)
    most_stable = res.sweep[res.sweep.n_clusters >= 2].sort_values("stability", ascending=False).iloc[0]
    assert most_stable.n_clusters == 2
    assert res.stable and res.labels.max() + 1 == 3 and adjusted_rand_score(truth, res.labels) > 0.8


def test_partition_ari_equals_scikit_learn_exactly() -> None:
    from sklearn.metrics import adjusted_rand_score

    from clustering.leiden import medoid_partition, pairwise_ari, partition_ari

    rng = np.random.default_rng(3)
    cases = [(rng.integers(0, ka, n), rng.integers(0, kb, n)) for n, ka, kb in [(1000, 5, 7), (50, 1, 3), (200, 9, 2)]]
    a = rng.integers(0, 6, 500)
    cases += [(a, a), (a, (a + 1) % 6), (np.zeros(10, int), np.zeros(10, int)), (np.array([0]), np.array([4])),
              (np.array([0, 0, 2]), np.array([3, 1, 1]))]          # label values with gaps
    for p, q in cases:
        assert partition_ari(p, q) == adjusted_rand_score(p, q)
        assert partition_ari(q, p) == partition_ari(p, q)
    parts = [rng.integers(0, 4, 300) for _ in range(5)]
    m = pairwise_ari(parts)
    assert m[1, 3] == adjusted_rand_score(parts[1], parts[3]) and np.all(np.diag(m) == 1.0)
    means = [np.mean([adjusted_rand_score(p, q) for j, q in enumerate(parts) if j != i]) for i, p in enumerate(parts)]
    assert medoid_partition(parts) is parts[int(np.argmax(means))]
    try:
        partition_ari(np.array([0, -1]), np.array([0, 1]))
    except ValueError as e:
        assert "non-negative" in str(e)
    else:
        raise AssertionError("negative labels must be refused")
