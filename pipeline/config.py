"""The pipeline config: one YAML with a section per stage, each validated by the stage's own model."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cohorts.config import ConfigError, read_yaml, validate_config

from .stages import STAGES

TOP_LEVEL_KEYS = {"name", "description"} | {stage.name for stage in STAGES}


def load_pipeline_config(path: str | Path) -> tuple[str, dict[str, BaseModel]]:
    """Read and validate every section of a pipeline config; returns (run name, {stage: config})."""
    data: dict[str, Any] = read_yaml(path)
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
        sections[stage.name] = validate_config(data[stage.name] or {}, stage.load_model(),
                                               source=f"{path} [{stage.name}]")
    return str(data.get("name") or Path(path).stem), sections
