"""A synthetic Emory CXR release: Emory-shaped tables plus several correlated "model" embeddings of the same images.

Tables (parquet, the shapes of the real release at the default sizes):

* ``metadata.parquet`` -- one row per image (2,430,209 x 19): ``sop_id`` (image key), ``empi_anon``
  (patient), ``acc_anon`` (study), ``ViewPosition``, ``study_date``, ``age``, ``sex``, ``race``, ``site``, ...
* ``findings.parquet`` -- one row per study (1,323,308 x 15): ``acc_anon`` + 14 CheXpert-style findings coded
  1 / 0 / -1 / null.
* ``manufacturer.parquet`` -- one row per image for 76% of images (x 4): ``sop_id``, ``Manufacturer``, ...
* ``sdoh.parquet`` -- one row per patient (x ``sdoh_columns``): ``empi_anon`` + area-level SDOH values.

Embeddings of ``n_images`` sampled images (the same SOP ids for every model), one folder per model under
``embeddings/`` in shards of ``shard_rows`` rows, rows shuffled, in the formats of :data:`FORMATS` (parquet with
an ``embedding`` list column, ``.npy`` + ``.ids.txt``, ``.npz``). A model's embedding of image ``i`` is

    x_m(i) = W_m z(i) + sum_f  w[m, f] * D_{m,f}[level_f(i)] + noise,

with ``z`` a latent shared by every model (driven by the findings), ``W_m`` a model-specific random map (so
models agree on the disease signal in different coordinates), ``D_{m,f}`` random unit directions per level of
nuisance factor ``f`` (manufacturer, view, sex, age band, site) and ``w`` the ground truth of what each model
encodes (:data:`DEFAULT_TRUTH`, written to ``truth.json``). The last model misses a few sampled images and has
a few ids that are not in the sample, so the import has something to report.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
            "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
            "Fracture", "Support Devices")
SITES = ("EUH", "EUHM", "EJCH", "ESJH", "TEC")
MANUFACTURERS = ("GE Healthcare", "Philips", "Siemens", "Carestream", "Fujifilm")
VIEWS = ("PA", "AP", "LL")
FACTORS = ("manufacturer", "view", "sex", "age_band", "site")
AGE_BANDS = (0, 40, 60, 75, 200)
# what each synthetic model encodes beyond the shared disease signal (weight of each nuisance factor)
DEFAULT_TRUTH: dict[str, dict[str, float]] = {
    "rad-dino-synth": {"view": 2.0},
    "medimageinsight-synth": {"manufacturer": 2.0},
    "biomedclip-synth": {"sex": 1.5, "age_band": 1.0},
    "chexagent-synth": {"site": 1.5},
    "medgemma-synth": {},
}
FORMATS = ("parquet", "npy", "npz")


@dataclass
class SynthEmory:
    """Where the generator wrote: the tables, the sampled ids, one embeddings folder per model, the truth."""

    root: Path
    tables: dict[str, Path]
    sample_ids: Path
    embeddings: dict[str, Path]
    formats: dict[str, str]
    truth: dict[str, dict[str, float]]


def _write(table: dict[str, np.ndarray], path: Path) -> Path:
    pq.write_table(pa.table(table), path, row_group_size=262_144)
    return path


def _ids(prefix: str, idx: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(idx.astype(str), 8))


def _tables(root: Path, rng: np.random.Generator, *, n_metadata: int, n_patients: int, n_studies: int,
            sdoh_columns: int) -> dict[str, Path]:
    """Write the four tables; returns their paths."""
    study_patient = rng.integers(0, n_patients, n_studies)
    image_study = np.concatenate([np.arange(n_studies), rng.integers(0, n_studies, n_metadata - n_studies)])
    image_study.sort()
    patient = study_patient[image_study]
    p_sex = rng.choice(np.array(["F", "M"]), n_patients)
    p_age = np.clip(rng.normal(60, 17, n_patients), 18, 100)
    p_site_idx = rng.choice(len(SITES), n_patients, p=[0.35, 0.25, 0.15, 0.15, 0.10])
    p_site = np.array(SITES)[p_site_idx]
    site_idx = p_site_idx[patient]
    # manufacturer mostly follows the site (each site has a main vendor), else any vendor
    manu = np.where(rng.random(n_metadata) < 0.6, site_idx, rng.integers(0, len(MANUFACTURERS), n_metadata))
    view = rng.choice(np.array(VIEWS), n_metadata, p=[0.45, 0.45, 0.10])
    day = rng.integers(0, 365 * 8, n_studies)[image_study]
    sop = _ids("sop", np.arange(n_metadata))
    meta = {
        "sop_id": sop, "empi_anon": _ids("p", patient), "acc_anon": _ids("a", image_study),
        "series_id": _ids("ser", image_study), "ViewPosition": view,
        "study_date": (np.datetime64("2015-01-01") + day.astype("timedelta64[D]")),
        "age": np.round(p_age[patient] + day / 365.25, 1), "sex": p_sex[patient],
        "race": rng.choice(np.array(["Black", "White", "Asian", "Other", "Unknown"]), n_patients)[patient],
        "ethnicity": rng.choice(np.array(["Non-Hispanic", "Hispanic", "Unknown"]), n_patients)[patient],
        "site": p_site[patient], "Modality": np.full(n_metadata, "CR"),
        "PhotometricInterpretation": rng.choice(np.array(["MONOCHROME2", "MONOCHROME1"]), n_metadata, p=[0.9, 0.1]),
        "Rows": rng.choice(np.array([2048, 2500, 3000]), n_metadata), "Columns": rng.choice(np.array([2048, 2500]), n_metadata),
        "BitsStored": rng.choice(np.array([10, 12, 16]), n_metadata),
        "png_path": np.char.add(np.char.add("png/", sop), ".png"),
        "study_description": rng.choice(np.array(["XR CHEST 1V", "XR CHEST 2V PA LAT", "XR CHEST PORTABLE"]), n_metadata),
        "year": 2015 + day // 365,
    }
    tables = {"metadata": _write(meta, root / "metadata.parquet")}
    del meta
    severity = rng.normal(size=n_studies)
    findings: dict[str, np.ndarray] = {"acc_anon": _ids("a", np.arange(n_studies))}
    for j, name in enumerate(FINDINGS):
        p = 1 / (1 + np.exp(-(severity * (0.5 + j % 3 * 0.4) - 1.2)))
        coded = (rng.random(n_studies) < p).astype(np.float32)
        coded[rng.random(n_studies) < 0.05] = -1
        coded[rng.random(n_studies) < 0.3] = np.nan
        findings[name] = coded
    tables["findings"] = _write(findings, root / "findings.parquet")
    has_manu = rng.random(n_metadata) < 0.76
    tables["manufacturer"] = _write({
        "sop_id": sop[has_manu], "Manufacturer": np.array(MANUFACTURERS)[manu[has_manu]],
        "ManufacturerModelName": np.char.add(np.array(MANUFACTURERS)[manu[has_manu]], " DR"),
        "StationName": np.char.add("ST", (manu[has_manu] * 7 + site_idx[has_manu]).astype(str))},
        root / "manufacturer.parquet")
    sdoh: dict[str, np.ndarray] = {"empi_anon": _ids("p", np.arange(n_patients))}
    named = ("adi_national_rank", "median_household_income", "pct_below_poverty", "pct_uninsured")
    for j in range(sdoh_columns - 1):
        name = named[j] if j < len(named) else f"sdoh_{j:03d}"
        sdoh[name] = rng.normal(size=n_patients).astype(np.float32)
    tables["sdoh"] = _write(sdoh, root / "sdoh.parquet")
    np.save(root / "manufacturer_index.npy", np.where(has_manu, manu, -1).astype(np.int8))
    return tables


def _factor_levels(meta: pa.Table, manu_index: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Integer level per sampled image of every nuisance factor."""
    age = meta.column("age").to_numpy()
    return {"manufacturer": manu_index[rows].astype(np.int64),
            "view": np.searchsorted(np.array(sorted(VIEWS)), meta.column("ViewPosition").to_numpy(zero_copy_only=False).astype(str)),
            "sex": (meta.column("sex").to_numpy(zero_copy_only=False).astype(str) == "M").astype(np.int64),
            "age_band": np.digitize(age, AGE_BANDS[1:-1]),
            "site": np.searchsorted(np.array(sorted(SITES)), meta.column("site").to_numpy(zero_copy_only=False).astype(str))}


