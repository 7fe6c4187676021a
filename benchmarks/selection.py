"""Model selection -> selection.json: best mean AUROC, and among models no paired test separates from the best,
the one with the smallest embedding (the source study's reasoning: near-identical AUROC, smaller vectors win)."""
from __future__ import annotations

import pandas as pd


def select_model(results: pd.DataFrame, comparisons: pd.DataFrame, *, sizes: dict[str, int],
                 poolings: dict[str, str], probe: str, alpha: float) -> dict[str, object]:
    """Pick one model from ``results.csv``/``comparisons.csv`` rows of ``probe``.

    ``sizes``: stored values per image per model (e.g. 1024, 24576). A model is *indistinguishable* from the
    best when none of its comparisons with the best (any dataset/label) has an adjusted DeLong or
    Nadeau-Bengio p-value below ``alpha``. Returns the selection record (model, augmentation, pooling,
    reason, mean_auroc, probe, candidates).
    """
    auroc = results[(results.metric == "auroc") & (results.probe == probe)
                    & (results.ci_method == "patient_bootstrap")]
    if auroc.empty:
        raise ValueError(f"no AUROC results for probe {probe!r} to select a model from")
    mean_auroc = auroc.groupby("model")["mean"].mean().sort_values(ascending=False)
    best = str(mean_auroc.index[0])
    cmp = comparisons[comparisons.probe == probe]
    candidates: dict[str, dict[str, object]] = {}
    for model, value in mean_auroc.items():
        pair = cmp[((cmp.model_a == best) & (cmp.model_b == model)) | ((cmp.model_a == model) & (cmp.model_b == best))]
        sig = pair[(pair.delong_p_adj < alpha) | (pair.nb_p_adj < alpha)]
        candidates[str(model)] = {
            "mean_auroc": float(value), "embedding_size": int(sizes[model]), "pooling": poolings[model],
            "indistinguishable_from_best": bool(model == best or sig.empty),
            "significant_differences": [f"{r.dataset}/{r.label}" for r in sig.itertuples()],
        }
    pool = [m for m, c in candidates.items() if c["indistinguishable_from_best"]]
    chosen = min(pool, key=lambda m: (candidates[m]["embedding_size"], -candidates[m]["mean_auroc"]))
    if len(candidates) == 1:
        reason = f"only one model was benchmarked ({best})"
    elif chosen == best:
        others = [m for m in pool if m != best]
        reason = (f"{best} has the best mean AUROC across labels ({mean_auroc[best]:.4f})"
                  + (f"; {', '.join(others)} not significantly different but not smaller" if others else
                     f"; every other model differs significantly from it (adjusted DeLong or Nadeau-Bengio "
                     f"p < {alpha}) on at least one dataset/label: "
                     + "; ".join(f"{m} on {', '.join(c['significant_differences'])}"
                                 for m, c in candidates.items() if m != best)))
    else:
        reason = (f"{best} has the best mean AUROC ({mean_auroc[best]:.4f}) but no paired test (DeLong, "
                  f"Nadeau-Bengio; adjusted p < {alpha}) separates it from {chosen} ({mean_auroc[chosen]:.4f}) "
                  f"on any dataset/label; {chosen} has the smaller embedding "
                  f"({candidates[chosen]['embedding_size']} vs {candidates[best]['embedding_size']} values per image)")
    return {"model": chosen, "augmentation": "original", "pooling": poolings[chosen], "reason": reason,
            "mean_auroc": float(mean_auroc[chosen]), "probe": probe, "best_by_auroc": best, "alpha": alpha,
            "candidates": candidates}
