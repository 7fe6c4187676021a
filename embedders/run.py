"""Extraction runner: manifest images -> the Zarr embedding store (resumable, provenance-stamped, Dask-parallel).

CLI::

    python -m embedders.run --config configs/embedders/covid_cxr.yaml --manifest COHORT/manifest.parquet \\
        --store runs/embeddings.zarr [--model NAME] [--weights PATH] [--workers N | --scheduler ADDR] [--overwrite]

``--model`` restricts the run to one model of the config (or any registered model, with default options);
``--weights`` overrides its weights. Python: :func:`run_embedders`.

Rerunning the same command resumes: only rows whose ``done`` is False are computed (rows of bad images are
retried). A store built from another manifest (sha256 differs) is refused unless ``--overwrite``. With
``--workers``/``--scheduler`` the pending chunks run as shards on Dask (see :mod:`embedders.distributed`,
which also documents SLURM via dask-jobqueue).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import zarr

from core import cli
from core.config import ConfigError
from core.parallel import dask_client
from core.provenance import library_versions, now_iso, sha256_file, write_run_record
from core.safeio import check_output_dir, locked_output, relative_path

from .base import get_embedder
from .config import EmbeddersConfig, ModelSpec, load_embedders_config
from .errors import append_errors, finalize_errors
from .extract import extract_chunks, pending_chunks
from .precomputed import import_precomputed
from .store import errors_path, open_store_for_writing, prepare_model_group

log = logging.getLogger(__name__)


def read_manifest(path: Path) -> pd.DataFrame:
    """The manifest (all columns), checked for the ``image_id``/``path`` columns and unique ids."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (run `python -m cohorts.run` first)")
    df = pd.read_parquet(path)
    missing = {"image_id", "path"} - set(df.columns)
    if missing:
        raise ValueError(f"manifest {path} lacks column(s) {sorted(missing)}; see docs/data-contracts.md")
    dupes = df["image_id"][df["image_id"].duplicated()]
    if len(dupes):
        raise ValueError(f"manifest {path}: image_id {dupes.iloc[0]!r} (row {dupes.index[0]}) is not unique")
    return df.reset_index(drop=True)


def _settings(cfg: EmbeddersConfig) -> dict[str, Any]:
    return {"batch_size": cfg.batch_size, "decode_workers": cfg.decode_workers, "torch_threads": cfg.torch_threads,
            "device": cfg.device, "half": cfg.half, "seed": cfg.seed, "chunk_rows": cfg.chunk_rows}


def _extract_model(spec: ModelSpec, cfg: EmbeddersConfig, *, root: zarr.Group, store: Path, manifest_sha: str,
                   ids: np.ndarray, paths: list[str | None], client: Any) -> dict[str, int]:
    """Extract every configured augmentation of one registered model; returns counts."""
    embedder = get_embedder(spec.name, weights=spec.weights, **spec.options).to(cfg.device, half=cfg.half)
    attrs = {**embedder.provenance(), "library_versions": library_versions(), "created": now_iso(),
             "manifest_sha256": manifest_sha, "extraction": _settings(cfg), "options": spec.options}
    group = prepare_model_group(root, spec.name, attrs=attrs, augmentations=list(cfg.augmentations),
                                output_shape=embedder.info.output_shape, chunk_rows=cfg.chunk_rows,
                                overwrite=cfg.overwrite)
    work = {aug: pending_chunks(group, aug) for aug in cfg.augmentations}
    err_file = errors_path(store)
    counts = {"rows": 0, "errors": 0}
    if client is None:
        def on_chunk(n_rows: int, errors: list) -> None:
            counts["rows"] += n_rows
            counts["errors"] += append_errors(err_file, errors)

        for aug, chunks in work.items():
            extract_chunks(embedder, group, aug, chunks, ids=ids, paths=paths, batch_size=cfg.batch_size,
                           decode_workers=cfg.decode_workers, on_chunk=on_chunk, progress=True)
    else:
        from tqdm.auto import tqdm

        from .distributed import run_sharded
        total = sum(len(c) for c in work.values())
        with tqdm(total=total, desc=f"{spec.name} shards", unit="shard") as bar:
            for n_rows, errors in run_sharded(client, name=spec.name, weights=spec.weights, options=spec.options,
                                              store=store, work=work, chunk_rows=cfg.chunk_rows, ids=ids,
                                              paths=paths, settings=_settings(cfg)):
                counts["rows"] += n_rows
                counts["errors"] += append_errors(err_file, errors)
                bar.update()
    return counts


UNET_MODELS = ("unet-jsrt", "radiomics-lung")   # models built on the JSRT UNet: its masks are checked per run


