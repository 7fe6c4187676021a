"""report.md: the source study's two tables (Accuracy, AUROC: datasets x labels x models), selection,
paired comparisons, missing images, the studies and the figures."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .config import BenchmarksConfig
from .data import Features
from .summary import CI_ESTIMATES, CLASS_CONDITIONAL_METRICS, MIN_CLASS_PATIENTS


def metric_table(results: pd.DataFrame, *, metric: str, probe: str) -> str:
    """Markdown table: rows (dataset, label) + a per-dataset average row, a column per model;
    cells "mean [CI]" (mean over folds with the patient-bootstrap CI, or, for a class-conditional metric such
    as AUROC, the fold t-interval marked † where a test fold holds fewer than ``MIN_CLASS_PATIENTS`` patients
    of a class), best model per row in bold."""
    sub = results[(results.metric == metric) & (results.probe == probe)]
    boot = sub[sub.ci_method == "patient_bootstrap"]
    fold_t = sub[sub.ci_method == "fold_t"].set_index(["dataset", "label", "model"])
    models = sorted(boot.model.unique())
    lines = ["| dataset | label | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for ds, by_ds in boot.groupby("dataset", sort=True):
        for lab, rows in by_ds.groupby("label", sort=True):
            r = rows.set_index("model")
            best = r["mean"].max()
            cells = [_cell(r.loc[m], fold_t.loc[(ds, lab, m)], bold=r.at[m, "mean"] == best,
                           class_conditional=metric in CLASS_CONDITIONAL_METRICS) if m in r.index
                     else "-" for m in models]
            lines.append(f"| {ds} | {lab} | " + " | ".join(cells) + " |")
        avg = by_ds.groupby("model")["mean"].mean()
        cells = [(f"**{avg[m]:.3f}**" if avg[m] == avg.max() else f"{avg[m]:.3f}") if m in avg else "-"
                 for m in models]
        lines.append(f"| {ds} | *average* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reported_intervals(results: pd.DataFrame) -> pd.DataFrame:
    """The interval each table cell shows, one row per (dataset, label, model, probe, metric): the patient-bootstrap
    row of ``results``, with ``ci_low``/``ci_high`` from the fold t-interval and ``dagger`` True where
    :func:`metric_table` marks the cell † (report.md and report.html show the same interval)."""
    keys = ["dataset", "label", "model", "probe", "metric"]
    boot = results[results.ci_method == "patient_bootstrap"].set_index(keys)
    fold_t = results[results.ci_method == "fold_t"].set_index(keys)
    dagger = boot.index.get_level_values("metric").isin(list(CLASS_CONDITIONAL_METRICS)) \
        & (boot["min_class_patients_per_fold"] < MIN_CLASS_PATIENTS).to_numpy()
    out = boot.assign(dagger=dagger)
    swap = out.index[dagger]
    out.loc[swap, ["ci_low", "ci_high"]] = fold_t.loc[swap, ["ci_low", "ci_high"]].to_numpy()
    return out.reset_index()


def _cell(boot: pd.Series, fold_t: pd.Series, *, bold: bool, class_conditional: bool) -> str:
    mean = f"**{boot['mean']:.3f}**" if bold else f"{boot['mean']:.3f}"
    if class_conditional and boot["min_class_patients_per_fold"] < MIN_CLASS_PATIENTS:
        return f"{mean} [{fold_t['ci_low']:.3f}, {fold_t['ci_high']:.3f}] †"
    return f"{mean} [{boot['ci_low']:.3f}, {boot['ci_high']:.3f}]"


def _df_table(df: pd.DataFrame, *, floatfmt: str = "{:.4g}") -> str:
    if df.empty:
        return "_none_"
    fmt = df.apply(lambda col: col.map(lambda v: floatfmt.format(v) if isinstance(v, float) else str(v)))
    return "\n".join(["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns),
                      *("| " + " | ".join(row) + " |" for row in fmt.itertuples(index=False))])


def write_report(out: Path, *, cfg: BenchmarksConfig, results: pd.DataFrame, comparisons: pd.DataFrame,
                 selection: dict, missing: pd.DataFrame, skipped: pd.DataFrame, n_sampled: int, figures: list[Path],
                 transfer: pd.DataFrame | None = None, noise: pd.DataFrame | None = None,
                 features: list[Features] = (), warnings: list[str] = (), sections: list[str] = ()) -> Path:
    """Write ``out/report.md`` and return its path; figures are linked relative to ``out``.

    ``features``: the benchmarked models (for the probe-input table); ``warnings``: patient-id warnings
    (``patients.patient_id_warnings``), shown near the top in words; ``sections``: further markdown blocks
    (shortcut checks, data efficiency) placed before the figures."""
    first = results.drop_duplicates(["dataset", "label"])
    parts = [
        "# Embedding benchmark",
        f"{results.model.nunique()} model(s) x {first.shape[0]} (dataset, label) task(s), probes "
        f"{', '.join(cfg.probes)}; {cfg.n_folds}-fold CV stratified and grouped by patient (no patient in two "
        f"folds), seed {cfg.seed}. Training folds use the original and augmented rows of their images; test "
        "folds score original images only.",
        "**How to read the tables.** Each cell is the *mean over the K test folds* and, in brackets, its 95% "
        f"*patient-level cluster bootstrap* percentile interval ({cfg.bootstrap.n_boot} resamples of the patients "
        "within each test fold of the pooled out-of-fold predictions; all images of a patient move together). "
        "The fold-based t-interval (mean +- t_(K-1) SD/sqrt(K)) "
        "is in `results.csv` (`ci_method = fold_t`). What each interval estimates (`ci_estimates` in "
        "`results.csv`): the patient bootstrap covers " + CI_ESTIMATES["patient_bootstrap"] + "; the fold "
        "t-interval is " + CI_ESTIMATES["fold_t"] + "; "
        + ("the repeated-CV interval (`ci_method = repeated_cv`, "
           f"{cfg.procedure_interval.repeats} repeats) covers " + CI_ESTIMATES["repeated_cv"]
           if cfg.procedure_interval.enabled else "an interval for the procedure itself (refitting) is off: "
           "enable `procedure_interval`") + ". No result comes from a single fold. Best model per row "
        f"in bold. Accuracy uses the probability cut-off {cfg.threshold}. † marks AUROC cells of tasks where some "
        f"test fold holds fewer than {MIN_CLASS_PATIENTS} patients of a class: there the within-fold bootstrap has "
        "too few distinct resamples and its interval is too narrow to trust, so the cell shows the fold t-interval "
        "instead (accuracy pools both classes and keeps its bootstrap interval; both intervals are in "
        "`results.csv`).",
        f"Images used: {results.groupby(['dataset', 'label']).n_images.first().sum()} of {n_sampled} sampled "
        f"(dataset, label, image) rows; {missing.image_id.nunique() if len(missing) else 0} sampled image(s) have "
        "no embedding for at least one model and are left out for every model (listed in `missing.csv`).",
    ]
    parts += ["## Patient ids"]
    parts += [f"**Warning:** {w}." for w in warnings] or [
        f"No patient-id warning: {results.n_patients.max() if len(results) else 0} patients at most per task; the "
        "folds are grouped by the sample's patient_id."]
    if features:
        parts += ["## What each probe sees", _df_table(pd.DataFrame(
            [{"model": f.model, "stored per image": " x ".join(map(str, f.stored_shape)), "pooling": f.pooling,
              "probe input dims": f.probe_dim, "note": f.pooling_note} for f in features]))]
    for probe in cfg.probes:
        parts += [f"## Accuracy ({probe} probe)", metric_table(results, metric="accuracy", probe=probe),
                  f"## AUROC ({probe} probe)", metric_table(results, metric="auroc", probe=probe)]
    parts += ["## Model selection",
              f"Selected **{selection['model']}** (augmentation `{selection['augmentation']}`, pooling "
              f"`{selection['pooling']}`, probe {selection['probe']}, probe input {selection['probe_input_dims']} "
              f"dims): {selection['reason']}.",
              f"Rule: {selection['rule']}.",
              "## Paired comparisons",
              "`fold_mean_diff`: difference of the mean-over-folds AUROCs (a - b) with its "
              f"{cfg.bootstrap.level:.0%} interval from a fold-stratified, patient-clustered DeLong test (DeLong "
              "within each test fold, where one fitted model scored disjoint patients, with all images of a patient "
              "as one cluster; pooled out-of-fold scores mix K models and are not tested). Like the patient "
              "bootstrap it holds the fitted models fixed. Nadeau-Bengio corrected resampled t-test over folds; "
              f"p-values adjusted ({cfg.selection.correction}) over all rows of each test. Full table: "
              "`comparisons.csv`.",
              _df_table(comparisons[["dataset", "label", "probe", "model_a", "model_b", "fold_mean_diff",
                                     "diff_ci_low", "diff_ci_high", "delong_p_adj", "nb_p_adj"]].head(40))
              if len(comparisons) else "_one model: nothing to compare_"]
    if len(missing):
        parts += ["## Sampled images without embeddings",
                  _df_table(missing.groupby(["model", "dataset", "label", "reason"]).size()
                            .rename("n_images").reset_index())]
    if len(skipped):
        parts += ["## (dataset, label) pairs not benchmarked", _df_table(skipped)]
    if transfer is not None:
        parts += ["## Cross-dataset transfer (train on one dataset, test on another)",
                  _df_table(transfer[transfer.metric == "auroc"].drop(columns="metric"))]
    if noise is not None:
        parts += ["## Label-noise robustness (AUROC vs fraction of flipped training labels)",
                  "Mean AUROC over folds per fraction (fold t-intervals in `label_noise.csv`).",
                  _df_table(noise.pivot_table(index=["dataset", "label", "model"], columns="fraction",
                                              values="auroc_mean").rename(columns=lambda f: f"flip {f:g}")
                            .reset_index(), floatfmt="{:.3f}"),
                  "![label noise](figures/label_noise.png)"]
    parts += list(sections)
    parts += ["## Figures"] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures
                               if p.name != "label_noise.png"]
    path = out / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path
