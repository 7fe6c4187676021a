"""The pipeline config: one YAML with a section per stage, each validated by the stage's own model.

A section (or any mapping inside one) is either written out, or ``{from: PATH, ...overrides}``: the
YAML mapping in ``PATH`` (relative to the including file's folder) with the given keys deep-merged over
it (``core.config.resolve_includes``, which every stage's loader applies too), so a pipeline config
reuses the per-stage configs in ``configs/<stage>/`` instead of copying them.
A stage may add pipeline defaults under the section (``Stage.defaults``; e.g. the embedders stage
rebuilds the run's own store when the cohort changed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.config import INCLUDE_KEY, ConfigError, deep_merge, read_yaml, resolve_includes, validate_config

from .stages import STAGES

TOP_LEVEL_KEYS = {"name", "description"} | {stage.name for stage in STAGES}


def load_pipeline_config(path: str | Path) -> tuple[str, dict[str, BaseModel]]:
    """Read and validate every section of a pipeline config; returns (run name, {stage: config})."""
    data: dict[str, Any] = read_yaml(path, includes=False)   # resolved per section, to name the included file
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"invalid config {path}: unknown top-level key(s) {unknown}; "
                          f"allowed: {sorted(TOP_LEVEL_KEYS)}")
    sections: dict[str, BaseModel] = {}
    for stage in STAGES:
        if stage.name not in data:
            if stage.optional:
                continue
            raise ConfigError(f"invalid config {path}: missing section '{stage.name}'")
        raw = data[stage.name] or {}
        source = f"{path} [{stage.name}]"
        section = deep_merge(stage.defaults, resolve_includes(raw, base_dir=Path(path).parent, source=source))
        if isinstance(raw, dict) and INCLUDE_KEY in raw:
            source += f" (from {raw[INCLUDE_KEY]})"
        sections[stage.name] = validate_config(section, stage.load_model(), source=source)
    return str(data.get("name") or Path(path).stem), sections