def run_embedders(cfg: EmbeddersConfig, *, manifest: Path, store: Path, out: Path | None = None) -> dict[str, Path]:
    """Extract every model x augmentation of ``cfg`` (and import its precomputed files) into ``store``.

    Returns the paths written: ``store``, ``errors`` (``STORE.zarr.errors.csv``) and ``run`` (run.json in
    ``out``, default ``STORE.zarr.run/``). Resumes an existing store built from the same manifest.
    """
    manifest, store = Path(manifest), Path(store)
    out = Path(out) if out is not None else store.with_name(store.name + ".run")
    check_output_dir(store.parent, what="store folder")                # before any model is loaded
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    df = read_manifest(manifest)
    manifest_sha = sha256_file(manifest)
    ids = df["image_id"].astype(str).to_numpy()
    paths = [None if pd.isna(p) else str(p) for p in df["path"]]
    created = not store.exists()
    root = open_store_for_writing(store, image_ids=ids, manifest_sha256=manifest_sha, overwrite=cfg.overwrite)
    summary: dict[str, dict[str, Any]] = {}
    try:
        with dask_client(workers=cfg.workers if cfg.models else 0, scheduler=cfg.scheduler if cfg.models else None
                         ) as client:
            for spec in cfg.models:
                t0 = time.perf_counter()
                counts = _extract_model(spec, cfg, root=root, store=store, manifest_sha=manifest_sha, ids=ids,
                                        paths=paths, client=client)
                summary[spec.name] = {**counts, "seconds": round(time.perf_counter() - t0, 2)}
    except Exception:
        if created and not summary:     # e.g. missing weights: no stub store left behind (a kill still resumes)
            shutil.rmtree(store, ignore_errors=True)
            errors_path(store).unlink(missing_ok=True)
        raise
    for pre in cfg.precomputed:
        summary[pre.name] = import_precomputed(pre, root=root, manifest=df, manifest_sha256=manifest_sha,
                                               chunk_rows=cfg.chunk_rows, overwrite=cfg.overwrite,
                                               errors_file=errors_path(store))
    n_errors = finalize_errors(errors_path(store), root)
    written = {"store": store, "errors": errors_path(store)}
    unet = next((m for m in cfg.models if m.name in UNET_MODELS), None)
    if unet is not None:   # the masks these models rely on, checked on this cohort's images (report figure)
        from .lung_masks import write_mask_checks
        written.update(write_mask_checks(df, unet.weights, out, seed=cfg.seed))
    run = write_run_record(out, cfg, stage="embedders", extra={
        "manifest": relative_path(manifest, root=out.parent), "manifest_sha256": manifest_sha,
        "store": relative_path(store, root=out.parent),
        "summary": summary, "errors_rows": n_errors})
    return {**written, "run": run}


def _select(cfg: EmbeddersConfig, model: str | None, weights: Path | None) -> EmbeddersConfig:
    """Restrict ``cfg`` to one model (from the config, else the registry) and apply ``--weights``."""
    if model is None:
        if weights is not None:
            raise ConfigError("--weights needs --model (which model do the weights belong to?)")
        return cfg
    pre = [p for p in cfg.precomputed if p.name == model]
    if pre:
        return cfg.model_copy(update={"models": [], "precomputed": pre})
    spec = next((m for m in cfg.models if m.name == model), ModelSpec(name=model))
    if weights is not None:
        spec = spec.model_copy(update={"weights": weights})
    return cfg.model_copy(update={"models": [spec], "precomputed": []})


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    ap = cli.parser("python -m embedders.run", __doc__)
    ap.add_argument("--config", type=Path, required=True, help="embedders YAML or a composed pipeline config")
    ap.add_argument("--manifest", type=Path, required=True, help="COHORT_DIR/manifest.parquet")
    ap.add_argument("--store", type=Path, required=True, help="STORE.zarr (created or resumed)")
    ap.add_argument("--model", help="run only this model (a config entry or a registered name)")
    ap.add_argument("--weights", type=Path, help="weights file/folder for --model")
    ap.add_argument("--out", type=Path, help="folder for config.resolved.yaml + run.json (default STORE.zarr.run)")
    par = ap.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, help="run shards on a dask LocalCluster of N processes")
    par.add_argument("--scheduler", help="address of a running dask scheduler (e.g. from dask-jobqueue)")
    ap.add_argument("--overwrite", action="store_true", help="rebuild a store made from another manifest/model")
    return cli.run(ap, _main, argv)


def _main(args: argparse.Namespace) -> int:
    cfg = _select(load_embedders_config(args.config), args.model, args.weights)
    update: dict[str, Any] = {}
    if args.workers is not None:
        update.update(workers=args.workers, scheduler=None)
    if args.scheduler:
        update["scheduler"] = args.scheduler
    if args.overwrite:
        update["overwrite"] = True
    with locked_output(args.store.parent, name=args.store.name + ".lock", what="--store folder"):
        paths = run_embedders(cfg.model_copy(update=update), manifest=args.manifest, store=args.store, out=args.out)
    print(f"store: {paths['store']}\nerrors: {paths['errors']}\nrun record: {paths['run']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
