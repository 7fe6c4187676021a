"""The subtype report of a clustering run, read from its :class:`~clustering.result.ClusteringResult`.

:func:`draw_figures` draws the run's PNGs into a folder; :func:`report_sections` lays out the report
(summary, plain language, sites, resolution choice, UMAP, Table 1, label enrichment, survival,
sample images, studies, privacy) for :func:`clustering.report.write_report`.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import characterize as ch
from .compute import columns_by_role
from .diagnose import site_section
from .export import ExportPlan
from .figures import plot_confidence, plot_sweep
from .narrative import CAVEAT
from .report import TABLE1_LEGEND, Section, format_p, plain_warning
from .result import ClusteringResult
from .sites import composition_figure
from .umap_embed import scatter

STUDY_LEGENDS = {
    "label_noise": "Each row corrupts a fraction of one column. Labels flipped: association of the label with the "
                   "subtypes (Cramer's V, 0 = none, 1 = perfect) before and after, and how often the same subtype "
                   "stays the most enriched. Feature permuted: the input dimension with the most variance shuffled "
                   "and the data reclustered; ari_vs_clean: agreement with the subtypes found on clean data "
                   "(adjusted Rand index, 1 = identical, 0 = chance).",
    "cross_dataset": "pooled: all datasets together; ami_subtype_vs_dataset: how much the subtypes follow the dataset "
                     "(adjusted mutual information, 0 = not at all). Other rows: each dataset clustered alone; "
                     "ari_alone_vs_pooled: agreement with the pooled subtypes on its units (1 = identical, 0 = chance).",
}


@dataclass
class Figures:
    """The PNGs of one run (None: not drawn) and the UMAP scatters with their captions."""

    sweep: Path
    confidence: Path | None
    umap: list[tuple[Path, str]]
    kaplan_meier: Path | None
    montage: Path | None
    sites: Path | None


def draw_figures(res: ClusteringResult, fig_dir: Path) -> Figures:
    """Draw every figure of ``res`` into ``fig_dir``."""
    units, method, char = res.units, res.method, res.characterization
    surv = char.survival
    return Figures(
        sweep=plot_sweep(res.leiden.sweep, path=fig_dir / "resolution_sweep.png"),
        confidence=(plot_confidence(method.stability.confidence, units.subtype, path=fig_dir / "confidence.png")
                    if method.stable else None),
        umap=_umap_figures(res, fig_dir) if res.cfg.umap.enabled else [],
        kaplan_meier=(ch.plot_survival(char.patients, time="time", event="event", logrank_p=surv["logrank_p"],
                                       path=fig_dir / "kaplan_meier.png") if "logrank_p" in surv else None),
        montage=ch.plot_montage(char.montage, per_subtype=res.cfg.characterize.montage_per_subtype,
                                figure=fig_dir / "montage.png"),
        sites=composition_figure(res.diagnosis.sites, path=fig_dir / "site_composition.png") if method.stable else None)


def _umap_figures(res: ClusteringResult, fig_dir: Path) -> list[tuple[Path, str]]:
    """UMAP scatters by subtype, confidence, dataset and by the labels/outcomes derived tables may show."""
    units, coords, schema = res.units, res.umap.coords, res.schema
    figs = [(scatter(coords, units.subtype, title="UMAP coloured by subtype", path=fig_dir / "umap_subtype.png"),
             "UMAP by subtype"),
            (scatter(coords, units.confidence, title="UMAP coloured by membership confidence", continuous=True,
                     path=fig_dir / "umap_confidence.png"), "UMAP by membership confidence")]
    if "dataset" in units.columns and units.dataset.nunique() > 1:
        figs.append((scatter(coords, units.dataset, title="UMAP coloured by dataset", path=fig_dir / "umap_dataset.png"),
                     "UMAP by dataset"))
    coding = {1: "1 present", 0: "0 absent", -1: "-1 uncertain"}
    for lab in [c for c in units.columns if c.startswith("label_") and c in res.shown]:
        vals = units[lab].map(lambda v: coding.get(v, "missing") if pd.notna(v) else "missing")
        figs.append((scatter(coords, vals, title=f"UMAP coloured by {lab}", path=fig_dir / f"umap_{lab}.png"),
                     f"UMAP by {lab}"))
    for col in columns_by_role(schema, "outcome"):
        if col in units.columns and col in res.shown:
            cont = schema[col]["type"] == "continuous"
            figs.append((scatter(coords, units[col], title=f"UMAP coloured by outcome {col}", continuous=cont,
                                 path=fig_dir / f"umap_outcome_{col}.png"), f"UMAP by outcome {col}"))
    return figs


def report_sections(res: ClusteringResult, figs: Figures, plan: ExportPlan, *, source: dict[str, object],
                    images: bool, atlas: bool) -> list[Section]:
    """The report's sections; ``source``: the input as the report names it; ``images``: show the montage;
    ``atlas``: an Atlas folder sits next to the report."""
    char = res.characterization
    return [_summary_section(res, source=source), _plain_language_section(char.descriptions, atlas=atlas),
            site_section(res.diagnosis, figure=figs.sites), _choice_section(res, figs),
            Section("UMAP", text=[res.umap.how], figures=figs.umap), _table1_section(char.table1),
            _enrichment_section(char.enrichment), _survival_section(char.survival, figs.kaplan_meier),
            _images_section(char.image_errors, figs.montage if images else None),
            *[Section(f"Study: {name.replace('_', ' ')}", tables=[(name, df, STUDY_LEGENDS.get(name, ""))])
              for name, df in res.studies.items()],
            _privacy_section(plan, images=images)]


def _summary_section(res: ClusteringResult, *, source: dict[str, object]) -> Section:
    """Input, graph, resolution, mixture, exported labels, sizes, stability, ARI against truth columns."""
    units, knn, choice, pts = res.units, res.knn, res.choice, res.points
    leiden, method = choice.leiden, choice.chosen
    sizes = units.subtype.value_counts().sort_index(key=lambda s: s.map(lambda g: (len(g), g)))
    methods = choice.summary()
    return Section("Summary", text=[
        f"Input: {source['kind']} ({source.get('path')}), model {source.get('model')}; "
        f"{len(units)} units, {pts.x.shape[1]} dimensions."
        + (f" Not clustered: {len(pts.excluded)} (excluded.csv; {pts.excluded.reason.iloc[0]})." if len(pts.excluded)
           else ""),
        f"kNN graph: {knn.method} cosine, k={knn.indices.shape[1]}, searched space: {knn.space}; "
        f"recall@k {knn.recall:.4f}" + (f" measured on {knn.recall_sample} sampled points." if knn.recall_sample
                                       else " (exact search)."),
        f"Leiden resolution {leiden.resolution}: {leiden.reason}.",
        (f"Gaussian mixture: {choice.gmm.n_components} class(es), {choice.gmm_method.reason}; agreement with Leiden "
         f"ARI {methods['agreement_ari']:.3f}." if choice.gmm is not None else "Gaussian mixture disabled."),
        f"Exported labels: {choice.exported} (config `labels`)"
        + ("." if method.stable else f": NO STABLE SUBTYPES ({method.reason}); every patient is in one group S1."),
        "Subtype sizes: " + ", ".join(f"{g}: {n}" for g, n in sizes.items()) + ".",
        (_stability_sentence(method.stability.summary())
         + " Membership confidence: per patient, the chance-corrected share of its subtype mates kept together across "
           "resamples (0 when a resample merges or shuffles everyone)." if method.stability is not None else ""),
    ] + [f"ARI against the truth column {k} (evaluation only, never used for clustering or for the choice): "
         f"{v['chosen']:.3f}; by resolution: "
         + ", ".join(f"{r}: {a:.3f}" for r, a in v["by_resolution"].items()) + "." for k, v in res.truth_ari.items()])


def _stability_sentence(s: dict[str, float]) -> str:
    """The resampling stability in one sentence."""
    return (f"Stability: reclustering {s['n_resamples']} random subsamples reproduced the subtypes with a mean "
            f"adjusted Rand index of {s['ari_mean']:.2f} (range {s['ari_min']:.2f} to {s['ari_max']:.2f}; 1 = identical, "
            f"0 = chance); median membership confidence {s['confidence_median']:.2f}.")


def _plain_language_section(descriptions: dict[str, str], *, atlas: bool) -> Section:
    """The subtypes described in words, and how to open the interactive map."""
    blocks = "".join(f"<p class='subtype'>{html.escape(t)}</p>" for t in descriptions.values())
    if atlas:
        blocks += ("<p>Interactive map of every patient, coloured by subtype: in the <a href='atlas/'>atlas</a> folder, "
                   "double-click <code>open_atlas_windows.bat</code>, <code>open_atlas_macos.command</code> or "
                   "<code>open_atlas_linux.sh</code>; it opens in your web browser, served from your own computer "
                   "(needs Python 3).</p>")
    return Section("The subtypes in plain language", text=[CAVEAT], html=blocks)


def _choice_section(res: ClusteringResult, figs: Figures) -> Section:
    """The resolution sweep (and the mixture's BIC) with the sweep and confidence figures."""
    choice = res.choice
    return Section("Resolution choice", text=["Per resolution: seeds' mean pairwise ARI, ARI of subsample runs "
                                              "(kNN graph rebuilt on each subsample) against the consensus, "
                                              "modularity at resolution 1."],
                   tables=[("Resolution sweep", choice.leiden.sweep.round(4),
                            "One row per Leiden resolution tried. seed_ari: agreement (adjusted Rand index, 1 = "
                            "identical) between runs with different seeds; subsample_ari: agreement of runs on "
                            "subsamples (kNN graph rebuilt) with the full run; modularity: strength of the community "
                            "structure; chosen: the resolution used.")]
                   + ([("Gaussian mixture: BIC by number of classes", choice.gmm.bic.round(2),
                        "BIC: Bayesian information criterion of a Gaussian mixture with that many classes on the "
                        "latent; the lowest is chosen.")] if choice.gmm else []),
                   figures=[(figs.sweep, "Resolution sweep")]
                   + ([(figs.confidence, "Membership confidence")] if figs.confidence else []))


def _table1_section(table1: pd.DataFrame) -> Section:
    """Table 1 by subtype with how to read its tests."""
    return Section("Table 1 by subtype", text=["One row per patient. Continuous: median [Q1, Q3], Kruskal-Wallis. "
                                               "Binary/categorical: n (%) of non-missing, chi-square or Fisher exact "
                                               "(2x2, expected < 5). A p-value marked 'descriptive only' belongs to a "
                                               "column the clustered latent was built from: the subtypes were made to "
                                               "differ in it, so it is not evidence of anything."],
                   tables=[("Table 1", table1, TABLE1_LEGEND)])


def _enrichment_section(enrich: pd.DataFrame) -> Section:
    """Label prevalence per subtype with odds ratios and q-values."""
    return Section("Label enrichment", text=["Prevalence among labelled (1/0) units; odds ratio vs the other "
                                             "subtypes, Fisher exact p, Benjamini-Hochberg q."],
                   tables=[("Label enrichment", enrich,
                            "prevalence: share of labelled images with the finding present in the subtype "
                            "(prevalence_rest: in all other subtypes); odds_ratio > 1: more frequent in the subtype; "
                            "p: Fisher exact test; q_bh: p adjusted for multiple comparisons (Benjamini-Hochberg); "
                            "uncertain and not_mentioned labels are counted but left out of the prevalence.")]
                   if len(enrich) else [])


def _survival_section(surv: dict[str, object], figure: Path | None) -> Section:
    """Log-rank test, Cox hazard ratios and the Kaplan-Meier ``figure`` (or why there is no comparison)."""
    s_text = [f"Log-rank test across subtypes: chi2 = {surv['logrank_chi2']:.2f} on {surv['logrank_df']} df, "
              f"p {'< 0.001' if surv['logrank_p'] < 1e-3 else '= ' + format_p(surv['logrank_p'])} (n = {surv['n']}, "
              f"events = {surv['events']}): the subtypes differ in survival when p is small."] if "logrank_p" in surv else [
        str(surv.get("note", "no survival analysis"))]
    if "cox_error" in surv:
        s_text.append(str(surv["cox_error"]))
    s_text += sorted({plain_warning(w) for w in surv.get("cox_warnings", [])} - {""})
    cox_legend = (f"hr: hazard ratio against {surv.get('cox_reference')} (above 1: the event comes earlier or more "
                  "often); ci_low, ci_high: its 95% confidence interval; p: Wald test that the ratio is 1.")
    return Section("Survival", text=s_text,
                   tables=[(f"Cox hazard ratios vs {surv['cox_reference']}", ch.cox_table(surv["cox"]), cox_legend)]
                   if "cox" in surv else [],
                   figures=[(figure, "Kaplan-Meier by subtype (shaded: 95% confidence band; under "
                                     "the plot: patients still at risk)")] if figure else [])


def _images_section(image_errors: list[dict[str, str]], montage: Path | None) -> Section:
    """The montage (None: not shown) and how many images failed to load."""
    return Section("Sample images", text=[f"{len(image_errors)} images could not be loaded (errors.csv)."]
                   if image_errors else [], figures=[(montage, "Sample images per subtype")] if montage else [])


def _privacy_section(plan: ExportPlan, *, images: bool) -> Section:
    """What left and what was withheld: id policy, exported columns, columns withheld from tables and figures, images."""
    text = [f"Hand over the export/ folder only (its README.txt lists what is in it). Patient ids: {plan.id_policy()}.",
            "Exported columns next to the subtypes: " + (", ".join(plan.columns) if plan.columns else "none") + ".",
            "Patient images: " + ("shown (image montage; Atlas thumbnails where configured)." if images else
                                  "withheld (no image montage; no Atlas when it carries image thumbnails; allow them "
                                  "with export.images if your data agreement permits).")]
    if plan.withheld:
        text.append("Withheld from every table and figure because they look identifying (allow them with "
                    "export.summary_columns / export.allow_identifying if your data agreement permits): "
                    + "; ".join(f"{c} ({why})" for c, why in plan.withheld.items()) + ".")
    else:
        text.append("No column was withheld from the tables and figures.")
    return Section("Privacy: what this export contains", text=text)
