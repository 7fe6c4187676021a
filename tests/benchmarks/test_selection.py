"""Selection: the best mean AUROC, unless a model equivalent within the margin has a smaller probe input.

(Was: "the smaller stored embedding when no paired test separates the two"; issue 23 showed both halves wrong:
not significant is not equivalent, and the probe sees 768 dims of CXR-Foundation's 32 x 768 after pooling.)
"""
from __future__ import annotations

import pandas as pd

from benchmarks.selection import select_model

TASKS = [(ds, lab) for ds in ("mimic", "nih") for lab in ("Edema", "Effusion")]
DIMS = {"cxr-foundation": 768, "medimageinsight": 1024}
SHAPES = {"cxr-foundation": (32, 768), "medimageinsight": (1024,)}
POOL = {"cxr-foundation": "mean", "medimageinsight": "mean"}


def _inputs(auc_mii: float, auc_cxr: float, half_width: float, p_adj: float = 0.4):
    """results/comparisons for two models; paired interval of AUROC(cxr) - AUROC(mii) = diff +- half_width."""
    results = pd.DataFrame([
        {"dataset": ds, "label": lab, "model": m, "probe": "logistic", "metric": "auroc",
         "ci_method": "patient_bootstrap", "mean": auc} for ds, lab in TASKS
        for m, auc in (("cxr-foundation", auc_cxr), ("medimageinsight", auc_mii))])
    d = auc_cxr - auc_mii
    comparisons = pd.DataFrame([{"dataset": ds, "label": lab, "probe": "logistic", "model_a": "cxr-foundation",
                                 "model_b": "medimageinsight", "equiv_ci_low": d - half_width,
                                 "equiv_ci_high": d + half_width, "delong_p_adj": p_adj, "nb_p_adj": 0.9}
                                for ds, lab in TASKS])
    return results, comparisons


def _select(results, cmp, margin=0.02):
    return select_model(results, cmp, probe_dims=DIMS, stored_shapes=SHAPES, poolings=POOL, probe="logistic",
                        margin=margin, alpha=0.05)


def test_within_margin_picks_smaller_probe_input_not_smaller_storage():
    results, cmp = _inputs(auc_mii=0.836, auc_cxr=0.831, half_width=0.01)   # intervals [-0.015, 0.005]
    sel = _select(results, cmp)
    assert sel["best_by_auroc"] == "medimageinsight"
    assert sel["model"] == "cxr-foundation" and sel["probe_input_dims"] == 768   # 768 < 1024, though 24576 stored
    assert sel["candidates"]["cxr-foundation"]["equivalent_to_best"]
    reason = sel["reason"]
    assert "equivalence within margin 0.02" in reason and "768 vs 1024" in reason
    assert "probe input 1024 dims" in reason and "stored 32 x 768, mean pooling" in reason
    assert "margin 0.02" in sel["rule"] and "90% paired interval" in sel["rule"] and sel["margin"] == 0.02


def test_outside_margin_keeps_the_best_although_not_significant():
    # the bench case: 0.836 vs 0.831, no significant difference (p_adj 0.4), but a wide paired interval
    results, cmp = _inputs(auc_mii=0.836, auc_cxr=0.831, half_width=0.03)   # [-0.035, 0.025] crosses -0.02
    sel = _select(results, cmp)
    assert sel["model"] == "medimageinsight"
    c = sel["candidates"]["cxr-foundation"]
    assert not c["equivalent_to_best"] and c["significant_differences"] == []
    assert len(c["intervals_outside_margin"]) == 4
    assert "equivalence not shown: paired interval outside +-0.02 on mimic/Edema [-0.025, +0.035]" in sel["reason"]
    assert "probe input 768 dims" in sel["reason"] and "margin 0.02" in sel["reason"]


def test_mean_gap_beyond_margin_keeps_the_best():
    results, cmp = _inputs(auc_mii=0.86, auc_cxr=0.835, half_width=0.001)
    sel = _select(results, cmp, margin=0.02)
    assert sel["model"] == "medimageinsight"
    assert "not within the margin 0.02" in sel["reason"]


def test_equivalent_best_with_smaller_probe_input_stays():
    results, cmp = _inputs(auc_mii=0.831, auc_cxr=0.836, half_width=0.005)
    sel = _select(results, cmp)
    assert sel["model"] == "cxr-foundation" == sel["best_by_auroc"]
    assert "does not see fewer dimensions" in sel["reason"]
