"""Selection: best mean AUROC, but the smaller embedding when no paired test separates the two."""
from __future__ import annotations

import pandas as pd

from benchmarks.selection import select_model


def _inputs(p_adj: float):
    results = pd.DataFrame([
        {"dataset": ds, "label": lab, "model": m, "probe": "logistic", "metric": "auroc",
         "ci_method": "patient_bootstrap", "mean": auc} for ds in ("mimic", "nih") for lab in ("Edema", "Effusion")
        for m, auc in (("cxr-foundation", 0.875), ("medimageinsight", 0.870))])
    comparisons = pd.DataFrame([{"dataset": ds, "label": lab, "probe": "logistic", "model_a": "cxr-foundation",
                                 "model_b": "medimageinsight", "delong_p_adj": p_adj, "nb_p_adj": 0.9}
                                for ds in ("mimic", "nih") for lab in ("Edema", "Effusion")])
    sizes = {"cxr-foundation": 32 * 768, "medimageinsight": 1024}
    poolings = {"cxr-foundation": "mean", "medimageinsight": "mean"}
    return results, comparisons, sizes, poolings


def test_prefers_smaller_embedding_when_indistinguishable():
    results, cmp, sizes, pool = _inputs(p_adj=0.4)
    sel = select_model(results, cmp, sizes=sizes, poolings=pool, probe="logistic", alpha=0.05)
    assert sel["model"] == "medimageinsight" and sel["best_by_auroc"] == "cxr-foundation"
    assert "smaller embedding" in sel["reason"] and "1024 vs 24576" in sel["reason"]
    assert sel["mean_auroc"] == 0.870 and sel["augmentation"] == "original" and sel["pooling"] == "mean"
    assert sel["candidates"]["medimageinsight"]["indistinguishable_from_best"]


def test_keeps_best_when_significantly_better():
    results, cmp, sizes, pool = _inputs(p_adj=0.01)
    sel = select_model(results, cmp, sizes=sizes, poolings=pool, probe="logistic", alpha=0.05)
    assert sel["model"] == "cxr-foundation"
    assert sel["candidates"]["medimageinsight"]["significant_differences"] == [
        "mimic/Edema", "mimic/Effusion", "nih/Edema", "nih/Effusion"]
    assert "medimageinsight on mimic/Edema, mimic/Effusion, nih/Edema, nih/Effusion" in sel["reason"]
