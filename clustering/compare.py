"""Compare how several embedding models arrange the same images (the Emory study's question, measured).

CLI::

    python -m clustering.compare --config configs/compare/covid_cxr.yaml --cohort COHORT_DIR \\
        --store STORE.zarr --out DIR

For the images every compared model has (the others are listed in ``missing.csv``, never dropped silently):

* every model pair: linear CKA on the raw embeddings, the Jaccard overlap of their k=15 cosine neighbour
  sets (overall and per level of each metadata column), ARI/AMI of their Leiden partitions;
* every model x metadata column: a patient-grouped logistic probe (out-of-fold macro AUROC) -- what each
  model encodes (manufacturer, view, sex, age band, site, findings ...);
* the images whose neighbourhoods disagree most across models (lowest mean Jaccard over pairs), as montages;
* per model: the kNN graph, Leiden clusters and UMAP of the clustering stage (same code, same config keys),
  UMAP panels side by side with one colouring, sample images per cluster, and one Embedding Atlas table
  with every model's coordinates as columns (switch the x/y columns to switch model views).

Outputs in ``DIR``: ``report.html`` (self-contained), ``figures/*.png``, ``pairs.csv``, ``probes.csv``,
``knn_jaccard_groups.csv``, ``disagreement.csv``, ``clusters.parquet``, ``missing.csv``, ``metrics.json``,
``atlas/``, ``config.resolved.yaml`` + ``run.json``. Python: :func:`run_compare`.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import re
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from core import cli
from core.config import load_stage_config
from core.provenance import write_run_record
from core.safeio import locked_output
from embedders.bulk import alignment_table
from embedders.store import EmbeddingStore

from . import characterize as ch
from .atlas import atlas_table, export_atlas
from .compare_config import CompareConfig
from .compare_figures import heatmap, umap_panels
from .compare_metrics import (
    gram_norm,
    knn_jaccard,
    linear_cka,
    partition_agreement,
    probe_auroc,
    probe_targets,
    variance_concentration,
)
from .inputs import InputError, load_cohort, load_store
from .knn import build_knn
from .leiden import connectivities
from .report import Section, write_report
from .sweep import sweep
from .umap_embed import umap_layout

log = logging.getLogger(__name__)

_MIN_GROUP = 20          # images a metadata level needs for its own Jaccard row


@dataclass
class ModelView:
    """One model's arrangement of the shared images."""

    name: str
    indices: np.ndarray          # (n, k) neighbour rows
    distances: np.ndarray        # (n, k)
    rep: np.ndarray              # (n, d') searched space (PCA scores)
    labels: np.ndarray           # (n,) Leiden clusters
    coords: np.ndarray           # (n, 2) UMAP (NaN when not laid out)
    summary: dict[str, object]


