"""Clustering stage: kNN graph -> Leiden subtypes -> stability -> UMAP -> characterisation -> export.

CLI::

    python -m clustering.run --config FILE --cohort COHORT_DIR --latents FUSION_DIR/latents.zarr --out DIR
    python -m clustering.run --config FILE --cohort COHORT_DIR --store STORE.zarr --model NAME [--pooling mean] --out DIR

Python: :func:`run_clustering`.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from benchmarks.config import Pooling
from core import cli
from core.provenance import write_run_record
from core.safeio import check_output_dir, locked_output, relative_path, write_csv, write_json

from . import characterize as ch
from .anndata_export import scanpy_uns, write_h5ad
from .atlas import atlas_table, export_atlas, thumbnails
from .choice import Choice, choose
from .config import ClusteringConfig, load_clustering_config
from .diagnose import diagnose, site_section
from .environment import compute_environment
from .export import ExportPlan, export_ids, plan_export, write_export
from .figures import plot_confidence, plot_sweep
from .handover import EXPORT_DIR, assemble_export
from .inputs import Points, load_cohort, load_points
from .knn import build_knn
from .leiden import connectivities
from .narrative import CAVEAT, describe_subtypes
from .privacy import guard_frame
from .report import TABLE1_LEGEND, Section, format_p, plain_warning, write_report
from .studies import cross_dataset_study, label_noise_study
from .umap_embed import layout_quality, scatter, umap_layout
from .validity import panel_html

log = logging.getLogger(__name__)


def _columns_by_role(schema: dict[str, dict], *roles: str) -> list[str]:
    return [c for c, s in schema.items() if s.get("role") in roles]


def _truth_ari(units: pd.DataFrame, schema: dict[str, dict], choice: Choice) -> tuple[dict[str, dict], dict[str, dict]]:
    """Against each categorical ``truth`` column: ``truth_ari`` (chosen + every swept resolution) and ``truth``
    (ARI/AMI of the exported subtypes, and the ARI of each method's partition as found)."""
    out, simple = {}, {}
    for col in _columns_by_role(schema, "truth"):
        ok = units[col].notna().to_numpy()
        if schema[col]["type"] == "continuous" or ok.sum() < 2:
            continue
        truth = units.loc[ok, col].astype(str)
        out[col] = {"chosen": float(adjusted_rand_score(truth, units.loc[ok, "subtype"])),
                    "by_resolution": {r: float(adjusted_rand_score(truth, lab[ok]))
                                      for r, lab in choice.leiden.partitions.items()}}
        simple[col] = {"ari": out[col]["chosen"], "ami": float(adjusted_mutual_info_score(truth, units.loc[ok, "subtype"])),
                       "n_subtypes": choice.chosen.n_subtypes,
                       "leiden_ari": out[col]["by_resolution"][choice.leiden.resolution],
                       "gmm_ari": float(adjusted_rand_score(truth, choice.gmm.labels[ok])) if choice.gmm else None}
    return out, simple


def _umap_figures(units: pd.DataFrame, coords: np.ndarray, schema: dict[str, dict], fig_dir: Path, *,
                  shown: list[str]) -> list[tuple[Path, str]]:
    """UMAP scatters by subtype, confidence, dataset and by the labels/outcomes in ``shown`` (the export plan)."""
    figs = [(scatter(coords, units.subtype, title="UMAP coloured by subtype", path=fig_dir / "umap_subtype.png"),
             "UMAP by subtype"),
            (scatter(coords, units.confidence, title="UMAP coloured by membership confidence", continuous=True,
                     path=fig_dir / "umap_confidence.png"), "UMAP by membership confidence")]
    if "dataset" in units.columns and units.dataset.nunique() > 1:
        figs.append((scatter(coords, units.dataset, title="UMAP coloured by dataset", path=fig_dir / "umap_dataset.png"),
                     "UMAP by dataset"))
    labels = [c for c in units.columns if c.startswith("label_") and c in shown]
    coding = {1: "1 present", 0: "0 absent", -1: "-1 uncertain"}
    for lab in labels:
        vals = units[lab].map(lambda v: coding.get(v, "missing") if pd.notna(v) else "missing")
        figs.append((scatter(coords, vals, title=f"UMAP coloured by {lab}", path=fig_dir / f"umap_{lab}.png"),
                     f"UMAP by {lab}"))
    for col in _columns_by_role(schema, "outcome"):
        if col in units.columns and col in shown:
            cont = schema[col]["type"] == "continuous"
            figs.append((scatter(coords, units[col], title=f"UMAP coloured by outcome {col}", continuous=cont,
                                 path=fig_dir / f"umap_outcome_{col}.png"), f"UMAP by outcome {col}"))
    return figs


def run_clustering(cfg: ClusteringConfig, *, cohort: Path, latents: Path | None = None, store: Path | None = None,
                   model: str | None = None, pooling: Pooling = "mean", benchmark: Path | None = None,
                   out: Path) -> dict[str, Path]:
    """Run the whole clustering stage into ``out``; returns the written outputs by name.

    ``pooling``: how multi-token store embeddings become one vector (the benchmark's ``selection.json`` choice).
    ``benchmark`` (BENCH_DIR, optional) lets the validity panel judge the model selection.
    """
    t0 = time.perf_counter()
    out = check_output_dir(Path(out), what="clustering output folder")
    run_root = out.resolve().parent                 # paths in the outputs are relative to the run folder
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    coh = load_cohort(Path(cohort))
    pts: Points = load_points(coh, latents=latents, store=store, model=model, unit=cfg.unit,
                              augmentation=cfg.augmentation, pooling=pooling)
    units, schema = pts.units, coh.schema
    plan = plan_export(units, cfg, schema, out=out, source=f"{cohort} (manifest + clinical)")  # before the long work
    if plan.withheld:
        log.warning("withheld from tables and figures (identifying): %s", sorted(plan.withheld))
    log.info("clustering %d %ss of %d dims from %s", len(units), cfg.unit, pts.x.shape[1], pts.source["kind"])

    knn = build_knn(pts.x, cfg.knn, seed=cfg.seed)
    log.info("kNN graph: %s", knn.summary())
    adj = connectivities(knn)
    choice = choose(knn.rep, adj, cfg)
    leiden, method = choice.leiden, choice.chosen
    labels, stab = method.labels, method.stability
    units = units.assign(subtype=[f"S{k + 1}" for k in labels],
                         confidence=stab.confidence if method.stable else np.full(len(units), np.nan))
    if cfg.umap.enabled:
        coords, umap_how = umap_layout(knn.rep, knn, labels, cfg.umap, cfg.knn, seed=cfg.seed, graph=adj)
        umap_quality = layout_quality(knn.rep, coords, k=cfg.knn.k, seed=cfg.seed, labels=labels)
        umap_how += (f"; on {umap_quality['sample']} sampled points the layout keeps "
                     f"{umap_quality['knn_preservation']:.1%} of each point's {cfg.knn.k} cosine neighbours among its "
                     f"{cfg.knn.k} nearest in 2-D (chance {umap_quality['chance']:.2%})"
                     + (f", subtype silhouette {umap_quality['silhouette']:.2f}" if "silhouette" in umap_quality else ""))
    else:
        coords, umap_how = np.full((len(units), 2), np.nan, np.float32), "UMAP disabled in the config"
        umap_quality = {}
    units = units.assign(umap_1=coords[:, 0], umap_2=coords[:, 1])

    sweep_png = plot_sweep(leiden.sweep, path=fig_dir / "resolution_sweep.png")
    conf_png = plot_confidence(stab.confidence, units.subtype, path=fig_dir / "confidence.png") if method.stable else None
    umap_figs = _umap_figures(units, coords, schema, fig_dir, shown=plan.summary) if cfg.umap.enabled else []

    t1_schema = {c: s for c, s in schema.items() if s.get("role") in ("feature", "outcome") and c in plan.summary}
    patients, split_patients = ch.per_patient(units)            # outcomes and Table 1: one row per patient, always
    model_inputs = set(_columns_by_role(schema, "feature")) if pts.source["kind"] == "fusion latents" else set()
    table1, t1_stats = ch.table1(patients, t1_schema, descriptive=model_inputs)
    write_csv(table1, out / "table1.csv")
    write_csv(t1_stats, out / "table1_stats.csv")
    label_cols = [c for c in units.columns if c.startswith("label_") and c in plan.summary]
    enrich = ch.label_enrichment(units, label_cols)
    write_csv(enrich, out / "label_enrichment.csv")
    surv = (ch.survival(patients, time="time", event="event", figure=fig_dir / "kaplan_meier.png",
                        max_ratio=cfg.validity.hr_max_ratio)
            if {"time", "event"} <= set(plan.summary) else
            {"note": "no time/event columns in clinical.parquet" if not {"time", "event"} <= set(units.columns)
             else "time/event withheld from summaries (export.summary_columns or identifying values)"})
    montage_png, img_errors = (ch.montage(units["path"], units.subtype, per_subtype=cfg.characterize.montage_per_subtype,
                                          tile=cfg.characterize.montage_size, seed=cfg.seed, figure=fig_dir / "montage.png")
                               if cfg.characterize.montage_per_subtype and "path" in units.columns else (None, []))
    if img_errors:
        write_csv(pd.DataFrame(img_errors), out / "errors.csv")
    if len(pts.excluded):
        write_csv(export_ids(pts.excluded, plan), out / "excluded.csv")
    truth, truth_simple = _truth_ari(units, schema, choice)
    diag = diagnose(knn.rep, units, coh.manifest, indices=knn.indices, choice=choice, survival=surv,
                    n_excluded=len(pts.excluded), model_inputs=model_inputs, cfg=cfg, out=out, latents=latents,
                    benchmark=benchmark)
    descriptions = describe_subtypes(patients, t1_schema, surv)

    studies: dict[str, pd.DataFrame] = {}
    if cfg.studies.label_noise and method.stable:
        studies["label_noise"] = label_noise_study(pts.x, units, cfg, labels=labels, resolution=leiden.resolution)
    if cfg.studies.cross_dataset and method.stable:
        studies["cross_dataset"] = cross_dataset_study(pts.x, units, cfg, labels=labels, resolution=leiden.resolution)
    for name, df in studies.items():
        write_csv(df, out / f"study_{name}.csv")

    write_csv(leiden.sweep, out / "resolution_sweep.csv")
    if choice.gmm is not None:
        write_csv(choice.gmm.bic, out / "gmm_bic.csv")
    source = {**pts.source, "path": relative_path(pts.source.get("path"), root=run_root)}
    surv_out = {**surv, **({"figure": relative_path(surv["figure"], root=out)} if "figure" in surv else {})}
    metrics = {"n": int(len(units)), "unit": cfg.unit, "input": source, "knn": knn.summary(),
               "connectivities_edges": int(adj.nnz // 2), "leiden": {"backend": cfg.leiden.backend,
               "resolution": leiden.resolution, "reason": leiden.reason, "n_subtypes": choice.leiden_method.n_subtypes,
               "seconds": round(leiden.seconds, 2)},
               "n_subtypes": method.n_subtypes, "stable_structure": method.stable, "methods": choice.summary(),
               "truth": truth_simple, "site_ami": diag.site_ami(),
               "validity": {c["check"]: c["status"] for c in diag.checks},
               "subtype_sizes": units.subtype.value_counts().to_dict(),
               "stability": stab.summary() if stab is not None else None,
               "patients_with_images_in_several_subtypes": split_patients,
               "excluded": len(pts.excluded),
               "umap": umap_how, "umap_quality": umap_quality, "truth_ari": truth, "survival": surv_out,
               "image_errors": len(img_errors), "ids": plan.id_policy(), "withheld_from_summaries": plan.withheld,
               "subtype_descriptions": descriptions,
               "environment": compute_environment(), "seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "metrics.json", metrics)

    base = units[["patient_id", "subtype", "confidence", "umap_1", "umap_2"]]
    if cfg.unit == "image":
        base = base.assign(image_id=units.image_id)
    paths = write_export(base, units, cfg, schema, out=out, source=f"{cohort} (manifest + clinical)", plan=plan,
                         provenance={"input": source, "knn": knn.summary(), "resolution": leiden.resolution,
                                     "seed": cfg.seed, "cohort": relative_path(cohort, root=run_root)})
    key = "image_id" if cfg.unit == "image" else "patient_id"
    obs = export_ids(units[list(dict.fromkeys([key, "patient_id", "subtype", "confidence", *plan.columns]))], plan)
    paths["h5ad"] = write_h5ad(
        out / "subtypes.h5ad", obs, latent=pts.x, umap=coords if cfg.umap.enabled else None, connectivities=adj,
        indices=knn.indices, distances=knn.distances, index=key,
        uns=scanpy_uns(cfg, knn_method=knn.method, space=knn.space, resolution=leiden.resolution, reason=leiden.reason))
    if cfg.atlas.enabled:   # row level: the same allow-list as the subtypes table, pseudonymous ids
        rows = guard_frame(pd.concat([base, units[plan.columns]], axis=1), allowed=plan.columns,
                           keep=list(base.columns), schema=schema, allow_identifying=cfg.export.allow_identifying,
                           where="atlas.parquet")
        frame = export_ids(rows, plan)
        if cfg.atlas.thumbnails and "path" in units.columns:
            frame["thumbnail"], n_bad = thumbnails(units["path"], size=cfg.atlas.thumbnails)
            if n_bad:
                log.warning("Atlas thumbnails: %d image(s) could not be loaded (left blank)", n_bad)
        table = atlas_table(frame, indices=knn.indices, distances=knn.distances)
        paths.update(export_atlas(table, out=out / "atlas", application=cfg.atlas.application))

    def report(path: Path, *, images: bool, links: dict[str, str]) -> Path:
        sections = _report_sections(units, knn, choice, umap_how, sweep_png, conf_png, umap_figs, table1, enrich,
                                    surv, montage_png if images else None, img_errors, truth, studies, pts,
                                    source=source)
        sections.insert(1, _plain_language_section(descriptions, atlas=(path.parent / "atlas" / "open_atlas.py").is_file()))
        sections.insert(2, site_section(diag))
        sections.append(_privacy_section(plan, images=images))
        return write_report(path, "cxr-fusion: candidate subtypes", sections, meta=metrics, links=links,
                            top_html=panel_html(diag.checks))

    paths["report"] = report(out / "report.html", images=True,
                             links={"metrics.json": "metrics.json", "validity.json": "validity.json",
                                    "site_diagnostics.json": "site_diagnostics.json",
                                    "provenance.json": "provenance.json", "run.json": "run.json",
                                    "config.resolved.yaml": "config.resolved.yaml", "export/": "export/README.txt"})
    atlas_images = bool(cfg.atlas.enabled and cfg.atlas.thumbnails and "path" in units.columns)
    handed = assemble_export(out, images=cfg.export.images, atlas_has_images=atlas_images, write_report=lambda p, im: report(
        p, images=im, links={"validity.json": "validity.json", "site_diagnostics.json": "site_diagnostics.json",
                             "provenance.json": "provenance.json", "data_dictionary.csv": "data_dictionary.csv"}))
    paths["export"] = out / EXPORT_DIR
    paths["export_report"] = handed["report"]
    paths["run"] = write_run_record(out, cfg, stage="clustering", extra={"metrics": "metrics.json"})
    paths.update({"metrics": out / "metrics.json", "table1": out / "table1.csv", "figures": fig_dir,
                  "validity": out / "validity.json", "site_diagnostics": out / "site_diagnostics.json",
                  "label_enrichment": out / "label_enrichment.csv", "resolution_sweep": out / "resolution_sweep.csv"})
    log.info("clustering done in %.1f s: %d subtypes, outputs in %s", time.perf_counter() - t0, labels.max() + 1, out)
    return paths


def _plain_language_section(descriptions: dict[str, str], *, atlas: bool) -> Section:
    """The subtypes described in words, and how to open the interactive map."""
    import html

    blocks = "".join(f"<p class='subtype'>{html.escape(t)}</p>" for t in descriptions.values())
    text = [CAVEAT]
    if atlas:
        blocks += ("<p>Interactive map of every patient, coloured by subtype: in the <a href='atlas/'>atlas</a> folder, "
                   "double-click <code>open_atlas_windows.bat</code>, <code>open_atlas_macos.command</code> or "
                   "<code>open_atlas_linux.sh</code>; it opens in your web browser, served from your own computer "
                   "(needs Python 3).</p>")
    return Section("The subtypes in plain language", text=text, html=blocks)


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


def _report_sections(units, knn, choice, umap_how, sweep_png, conf_png, umap_figs, table1, enrich, surv,
                     montage_png, img_errors, truth, studies, pts, *, source) -> list[Section]:
    leiden, method = choice.leiden, choice.chosen
    sizes = units.subtype.value_counts().sort_index(key=lambda s: s.map(lambda g: (len(g), g)))
    methods = choice.summary()
    secs = [Section("Summary", text=[
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
         + ", ".join(f"{r}: {a:.3f}" for r, a in v["by_resolution"].items()) + "." for k, v in truth.items()])]
    secs.append(Section("Resolution choice", text=["Per resolution: seeds' mean pairwise ARI, ARI of subsample runs "
                                                   "(kNN graph rebuilt on each subsample) against the consensus, "
                                                   "modularity at resolution 1."],
                        tables=[("Resolution sweep", leiden.sweep.round(4),
                                 "One row per Leiden resolution tried. seed_ari: agreement (adjusted Rand index, 1 = "
                                 "identical) between runs with different seeds; subsample_ari: agreement of runs on "
                                 "subsamples (kNN graph rebuilt) with the full run; modularity: strength of the community "
                                 "structure; chosen: the resolution used.")]
                        + ([("Gaussian mixture: BIC by number of classes", choice.gmm.bic.round(2),
                             "BIC: Bayesian information criterion of a Gaussian mixture with that many classes on the "
                             "latent; the lowest is chosen.")] if choice.gmm else []),
                        figures=[(sweep_png, "Resolution sweep")] + ([(conf_png, "Membership confidence")] if conf_png else [])))
    secs.append(Section("UMAP", text=[umap_how], figures=umap_figs))
    secs.append(Section("Table 1 by subtype", text=["One row per patient. Continuous: median [Q1, Q3], Kruskal-Wallis. "
                                                    "Binary/categorical: n (%) of non-missing, chi-square or Fisher exact "
                                                    "(2x2, expected < 5). A p-value marked 'descriptive only' belongs to a "
                                                    "column the clustered latent was built from: the subtypes were made to "
                                                    "differ in it, so it is not evidence of anything."],
                        tables=[("Table 1", table1, TABLE1_LEGEND)]))
    secs.append(Section("Label enrichment", text=["Prevalence among labelled (1/0) units; odds ratio vs the other "
                                                  "subtypes, Fisher exact p, Benjamini-Hochberg q."],
                        tables=[("Label enrichment", enrich,
                                 "prevalence: share of labelled images with the finding present in the subtype "
                                 "(prevalence_rest: in all other subtypes); odds_ratio > 1: more frequent in the subtype; "
                                 "p: Fisher exact test; q_bh: p adjusted for multiple comparisons (Benjamini-Hochberg); "
                                 "uncertain and not_mentioned labels are counted but left out of the prevalence.")]
                        if len(enrich) else []))
    s_text = [f"Log-rank test across subtypes: chi2 = {surv['logrank_chi2']:.2f} on {surv['logrank_df']} df, "
              f"p {'< 0.001' if surv['logrank_p'] < 1e-3 else '= ' + format_p(surv['logrank_p'])} (n = {surv['n']}, "
              f"events = {surv['events']}): the subtypes differ in survival when p is small."] if "logrank_p" in surv else [
        str(surv.get("note", "no survival analysis"))]
    if "cox_error" in surv:
        s_text.append(str(surv["cox_error"]))
    s_text += sorted({plain_warning(w) for w in surv.get("cox_warnings", [])} - {""})
    cox_legend = (f"hr: hazard ratio against {surv.get('cox_reference')} (above 1: the event comes earlier or more "
                  "often); ci_low, ci_high: its 95% confidence interval; p: Wald test that the ratio is 1.")
    secs.append(Section("Survival", text=s_text,
                        tables=[(f"Cox hazard ratios vs {surv['cox_reference']}", ch.cox_table(surv["cox"]), cox_legend)]
                        if "cox" in surv else [],
                        figures=[(Path(surv["figure"]), "Kaplan-Meier by subtype (shaded: 95% confidence band; under "
                                                        "the plot: patients still at risk)")] if "figure" in surv else []))
    secs.append(Section("Sample images", text=[f"{len(img_errors)} images could not be loaded (errors.csv)."]
                        if img_errors else [], figures=[(montage_png, "Sample images per subtype")] if montage_png else []))
    for name, df in studies.items():
        secs.append(Section(f"Study: {name.replace('_', ' ')}", tables=[(name, df, STUDY_LEGENDS.get(name, ""))]))
    return secs


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


def _stability_sentence(s: dict[str, float]) -> str:
    """The resampling stability in one sentence."""
    return (f"Stability: reclustering {s['n_resamples']} random subsamples reproduced the subtypes with a mean "
            f"adjusted Rand index of {s['ari_mean']:.2f} (range {s['ari_min']:.2f} to {s['ari_max']:.2f}; 1 = identical, "
            f"0 = chance); median membership confidence {s['confidence_median']:.2f}.")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    ap = cli.parser("python -m clustering.run", __doc__)
    ap.add_argument("--config", type=Path, required=True, help="clustering YAML or a pipeline config with a 'clustering' section")
    ap.add_argument("--cohort", type=Path, required=True, help="COHORT_DIR with manifest.parquet (+ clinical.parquet)")
    ap.add_argument("--latents", type=Path, help="FUSION_DIR/latents.zarr")
    ap.add_argument("--store", type=Path, help="embedding store STORE.zarr (per-image embeddings)")
    ap.add_argument("--model", help="model group in the store")
    ap.add_argument("--pooling", choices=get_args(Pooling), default="mean",
                    help="multi-token store embeddings: mean over tokens, flatten or cls (token 0)")
    ap.add_argument("--benchmark", type=Path, help="BENCH_DIR (optional): the validity panel judges its model selection")
    ap.add_argument("--out", type=Path, required=True)
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_clustering_config(args.config)
    with locked_output(args.out):
        paths = run_clustering(cfg, cohort=args.cohort, latents=args.latents, store=args.store, model=args.model,
                               pooling=args.pooling, benchmark=args.benchmark, out=args.out)
    metrics = json.loads(paths["metrics"].read_text())
    print(f"{metrics['n']} {metrics['unit']}s -> {metrics['leiden']['n_subtypes']} subtypes "
          f"(resolution {metrics['leiden']['resolution']}); report: {paths['report']}")
    if metrics["truth_ari"]:
        print("ARI vs truth: " + ", ".join(f"{k}={v['chosen']:.3f}" for k, v in metrics["truth_ari"].items()))
    if "logrank_p" in metrics["survival"]:
        print(f"log-rank p = {metrics['survival']['logrank_p']:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
