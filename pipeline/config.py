"""The pipeline config: one YAML with a section per stage, each validated by the stage's own model.

A section (or any mapping inside one) is either written out, or ``{from: PATH, ...overrides}``: the
YAML mapping in ``PATH`` (relative to the including file's folder) with the given keys deep-merged over
it, so a pipeline config reuses the per-stage configs in ``configs/<stage>/`` instead of copying them.
A stage may add pipeline defaults under the section (``Stage.defaults``; e.g. the embedders stage
rebuilds the run's own store when the cohort changed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cohorts.config import ConfigError, read_yaml, validate_config

from .stages import STAGES

TOP_LEVEL_KEYS = {"name", "description"} | {stage.name for stage in STAGES}
INCLUDE_KEY = "from"


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
        raw = data[stage.name] or {}
        source = f"{path} [{stage.name}]"
        section = deep_merge(stage.defaults, resolve_section(raw, base_dir=Path(path).parent, source=source))
        if isinstance(raw, dict) and INCLUDE_KEY in raw:
            source += f" (from {raw[INCLUDE_KEY]})"
        sections[stage.name] = validate_config(section, stage.load_model(), source=source)
    return str(data.get("name") or Path(path).stem), sections


def resolve_section(section: Any, *, base_dir: Path, source: str) -> dict[str, Any]:
    """``section`` with every ``from: PATH`` include in it (at any depth) loaded and its other keys merged over."""
    if not isinstance(section, dict):
        raise ConfigError(f"invalid config {source}: a section must be a mapping, got {type(section).__name__}")
    resolved = {k: resolve_section(v, base_dir=base_dir, source=f"{source}.{k}") if isinstance(v, dict) else v
                for k, v in section.items() if k != INCLUDE_KEY}
    if INCLUDE_KEY not in section:
        return resolved
    included = Path(section[INCLUDE_KEY])
    included = included if included.is_absolute() else base_dir / included
    base = resolve_section(read_yaml(included), base_dir=included.parent, source=str(included))
    return deep_merge(base, resolved)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; nested mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