def shared_images(store: EmbeddingStore, models: list[str], *, augmentation: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Bool mask ``(N,)`` of store rows every model has, and the rows some models lack (``missing.csv``)."""
    done = {m: store.done(m, augmentation) for m in models}
    return np.logical_and.reduce(list(done.values())), alignment_table(store.image_ids(), done)


def load_shared(store_path: Path, models: list[str], rows: np.ndarray, *, augmentation: str) -> dict[str, np.ndarray]:
    """Each model's ``(n, d)`` float32 embeddings of the store rows ``rows`` (multi-token outputs mean-pooled)."""
    store = EmbeddingStore(store_path)
    out = {}
    for m in models:
        done = np.flatnonzero(store.done(m, augmentation))
        _, x, _ = load_store(store_path, model=m, augmentation=augmentation)
        out[m] = np.ascontiguousarray(x[np.searchsorted(done, rows)])
    return out


def _band(values: pd.Series, edges: list[float]) -> pd.Series:
    labels = [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
    return pd.cut(pd.to_numeric(values, errors="coerce"), bins=edges, labels=labels, right=False).astype("string")


def unit_frame(cohort_dir: Path, image_ids: np.ndarray, cfg: CompareConfig) -> tuple[pd.DataFrame, list[str]]:
    """Per shared image: ``image_id, patient_id, path`` + the configured columns (bands added); and the column names."""
    coh = load_cohort(Path(cohort_dir))
    man = coh.manifest.set_index("image_id")
    unknown = pd.Index(image_ids).difference(man.index)
    if len(unknown):
        raise InputError(f"{len(unknown)} store image ids are not in {cohort_dir}/manifest.parquet "
                         f"(e.g. {list(unknown[:3])}): the store comes from a different cohort")
    units = man.loc[image_ids].reset_index()
    if coh.clinical is not None:
        clin = coh.clinical[[c for c in coh.clinical.columns if c == "patient_id" or c not in units.columns]]
        units = units.merge(clin, on="patient_id", how="left", validate="many_to_one")
    columns = []
    for col in cfg.columns:
        if col not in units.columns:
            raise InputError(f"compare config: column {col!r} is in neither {cohort_dir}/manifest.parquet nor "
                             f"clinical.parquet (have {sorted(units.columns)[:30]})")
        if col in cfg.bins:
            units[f"{col}_band"] = _band(units[col], cfg.bins[col])
            columns.append(f"{col}_band")
        else:
            columns.append(col)
    keep = ["image_id", "patient_id"] + (["path"] if "path" in units.columns else [])
    return units[list(dict.fromkeys(keep + list(cfg.columns) + columns))], columns


def _category(values: pd.Series) -> pd.Series:
    """Label columns as '1 present' / '0 absent' (others unused); other columns as strings."""
    if str(values.name).startswith("label_"):
        return values.map({1: "1 present", 0: "0 absent"}).astype("string")
    return values.astype("string")


def model_view(name: str, x: np.ndarray, cfg: CompareConfig) -> ModelView:
    """The clustering stage's kNN graph, Leiden partition and UMAP of one model's embeddings ``x`` ``(n, d)``."""
    t0 = time.perf_counter()
    knn = build_knn(x, cfg.knn, seed=cfg.seed)
    adj = connectivities(knn)
    leiden = sweep(adj, cfg.leiden, rep=knn.rep, knn_cfg=cfg.knn, seed=cfg.seed)
    if cfg.umap.enabled:
        coords, how = umap_layout(knn.rep, knn, leiden.labels, cfg.umap, cfg.knn, seed=cfg.seed, graph=adj)
    else:
        coords, how = np.full((len(x), 2), np.nan, np.float32), "UMAP disabled"
    summary = {"knn": knn.summary(), "leiden": {"resolution": leiden.resolution, "reason": leiden.reason,
                                                "n_clusters": int(leiden.labels.max() + 1)},
               "umap": how, "seconds": round(time.perf_counter() - t0, 1)}
    log.info("%s: %s clusters, kNN %s, %.1f s", name, summary["leiden"]["n_clusters"], knn.method, summary["seconds"])
    return ModelView(name, knn.indices, knn.distances, knn.rep, leiden.labels, coords, summary)


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def _pair_matrix(pairs: pd.DataFrame, models: list[str], col: str) -> pd.DataFrame:
    mat = pd.DataFrame(np.eye(len(models)), index=models, columns=models)
    for r in pairs.itertuples():
        mat.loc[r.model_a, r.model_b] = mat.loc[r.model_b, r.model_a] = getattr(r, col)
    return mat


def _group_jaccard(units: pd.DataFrame, columns: list[str], jac: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = []
    mean = np.mean(list(jac.values()), axis=0)
    for col in columns:
        cats = _category(units[col])
        for lev in sorted(cats.dropna().unique()):
            m = (cats == lev).fillna(False).to_numpy()
            if m.sum() < _MIN_GROUP:
                continue
            rows.append({"column": col, "level": lev, "n": int(m.sum()), "mean_over_pairs": float(mean[m].mean()),
                         **{pair: float(j[m].mean()) for pair, j in jac.items()}})
    return pd.DataFrame(rows)


def _has_images(units: pd.DataFrame) -> bool:
    paths = units["path"].dropna() if "path" in units.columns else pd.Series(dtype=str)
    return bool(len(paths)) and Path(str(paths.iloc[0])).is_file()


def run_compare(cfg: CompareConfig, *, cohort: Path, store: Path, out: Path) -> dict[str, Path]:
    """Run the comparison into ``out``; returns the written outputs by name."""
    t0 = time.perf_counter()
    out, store = Path(out), Path(store)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    st = EmbeddingStore(store)
    models = cfg.models or st.models()
    if len(models) < 2:
        raise InputError(f"compare needs at least 2 models; store {store} has {st.models()} (config models: {cfg.models})")
    for m in models:
        if m not in st.models():
            raise InputError(f"compare config: model {m!r} is not in {store} (has {st.models()})")
    shared, missing = shared_images(st, models, augmentation=cfg.augmentation)
    missing.to_csv(out / "missing.csv", index=False)
    rows = np.flatnonzero(shared)
    if len(rows) <= cfg.knn.k + 1:
        raise InputError(f"only {len(rows)} images are in all of {models}: see {out / 'missing.csv'}")
    if len(missing):
        log.warning("%d images are in some compared models but not all; compared on the %d in all (missing.csv)",
                    len(missing), len(rows))
    units, columns = unit_frame(cohort, st.image_ids()[rows], cfg)
    groups = units["patient_id"].astype(str).to_numpy()
    xs = load_shared(store, models, rows, augmentation=cfg.augmentation)

    steps: dict[str, float] = {"load": time.perf_counter() - t0}
    t_cka = time.perf_counter()
    cka_rows = (np.sort(np.random.default_rng(cfg.seed).choice(len(rows), cfg.cka_max_n, replace=False))
                if cfg.cka_max_n and cfg.cka_max_n < len(rows) else slice(None))
    norms = {m: gram_norm(xs[m][cka_rows]) for m in models}
    cka = {(a, b): linear_cka(xs[a][cka_rows], xs[b][cka_rows], norm_x=norms[a], norm_y=norms[b])
           for a, b in combinations(models, 2)}
    concentration = {m: variance_concentration(xs[m][cka_rows]) for m in models}
    cka_seconds = steps["cka"] = time.perf_counter() - t_cka
    t_step = time.perf_counter()

    views: dict[str, ModelView] = {}
    for m in models:
        views[m] = model_view(m, xs.pop(m), cfg)
        gc.collect()

    steps["per_model"], t_step = time.perf_counter() - t_step, time.perf_counter()
    probe_rows = []
    for m in models:
        for col in columns:
            codes, levels = probe_targets(_category(units[col]), groups, min_patients=cfg.probes.min_patients)
            res = probe_auroc(views[m].rep, codes, groups, folds=cfg.probes.folds, C=cfg.probes.C, seed=cfg.seed,
                              max_n=cfg.probes.max_n)
            probe_rows.append({"model": m, "column": col, **res, "level_names": ";".join(levels)})
    probes = pd.DataFrame(probe_rows)

    steps["probes"], t_step = time.perf_counter() - t_step, time.perf_counter()
    jac = {f"{a} | {b}": knn_jaccard(views[a].indices, views[b].indices) for a, b in combinations(models, 2)}
    pair_rows = []
    for a, b in combinations(models, 2):
        j = jac[f"{a} | {b}"]
        pair_rows.append({"model_a": a, "model_b": b, "cka": cka[(a, b)], "knn_jaccard": float(j.mean()),
                          "knn_jaccard_median": float(np.median(j)),
                          **partition_agreement(views[a].labels, views[b].labels)})
    pairs = pd.DataFrame(pair_rows)
    agreement = np.mean(list(jac.values()), axis=0)
    group_jac = _group_jaccard(units, columns, jac)
    k = views[models[0]].indices.shape[1]
    chance = k / (len(rows) - 1)

    per_model = pd.DataFrame({f"cluster_{_safe(m)}": [f"C{c + 1}" for c in v.labels] for m, v in views.items()})
    for m, v in views.items():
        per_model[f"umap_1_{_safe(m)}"], per_model[f"umap_2_{_safe(m)}"] = v.coords[:, 0], v.coords[:, 1]
    base = units[["image_id", "patient_id"] + columns].reset_index(drop=True)
    clusters = pd.concat([base.assign(agreement=agreement), per_model], axis=1)
    clusters.to_parquet(out / "clusters.parquet", index=False)
    dis = units[["image_id", "patient_id"] + columns].assign(agreement=agreement,
                                                             **{p: j for p, j in jac.items()})
    dis.sort_values("agreement", kind="stable").to_csv(out / "disagreement.csv", index=False)
    pairs.to_csv(out / "pairs.csv", index=False)
    probes.to_csv(out / "probes.csv", index=False)
    group_jac.to_csv(out / "knn_jaccard_groups.csv", index=False)

    steps["pairs_tables"], t_step = time.perf_counter() - t_step, time.perf_counter()
    figs = {"cka": heatmap(_pair_matrix(pairs, models, "cka"), title="Linear CKA (raw embeddings)",
                           path=fig_dir / "cka.png"),
            "jaccard": heatmap(_pair_matrix(pairs, models, "knn_jaccard"), title=f"Mean Jaccard of k={k} cosine "
                               "neighbour sets", path=fig_dir / "knn_jaccard.png"),
            "ari": heatmap(_pair_matrix(pairs, models, "ari"), title="ARI of Leiden partitions",
                           path=fig_dir / "leiden_ari.png", vmin=-0.05)}
    if len(probes):
        figs["probes"] = heatmap(probes.pivot(index="model", columns="column", values="auroc").loc[models, columns],
                                 title="What each model encodes: patient-grouped probe AUROC", vmin=0.5,
                                 path=fig_dir / "probes.png", cmap="magma")
    if len(group_jac):
        gj = group_jac.assign(group=group_jac.column + "=" + group_jac.level.astype(str)).set_index("group")
        figs["groups"] = heatmap(gj[list(jac)].T, title="Mean neighbour Jaccard per metadata group",
                                 path=fig_dir / "knn_jaccard_groups.png", vmax=float(max(0.05, gj[list(jac)].max().max())))
    coords = {m: v.coords for m, v in views.items()}
    umap_figs = []
    if cfg.umap.enabled:
        colourings = [("cluster of " + models[0], pd.Series([f"C{c + 1}" for c in views[models[0]].labels])),
                      ("neighbour agreement across models", pd.Series(agreement))]
        colourings += [(c, _category(units[c]).reset_index(drop=True)) for c in columns]
        for i, (label, vals) in enumerate(colourings):
            umap_figs.append((umap_panels(coords, vals, title=f"UMAP per model, coloured by {label}",
                                          path=fig_dir / f"umap_{i:02d}_{_safe(label)}.png"), f"coloured by {label}"))

    steps["figures"], t_step = time.perf_counter() - t_step, time.perf_counter()
    montages, img_errors = [], []
    if _has_images(units):
        n_band = max(1, int(round(cfg.disagreement.fraction * len(rows))))
        order = np.argsort(agreement, kind="stable")
        band = pd.Series(pd.NA, index=units.index, dtype="string")
        band.iloc[order[:n_band]] = "low agreement"
        mid = len(order) // 2
        band.iloc[order[max(0, mid - n_band // 2): mid + n_band - n_band // 2]] = "mid agreement"
        band.iloc[order[-n_band:]] = "high agreement"
        if cfg.disagreement.montage:
            sel = band.notna().to_numpy()
            png, err = ch.montage(units.loc[sel, "path"], band[sel],
                                  per_subtype=cfg.disagreement.montage, tile=cfg.montage_size, seed=cfg.seed,
                                  figure=fig_dir / "montage_agreement.png",
                                  title="Images by neighbour agreement across models")
            img_errors += err
            if png:
                montages.append((png, f"images by neighbour agreement across models (bottom / middle / top "
                                      f"{cfg.disagreement.fraction:.0%})"))
        if cfg.montage_per_cluster:
            for m, v in views.items():
                png, err = ch.montage(units["path"], pd.Series([f"C{c + 1}" for c in v.labels]),
                                      per_subtype=cfg.montage_per_cluster, tile=cfg.montage_size, seed=cfg.seed,
                                      figure=fig_dir / f"montage_clusters_{_safe(m)}.png",
                                      title=f"Sample images per Leiden cluster of {m}")
                img_errors += err
                if png:
                    montages.append((png, f"sample images per cluster of {m}"))
    if img_errors:
        pd.DataFrame(img_errors).to_csv(out / "errors.csv", index=False)

    paths: dict[str, Path] = {}
    steps["montages"], t_step = time.perf_counter() - t_step, time.perf_counter()
    if cfg.atlas.enabled:
        first = views[models[0]]
        frame = clusters.assign(umap_1=first.coords[:, 0], umap_2=first.coords[:, 1])
        paths.update(export_atlas(atlas_table(frame, indices=first.indices, distances=first.distances),
                                  out=out / "atlas", application=cfg.atlas.application))

    steps["atlas"] = time.perf_counter() - t_step
    metrics = {"models": models, "n_shared": len(rows), "n_partial": len(missing),
               "columns": columns, "knn_chance_jaccard": chance, "cka_rows": int(len(rows) if cfg.cka_max_n is None
                                                                                else min(cfg.cka_max_n, len(rows))),
               "cka_seconds": round(cka_seconds, 1), "variance_top5_share": concentration, "step_seconds": {k: round(v, 1) for k, v in steps.items()},
               "pairs": pair_rows, "per_model": {m: v.summary for m, v in views.items()},
               "probes": probes.drop(columns="level_names").to_dict("records"), "image_errors": len(img_errors),
               "seconds": round(time.perf_counter() - t0, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    sections = _sections(models, pairs, probes, group_jac, units, missing, figs, umap_figs, montages, metrics,
                         views, columns, img_errors)
    paths["report"] = write_report(out / "report.html", "cxr-fusion: embedding model comparison", sections, meta=metrics)
    paths["run"] = write_run_record(out, cfg, stage="clustering.compare",
                                    extra={"cohort": str(cohort), "store": str(store), "metrics": "metrics.json"})
    paths.update({"metrics": out / "metrics.json", "pairs": out / "pairs.csv", "probes": out / "probes.csv",
                  "groups": out / "knn_jaccard_groups.csv", "disagreement": out / "disagreement.csv",
                  "clusters": out / "clusters.parquet", "missing": out / "missing.csv", "figures": fig_dir})
    log.info("comparison of %d models on %d images done in %.1f s: %s", len(models), len(rows),
             time.perf_counter() - t0, out)
    return paths


CONCENTRATED = 0.9   # top-5 variance share from which the report warns that a few features dominate a model


def _sections(models, pairs, probes, group_jac, units, missing, figs, umap_figs, montages, metrics, views, columns,
              img_errors) -> list[Section]:
    n = metrics["n_shared"]
    chance = metrics["knn_chance_jaccard"]
    best = pairs.sort_values("knn_jaccard", ascending=False).iloc[0]
    worst = pairs.sort_values("knn_jaccard").iloc[0]
    text = [f"{len(models)} models ({', '.join(models)}) compared on the {n} images all of them have"
            + (f"; {metrics['n_partial']} images are in some models only (missing.csv) and are left out." if
               metrics["n_partial"] else "."),
            f"Neighbourhoods: the most alike pair is {best.model_a} / {best.model_b} (mean Jaccard of the 15 "
            f"neighbours {best.knn_jaccard:.3f}), the least alike {worst.model_a} / {worst.model_b} "
            f"({worst.knn_jaccard:.3f}); two unrelated arrangements would overlap by about {chance:.4f}.",
            "CKA is computed on the raw embeddings of all shared images" + (
                f" (a seeded sample of {metrics['cka_rows']})" if metrics["cka_rows"] < n else "")
            + "; neighbours, Leiden, UMAP and probes work in each model's searched space (PCA as configured in knn), "
              "as the clustering stage does."]
    for m, share in metrics["variance_top5_share"].items():
        if share >= CONCENTRATED:
            text.append(f"{m}: 5 of its dimensions carry {share:.0%} of its variance (raw features on very different "
                        "scales), so its CKA, neighbourhoods, clusters and UMAP mostly reflect those few features; "
                        "standardise such features before comparing if that is not what you want to compare.")
    if n < 500:
        text.append(f"Only {n} shared images: pairwise numbers carry sampling noise of several hundredths; "
                    "read differences smaller than that as no difference.")
    secs = [Section("Summary", text=text, tables=[("Model pairs", pairs.round(4))],
                    figures=[(figs[k], k) for k in ("cka", "jaccard", "ari") if k in figs])]
    if len(probes):
        wide = probes.pivot(index="model", columns="column", values="auroc").loc[models, columns]
        lead = [f"{c}: {wide[c].idxmax()} ({wide[c].max():.2f})" for c in columns if wide[c].notna().any()]
        untestable = [f"{r.model}/{r.column}" for r in probes.itertuples() if not np.isfinite(r.auroc)]
        everywhere = [c for c in columns if not c.startswith("label_") and wide[c].notna().all() and wide[c].min() >= 0.8]
        if everywhere:
            lead.append(f"every model encodes {', '.join(everywhere)} strongly (AUROC >= 0.8 in all): neighbourhoods and "
                        "clusters of any of them can follow it, and a finding whose prevalence differs across its "
                        "levels can be probed through it")
        secs.append(Section("What each model encodes", text=[
            "Out-of-fold macro one-vs-rest AUROC of an L2 logistic probe from each model to each column, folds "
            "grouped by patient (0.5 = not encoded). A high AUROC for a column that is not the finding (manufacturer, "
            "site, view) means the model's geometry carries it, so clusters of that model may follow it.",
            "Highest per column: " + "; ".join(lead) + "."]
            + ([f"Not testable (fewer than 2 levels with enough patients per fold): {', '.join(untestable)}."]
               if untestable else []),
            tables=[("Probe AUROC (models x columns)", wide.round(3).reset_index())],
            figures=[(figs["probes"], "probe AUROC heatmap")]))
    if len(group_jac):
        low = group_jac.sort_values("mean_over_pairs").head(5)
        secs.append(Section("Where the models disagree", text=[
            "Mean neighbour Jaccard over model pairs per metadata group (groups of at least 20 images). "
            "Lowest: " + "; ".join(f"{r.column}={r.level} ({r.mean_over_pairs:.3f}, n={r.n})" for r in low.itertuples())
            + ". disagreement.csv lists every image with its agreement, lowest first."],
            tables=[("Neighbour Jaccard per group", group_jac.round(4))],
            figures=[(figs["groups"], "Jaccard per group")] if "groups" in figs else []))
    secs.append(Section("Per-model clusters and UMAP", text=[
        "Each model: " + "; ".join(f"{m}: {v.summary['leiden']['n_clusters']} Leiden clusters at resolution "
                                   f"{v.summary['leiden']['resolution']} ({v.summary['knn']['method']} kNN, "
                                   f"{v.summary['seconds']} s)" for m, v in views.items()) + ".",
        "Every panel row shows the same images coloured the same way in each model's own UMAP. The Embedding Atlas "
        "table (atlas/atlas.parquet) has every model's coordinates as umap_1_<model>/umap_2_<model>: choose them as "
        "x/y to switch views on the same points."], figures=umap_figs))
    secs.append(Section("Sample images", text=([f"{len(img_errors)} images could not be loaded (errors.csv)."]
                                               if img_errors else []) + ([] if montages else
                                                                         ["No image files in the manifest: no montages."]),
                        figures=montages))
    if len(missing):
        secs.append(Section("Images not in every model", tables=[("first 20 (missing.csv has all)", missing.head(20))]))
    return secs


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    ap = cli.parser("python -m clustering.compare", __doc__)
    ap.add_argument("--config", type=Path, required=True, help="compare YAML (or a pipeline config with a 'compare' section)")
    ap.add_argument("--cohort", type=Path, required=True, help="COHORT_DIR with manifest.parquet (+ clinical.parquet)")
    ap.add_argument("--store", type=Path, required=True, help="embedding store STORE.zarr")
    ap.add_argument("--out", type=Path, required=True)
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = load_stage_config(args.config, CompareConfig, section="compare")
    with locked_output(args.out):
        paths = run_compare(cfg, cohort=args.cohort, store=args.store, out=args.out)
    metrics = json.loads(paths["metrics"].read_text())
    print(f"{len(metrics['models'])} models on {metrics['n_shared']} shared images; report: {paths['report']}")
    for p in metrics["pairs"]:
        print(f"  {p['model_a']} | {p['model_b']}: CKA {p['cka']:.3f}, kNN Jaccard {p['knn_jaccard']:.3f}, "
              f"ARI {p['ari']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
