"""Benchmark: whole extraction pipeline vs the bare model forward, on real images (run on demand).

Pipeline = :func:`embedders.extract.extract_chunks` into a fresh Zarr store: decode (cohorts.images),
augment, preprocess in DataLoader worker processes, overlapped with the forward, plus the chunk writes.
Reference = the same model's ``forward`` alone on the same preprocessed batches (same batch size, same
torch threads; the batches are built before the clock starts). Target: pipeline >= 0.9 x bare forward.
Wall-clock ratios need an otherwise idle machine (the decode workers need cores of their own), so the
CPU seconds of the forward's process are reported too: pipeline / bare CPU is the overhead the pipeline
adds to the forward's process (receiving batches, chunk writes), independent of other load; the decode
workers' CPU seconds and the load average are printed next to it.
Also reports the radiomics baseline's feature throughput per core, and (``--probe``) a logistic probe's
patient-grouped 5-fold AUROC per model for real labels of the manifest.

    python bench/bench_embedders.py --manifest runs/covid_cohort/manifest.parquet \\
        --weights ../shared/models/squeezenet1_1-kermany-pneumonia [--n 256] [--probe STORE.zarr]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cohorts.images import load_image  # noqa: E402
from embedders import get_embedder  # noqa: E402
from embedders.base import Embedder  # noqa: E402
from embedders.extract import extract_chunks  # noqa: E402
from embedders.store import open_store_for_writing, prepare_model_group  # noqa: E402


def _cpu(who: int) -> float:
    """User + system CPU seconds of this process (``RUSAGE_SELF``) or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def bare_forward(embedder: Embedder, batches: list[torch.Tensor]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the forward over prepared batches."""
    c0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    for b in batches:
        embedder.forward(b)
    return time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - c0


def pipeline(embedder: Embedder, ids: np.ndarray, paths: list[str], *, batch_size: int,
             decode_workers: int) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, decode workers' CPU seconds) for decode + preprocess +
    forward + store writes of all rows into a fresh store."""
    with tempfile.TemporaryDirectory() as tmp:
        root = open_store_for_writing(Path(tmp) / "s.zarr", image_ids=ids, manifest_sha256="bench")
        chunk_rows = 2 * batch_size                     # a chunk holds whole batches: the same batches as bare
        group = prepare_model_group(root, embedder.info.name, attrs=embedder.provenance(), augmentations=["original"],
                                    output_shape=embedder.info.output_shape, chunk_rows=chunk_rows)
        chunks = list(range(-(-len(ids) // chunk_rows)))
        c0, k0, t0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
        extract_chunks(embedder, group, "original", chunks, ids=ids, paths=paths, batch_size=batch_size,
                       decode_workers=decode_workers)
        return (time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - c0,
                _cpu(resource.RUSAGE_CHILDREN) - k0)


def probe(manifest: pd.DataFrame, store: Path, labels: list[str], seed: int = 0) -> pd.DataFrame:
    """Out-of-fold AUROC of a standardised L2 logistic probe (C=0.1), StratifiedGroupKFold(5) by patient."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from embedders.store import EmbeddingStore

    s = EmbeddingStore(store)
    rows = []
    for model in s.models():
        ids, x = s.read(model)
        table = pd.DataFrame(x.compute(), index=ids)
        for label in labels:
            d = manifest[manifest[label].isin([0, 1]) & manifest["image_id"].isin(ids)]
            X, y, g = table.loc[d["image_id"]].to_numpy(), d[label].astype(int).to_numpy(), d["patient_id"].to_numpy()
            oof = np.zeros(len(y))
            for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(X, y, g):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)).fit(X[tr], y[tr])
                oof[te] = clf.predict_proba(X[te])[:, 1]
            rows.append({"model": model, "label": label, "n": len(y), "positives": int(y.sum()),
                         "patients": len(set(g)), "auroc_oof": round(roc_auc_score(y, oof), 3)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--n", type=int, default=512, help="images (first rows of the manifest with a path)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--decode-workers", type=int, default=1, help="DataLoader decode processes")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probe", type=Path, help="also probe this store (labels --labels)")
    ap.add_argument("--labels", nargs="+", default=["label_COVID19", "label_ICU"])
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)

    m = pd.read_parquet(args.manifest)
    m = m[m["path"].notna()].iloc[: args.n]
    ids, paths = m["image_id"].astype(str).to_numpy(), m["path"].astype(str).tolist()
    emb = get_embedder(args.model, weights=args.weights)
    prepared = [emb.preprocess(load_image(p)) for p in paths]
    batches = [torch.stack(prepared[i:i + args.batch_size]) for i in range(0, len(prepared), args.batch_size)]
    bare_forward(emb, batches[:1])                                   # warm-up
    bare, pipe = [], []
    for _ in range(args.repeats):                                    # interleaved: load changes hit both
        bare.append(bare_forward(emb, batches))
        pipe.append(pipeline(emb, ids, paths, batch_size=args.batch_size, decode_workers=args.decode_workers))
    b = statistics.median(len(ids) / w for w, _ in bare)
    p = statistics.median(len(ids) / w for w, *_ in pipe)
    b_cpu = statistics.median(c for _, c in bare)
    p_cpu = statistics.median(c for _, c, _ in pipe)
    w_cpu = statistics.median(k for *_, k in pipe)
    print(f"{args.model}: {len(ids)} real images, batch {args.batch_size}, torch threads {args.torch_threads}, "
          f"decode workers {args.decode_workers}, {args.repeats} repeats (median), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"  bare forward   {b:8.1f} img/s   runs {[round(len(ids) / w, 1) for w, _ in bare]}")
    print(f"  full pipeline  {p:8.1f} img/s   runs {[round(len(ids) / w, 1) for w, *_ in pipe]}")
    print(f"  ratio pipeline / bare (wall) = {p / b:.3f}  (target >= 0.9)")
    print(f"  forward process CPU: bare {b_cpu:.2f} s, pipeline {p_cpu:.2f} s -> ratio {b_cpu / p_cpu:.3f}; "
          f"decode workers {w_cpu:.2f} s CPU ({1e3 * w_cpu / len(ids):.2f} ms/img)")

    rad = get_embedder("radiomics")
    imgs = torch.stack([rad.preprocess(load_image(q)) for q in paths[:128]])
    t = min(bare_forward(rad, [imgs])[0] for _ in range(args.repeats))
    print(f"radiomics features at 256 px: {len(imgs) / t:.1f} img/s on one core ({1e3 * t / len(imgs):.2f} ms/img)")
    if args.probe:
        print(probe(pd.read_parquet(args.manifest), args.probe, args.labels).to_string(index=False))


if __name__ == "__main__":
    main()
