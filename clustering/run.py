"""Clustering stage: kNN graph -> Leiden subtypes -> stability -> UMAP -> characterisation -> export.

CLI::

    python -m clustering.run --config FILE --cohort COHORT_DIR --latents FUSION_DIR/latents.zarr --out DIR
    python -m clustering.run --config FILE --cohort COHORT_DIR --store STORE.zarr --model NAME --out DIR

Python: :func:`run_clustering`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from cohorts.config import load_config, read_yaml
from cohorts.provenance import write_run_record

from . import characterize as ch
from .atlas import atlas_table, export_atlas
from .choice import Choice, choose
from .config import ClusteringConfig
from .diagnose import diagnose, site_section
from .export import check_columns, write_export
from .figures import plot_confidence, plot_sweep
from .inputs import Points, load_cohort, load_points
from .knn import build_knn
from .leiden import connectivities
from .report import Section, write_report
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


def _umap_figures(units: pd.DataFrame, coords: np.ndarray, schema: dict[str, dict], fig_dir: Path) -> list[tuple[Path, str]]:
    figs = [(scatter(coords, units.subtype, title="UMAP coloured by subtype", path=fig_dir / "umap_subtype.png"),
             "UMAP by subtype"),
            (scatter(coords, units.confidence, title="UMAP coloured by membership confidence", continuous=True,
                     path=fig_dir / "umap_confidence.png"), "UMAP by membership confidence")]
    if "dataset" in units.columns and units.dataset.nunique() > 1:
        figs.append((scatter(coords, units.dataset, title="UMAP coloured by dataset", path=fig_dir / "umap_dataset.png"),
                     "UMAP by dataset"))
    labels = [c for c in units.columns if c.startswith("label_")]
    coding = {1: "1 present", 0: "0 absent", -1: "-1 uncertain"}
    for lab in labels:
        vals = units[lab].map(lambda v: coding.get(v, "missing") if pd.notna(v) else "missing")
        figs.append((scatter(coords, vals, title=f"UMAP coloured by {lab}", path=fig_dir / f"umap_{lab}.png"),
                     f"UMAP by {lab}"))
    for col in _columns_by_role(schema, "outcome"):
        if col in units.columns:
            cont = schema[col]["type"] == "continuous"
            figs.append((scatter(coords, units[col], title=f"UMAP coloured by outcome {col}", continuous=cont,
                                 path=fig_dir / f"umap_outcome_{col}.png"), f"UMAP by outcome {col}"))
    return figs


def run_clustering(cfg: ClusteringConfig, *, cohort: Path, latents: Path | None = None, store: Path | None = None,
                   model: str | None = None, benchmark: Path | None = None, out: Path) -> dict[str, Path]:
    """Run the whole clustering stage into ``out``; returns the written outputs by name.

    ``benchmark`` (BENCH_DIR, optional) lets the validity panel judge the model selection.
    """
    t0 = time.perf_counter()
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    coh = load_cohort(Path(cohort))
    pts: Points = load_points(coh, latents=latents, store=store, model=model, unit=cfg.unit,
                              augmentation=cfg.augmentation)
    units, schema = pts.units, coh.schema
    check_columns(units, cfg, schema, source=f"{cohort} (manifest + clinical)")  # fail before the long work
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
    umap_figs = _umap_figures(units, coords, schema, fig_dir) if cfg.umap.enabled else []

    t1_schema = {c: s for c, s in schema.items() if s.get("role") in ("feature", "outcome")}
    patients, split_patients = ch.per_patient(units)            # outcomes and Table 1: one row per patient, always
    model_inputs = set(_columns_by_role(schema, "feature")) if pts.source["kind"] == "fusion latents" else set()
    table1, t1_stats = ch.table1(patients, t1_schema, descriptive=model_inputs)
    table1.to_csv(out / "table1.csv", index=False)
    t1_stats.to_csv(out / "table1_stats.csv", index=False)
    label_cols = [c for c in units.columns if c.startswith("label_")]
    enrich = ch.label_enrichment(units, label_cols)
    enrich.to_csv(out / "label_enrichment.csv", index=False)
    surv = (ch.survival(patients, time="time", event="event", figure=fig_dir / "kaplan_meier.png",
                        max_ratio=cfg.validity.hr_max_ratio)
            if {"time", "event"} <= set(units.columns) else {"note": "no time/event columns in clinical.parquet"})
    montage_png, img_errors = (ch.montage(units["path"], units.subtype, per_subtype=cfg.characterize.montage_per_subtype,
                                          tile=cfg.characterize.montage_size, seed=cfg.seed, figure=fig_dir / "montage.png")
                               if cfg.characterize.montage_per_subtype and "path" in units.columns else (None, []))
    if img_errors:
        pd.DataFrame(img_errors).to_csv(out / "errors.csv", index=False)
    if len(pts.excluded):
        pts.excluded.to_csv(out / "excluded.csv", index=False)
    truth, truth_simple = _truth_ari(units, schema, choice)
    diag = diagnose(knn.rep, units, coh.manifest, indices=knn.indices, choice=choice, survival=surv,
                    n_excluded=len(pts.excluded), model_inputs=model_inputs, cfg=cfg, out=out, latents=latents,
                    benchmark=benchmark)

    studies: dict[str, pd.DataFrame] = {}
    if cfg.studies.label_noise and method.stable:
        studies["label_noise"] = label_noise_study(pts.x, units, cfg, labels=labels, resolution=leiden.resolution)
    if cfg.studies.cross_dataset and method.stable:
        studies["cross_dataset"] = cross_dataset_study(pts.x, units, cfg, labels=labels, resolution=leiden.resolution)
    for name, df in studies.items():
        df.to_csv(out / f"study_{name}.csv", index=False)

    leiden.sweep.to_csv(out / "resolution_sweep.csv", index=False)
    if choice.gmm is not None:
        choice.gmm.bic.to_csv(out / "gmm_bic.csv", index=False)
    metrics = {"n": int(len(units)), "unit": cfg.unit, "input": pts.source, "knn": knn.summary(),
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
               "umap": umap_how, "umap_quality": umap_quality, "truth_ari": truth, "survival": surv, "image_errors": len(img_errors),
               "seconds": round(time.perf_counter() - t0, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))

    base = units[["patient_id", "subtype", "confidence", "umap_1", "umap_2"]]
    if cfg.unit == "image":
        base = base.assign(image_id=units.image_id)
    paths = write_export(base, units, cfg, schema, out=out, source=f"{cohort} (manifest + clinical)",
                         provenance={"input": pts.source, "knn": knn.summary(), "resolution": leiden.resolution,
                                     "seed": cfg.seed, "cohort": str(cohort)})
    if cfg.atlas.enabled:
        extra = [c for c in label_cols + _columns_by_role(schema, "outcome") + list(cfg.export.columns)
                 if c in units.columns and c not in base.columns]
        table = atlas_table(pd.concat([base, units[list(dict.fromkeys(extra))]], axis=1),
                            indices=knn.indices, distances=knn.distances)
        paths.update(export_atlas(table, out=out / "atlas", application=cfg.atlas.application))

    sections = _report_sections(units, knn, choice, umap_how, sweep_png, conf_png, umap_figs, table1, enrich,
                                surv, montage_png, img_errors, truth, studies, pts)
    sections.insert(1, site_section(diag))
    paths["report"] = write_report(out / "report.html", "cxr-fusion: candidate subtypes", sections, meta=metrics,
                                   top_html=panel_html(diag.checks))
    paths["run"] = write_run_record(out, cfg, stage="clustering", extra={"metrics": "metrics.json"})
    paths.update({"metrics": out / "metrics.json", "table1": out / "table1.csv", "figures": fig_dir,
                  "validity": out / "validity.json", "site_diagnostics": out / "site_diagnostics.json",
                  "label_enrichment": out / "label_enrichment.csv", "resolution_sweep": out / "resolution_sweep.csv"})
    log.info("clustering done in %.1f s: %d subtypes, outputs in %s", time.perf_counter() - t0, labels.max() + 1, out)
    return paths


def _report_sections(units, knn, choice, umap_how, sweep_png, conf_png, umap_figs, table1, enrich, surv,
                     montage_png, img_errors, truth, studies, pts) -> list[Section]:
    leiden, method = choice.leiden, choice.chosen
    sizes = units.subtype.value_counts().sort_index(key=lambda s: s.map(lambda g: (len(g), g)))
    methods = choice.summary()
    secs = [Section("Summary", text=[
        f"Input: {pts.source['kind']} ({pts.source.get('path')}), model {pts.source.get('model')}; "
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
        (f"Stability (subsample reclustering): {json.dumps({k: round(v, 3) for k, v in method.stability.summary().items()})}."
         " Membership confidence: per patient, the chance-corrected share of its subtype mates kept together across "
         "resamples (0 when a resample merges or shuffles everyone)." if method.stability is not None else ""),
    ] + [f"ARI against the truth column {k} (evaluation only, never used for clustering or for the choice): "
         f"{v['chosen']:.3f}; by resolution: "
         + ", ".join(f"{r}: {a:.3f}" for r, a in v["by_resolution"].items()) + "." for k, v in truth.items()])]
    secs.append(Section("Resolution choice", text=["Per resolution: seeds' mean pairwise ARI, ARI of subsample runs "
                                                   "(kNN graph rebuilt on each subsample) against the consensus, "
                                                   "modularity at resolution 1."],
                        tables=[("Resolution sweep", leiden.sweep.round(4))]
                        + ([("Gaussian mixture: BIC by number of classes", choice.gmm.bic.round(2))] if choice.gmm else []),
                        figures=[(sweep_png, "Resolution sweep")] + ([(conf_png, "Membership confidence")] if conf_png else [])))
    secs.append(Section("UMAP", text=[umap_how], figures=umap_figs))
    secs.append(Section("Table 1 by subtype", text=["One row per patient. Continuous: median [Q1, Q3], Kruskal-Wallis. "
                                                    "Binary/categorical: n (%) of non-missing, chi-square or Fisher exact "
                                                    "(2x2, expected < 5). A p-value marked 'descriptive only' belongs to a "
                                                    "column the clustered latent was built from: the subtypes were made to "
                                                    "differ in it, so it is not evidence of anything."],
                        tables=[("Table 1", table1)]))
    secs.append(Section("Label enrichment", text=["Prevalence among labelled (1/0) units; odds ratio vs the other "
                                                  "subtypes, Fisher exact p, Benjamini-Hochberg q."],
                        tables=[("Label enrichment", enrich)] if len(enrich) else []))
    s_text = [f"Log-rank test across subtypes: chi2 = {surv['logrank_chi2']:.2f} on {surv['logrank_df']} df, "
              f"p = {surv['logrank_p']:.3g} (n = {surv['n']}, events = {surv['events']})."] if "logrank_p" in surv else [
        str(surv.get("note", "no survival analysis"))]
    if "cox_error" in surv:
        s_text.append(str(surv["cox_error"]))
    s_text += [f"Cox fit warning: {w}" for w in surv.get("cox_warnings", [])]
    secs.append(Section("Survival", text=s_text,
                        tables=[(f"Cox hazard ratios vs {surv['cox_reference']}", ch.cox_table(surv["cox"]))] if "cox" in surv else [],
                        figures=[(Path(surv["figure"]), "Kaplan-Meier by subtype")] if "figure" in surv else []))
    secs.append(Section("Sample images", text=[f"{len(img_errors)} images could not be loaded (errors.csv)."]
                        if img_errors else [], figures=[(montage_png, "Sample images per subtype")] if montage_png else []))
    for name, df in studies.items():
        secs.append(Section(f"Study: {name.replace('_', ' ')}", tables=[(name, df)]))
    return secs


def main(argv: list[str] | None = None) -> None:
    """CLI entry point (see module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m clustering.run", description=__doc__.split("\n")[0])
    ap.add_argument("--config", type=Path, required=True, help="clustering YAML or a pipeline config with a 'clustering' section")
    ap.add_argument("--cohort", type=Path, required=True, help="COHORT_DIR with manifest.parquet (+ clinical.parquet)")
    ap.add_argument("--latents", type=Path, help="FUSION_DIR/latents.zarr")
    ap.add_argument("--store", type=Path, help="embedding store STORE.zarr (per-image embeddings)")
    ap.add_argument("--model", help="model group in the store")
    ap.add_argument("--benchmark", type=Path, help="BENCH_DIR (optional): the validity panel judges its model selection")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        section = "clustering" if "clustering" in read_yaml(args.config) else None
        cfg = load_config(args.config, ClusteringConfig, section=section)
        paths = run_clustering(cfg, cohort=args.cohort, latents=args.latents, store=args.store, model=args.model,
                               benchmark=args.benchmark, out=args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    metrics = json.loads(paths["metrics"].read_text())
    print(f"{metrics['n']} {metrics['unit']}s -> {metrics['leiden']['n_subtypes']} subtypes "
          f"(resolution {metrics['leiden']['resolution']}); report: {paths['report']}")
    if metrics["truth_ari"]:
        print("ARI vs truth: " + ", ".join(f"{k}={v['chosen']:.3f}" for k, v in metrics["truth_ari"].items()))
    if "logrank_p" in metrics["survival"]:
        print(f"log-rank p = {metrics['survival']['logrank_p']:.3g}")


if __name__ == "__main__":
    main()