def _write_shard(fmt: str, path: Path, ids: np.ndarray, x: np.ndarray) -> None:
    if fmt == "parquet":
        flat = pa.array(x.reshape(-1))
        pq.write_table(pa.table({"sop_id": ids, "embedding": pa.FixedSizeListArray.from_arrays(flat, x.shape[1])}),
                       path.with_suffix(".parquet"))
    elif fmt == "npy":
        np.save(path.with_suffix(".npy"), x)
        path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")
    else:
        np.savez(path.with_suffix(".npz"), sop_id=ids, embedding=x)


def generate_emory(root: Path, *, n_metadata: int = 2_430_209, n_patients: int = 159_946, n_studies: int = 1_323_308,
                   n_images: int = 100_000, dim: int = 1024, truth: dict[str, dict[str, float]] | None = None,
                   shared_dims: int = 16, noise: float = 1.0, shard_rows: int = 25_000, sdoh_columns: int = 388,
                   seed: int = 0) -> SynthEmory:
    """Write the synthetic release under ``root`` (see module doc); ``n_images`` sampled images get embeddings.

    Sizes default to the real release's; tests pass small ones. Deterministic given ``seed``.
    """
    truth = DEFAULT_TRUTH if truth is None else truth
    unknown = {f for w in truth.values() for f in w} - set(FACTORS)
    if unknown:
        raise ValueError(f"truth names unknown factors {sorted(unknown)}; use {FACTORS}")
    if not n_images <= n_metadata or not n_studies <= n_metadata:
        raise ValueError("need n_images <= n_metadata and n_studies <= n_metadata")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tables = _tables(root, rng, n_metadata=n_metadata, n_patients=n_patients, n_studies=n_studies,
                     sdoh_columns=sdoh_columns)
    manu_index = np.load(root / "manufacturer_index.npy")
    # the sample: images with a manufacturer row, same SOP ids for every model
    rows = np.sort(rng.choice(np.flatnonzero(manu_index >= 0), size=n_images, replace=False))
    meta = pq.read_table(tables["metadata"], columns=["sop_id", "acc_anon", "ViewPosition", "age", "sex", "site"]).take(rows)
    sample_ids = root / "sample_ids.txt"
    ids = meta.column("sop_id").to_numpy(zero_copy_only=False).astype(str)
    sample_ids.write_text("\n".join(ids) + "\n")
    levels = _factor_levels(meta, manu_index, rows)
    find = pq.read_table(tables["findings"])
    study = np.char.lstrip(meta.column("acc_anon").to_numpy(zero_copy_only=False).astype(str), "a").astype(np.int64)
    f = np.stack([np.nan_to_num(find.column(n).to_numpy(), nan=0.0)[study] for n in FINDINGS[:8]], 1)
    z = np.concatenate([f, rng.normal(size=(n_images, shared_dims - f.shape[1]))], 1).astype(np.float32)
    out = {}
    formats = {}
    for m, (name, weights) in enumerate(truth.items()):
        mrng = np.random.default_rng([seed, m])
        w_shared = mrng.normal(size=(shared_dims, dim)).astype(np.float32) / np.sqrt(shared_dims)
        dirs = {fac: mrng.normal(size=(int(levels[fac].max()) + 1, dim)).astype(np.float32) for fac in weights}
        order = mrng.permutation(n_images)
        if m == len(truth) - 1 and m > 0:                       # the last model misses some images
            order = order[: n_images - max(1, n_images // 1000)]
        fmt = FORMATS[m % len(FORMATS)]
        folder = root / "embeddings" / name
        folder.mkdir(parents=True, exist_ok=True)
        for s in tqdm(range(0, len(order), shard_rows), desc=f"synthetic {name}", leave=False):
            r = order[s:s + shard_rows]
            x = z[r] @ w_shared + noise * mrng.normal(size=(len(r), dim)).astype(np.float32)
            for fac, wt in weights.items():
                d = dirs[fac] / np.linalg.norm(dirs[fac], axis=1, keepdims=True)
                x += wt * np.sqrt(dim) / 4 * d[levels[fac][r]]
            shard_ids = ids[r]
            if m == len(truth) - 1 and m > 0 and s == 0:       # ... and a few ids that are not in the sample
                shard_ids = shard_ids.astype("<U32")
                shard_ids[:3] = [f"sop_unknown_{k}" for k in range(3)]
            _write_shard(fmt, folder / f"part-{s // shard_rows:04d}", shard_ids, x.astype(np.float32))
        out[name], formats[name] = folder, fmt
    (root / "truth.json").write_text(json.dumps({"encodes": truth, "factors": list(FACTORS),
                                                 "shared": "findings (first 8) + gaussian"}, indent=2))
    log.info("synthetic Emory in %s: %d images in the tables, %d with embeddings of %d models", root, n_metadata,
             n_images, len(truth))
    return SynthEmory(root, tables, sample_ids, out, formats, truth)
