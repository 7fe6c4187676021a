"""Provenance helpers shared by every stage: hashes, library versions, run records."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .config import dump_config
from .safeio import write_json

TRACKED_PACKAGES = (
    "cxr-fusion", "numpy", "pandas", "torch", "transformers", "jax", "flax", "optax", "scikit-learn",
    "lightgbm", "zarr", "dask", "leidenalg", "igraph", "umap-learn", "lifelines", "pydicom",
)


def library_versions(packages: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a run depends on (missing ones as 'not installed')."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of a JSON-serialisable object (keys sorted), e.g. a resolved config."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def now_iso() -> str:
    """Current UTC time, ISO 8601."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_run_record(out_dir: str | Path, cfg: BaseModel, *, stage: str, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.resolved.yaml`` and ``run.json`` (stage, config hash, versions, time) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.resolved.yaml")
    record = {
        "stage": stage,
        "config_sha256": sha256_json(cfg.model_dump(mode="json")),
        "created": now_iso(),
        "versions": library_versions(),
        **(extra or {}),
    }
    path = out / "run.json"
    write_json(path, record)
    return path
