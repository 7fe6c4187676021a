"""The five stages the pipeline chains, and how each one is called.

Each stage is imported lazily by dotted name, so the pipeline knows stages only through their
public ``run_<stage>`` function and config model and the readers of their outputs
(docs/data-contracts.md), never their internals.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from benchmarks.selection import read_selection
from core.config import ConfigError


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its config section, config model, entry point and output folder."""

    name: str                 # config section and output folder name
    package: str              # package whose source is part of the stage's cache key
    config_model: str         # "module:Class"
    entry: str                # "module:function"
    inputs: Callable[[Path, set[str]], dict[str, Any]]  # (run folder, configured stages) -> entry-point inputs
    optional: bool = False    # a section that may be left out of the config
    defaults: dict[str, Any] = field(default_factory=dict)  # pipeline defaults under the section's own values
    # its outputs record and check the inputs they came from, so after an earlier stage reran the stage resumes
    # them instead of starting afresh (the store: the manifest's sha256 and each model's identity, rebuilt by
    # ``overwrite`` where they differ)
    checks_own_inputs: bool = False

    def load_model(self) -> type[BaseModel]:
        """The stage's pydantic config class."""
        return _resolve(self.config_model)

    def entry_point(self) -> Callable[..., dict[str, Path]]:
        """The stage's ``run_<stage>(cfg, *, ..., out)`` function."""
        return _resolve(self.entry)

    def out_dir(self, run_dir: Path) -> Path:
        """Folder this stage writes inside the run folder."""
        return run_dir / self.name


def _resolve(spec: str) -> Any:
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def store_path(run_dir: Path) -> Path:
    """The run's embedding store."""
    return run_dir / "embedders" / "embeddings.zarr"


def _selection(run_dir: Path) -> Path | None:
    path = run_dir / "benchmarks" / "selection.json"
    return path if path.is_file() else None


def _clustering_inputs(run_dir: Path, configured: set[str]) -> dict[str, Any]:
    """The fusion latents when fusion is configured; else the benchmark's selected model in the store."""
    bench = {"benchmark": run_dir / "benchmarks"} if "benchmarks" in configured else {}   # for the validity panel
    if "fusion" in configured:
        return {"cohort": run_dir / "cohorts", "latents": run_dir / "fusion" / "latents.zarr", **bench}
    selection = _selection(run_dir)
    if selection is None:
        raise ConfigError("the clustering stage needs the fusion latents or the benchmark's selected model: "
                          "configure a 'fusion' or a 'benchmarks' section")
    sel = read_selection(selection)
    return {"cohort": run_dir / "cohorts", "store": store_path(run_dir), "model": sel.model,
            "pooling": sel.pooling or "mean", **bench}


STAGES: tuple[Stage, ...] = (
    Stage("cohorts", "cohorts", "cohorts.config:CohortsConfig", "cohorts.run:run_cohorts",
          lambda run, _: {}),
    # the run folder's store belongs to the run: rebuilt when the cohort stage made a new manifest (another
    # sha256), resumed when a cohort rerun left the manifest as it was (e.g. only the clinical table changed)
    Stage("embedders", "embedders", "embedders.config:EmbeddersConfig", "embedders.run:run_embedders",
          lambda run, _: {"manifest": run / "cohorts" / "manifest.parquet", "store": store_path(run)},
          defaults={"overwrite": True}, checks_own_inputs=True),
    Stage("benchmarks", "benchmarks", "benchmarks.config:BenchmarksConfig", "benchmarks.run:run_benchmarks",
          lambda run, _: {"cohort": run / "cohorts", "store": store_path(run)}, optional=True),
    # fusion (VAE + survival head) needs a clinical table; without it clustering uses the selected embeddings
    Stage("fusion", "fusion", "fusion.config:FusionConfig", "fusion.run:run_fusion",
          lambda run, _: {"cohort": run / "cohorts", "store": store_path(run), "selection": _selection(run)},
          optional=True),
    Stage("clustering", "clustering", "clustering.config:ClusteringConfig", "clustering.run:run_clustering",
          _clustering_inputs),
)
