"""Strict YAML configs validated with pydantic.

Every stage defines its config as a subclass of :class:`StrictModel` and loads it with
:func:`load_config`. Unknown keys and wrong types raise :class:`ConfigError` naming the file
and the dotted key, so users can fix the YAML without reading a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def default_of(model: type[BaseModel], field: str) -> Any:
    """The default of ``model.field``: modules that mirror a config field (e.g. a network's sizes) take their
    default from here, so it is written once, in the config model."""
    return model.model_fields[field].get_default(call_default_factory=True)


class ConfigError(ValueError):
    """A config file that cannot be read or does not match its schema."""


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}' (check the spelling; see configs/README.md)")
        else:
            lines.append(f"  - '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


INCLUDE_KEY = "from"


def read_yaml(path: str | Path, *, includes: bool = True) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; raise ConfigError with the file name on failure.

    ``includes``: every mapping in it (at any depth) written as ``{from: PATH, ...overrides}`` becomes
    the YAML mapping in ``PATH`` (relative to the including file's folder) with the other keys
    deep-merged over it (:func:`resolve_includes`), so every stage reads a composed pipeline config
    the way the pipeline does.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level, got {type(data).__name__}")
    return resolve_includes(data, base_dir=path.parent, source=str(path)) if includes else data


def resolve_includes(section: Any, *, base_dir: Path, source: str) -> dict[str, Any]:
    """``section`` with every ``from: PATH`` include in it (at any depth) loaded and its other keys merged over."""
    if not isinstance(section, dict):
        raise ConfigError(f"invalid config {source}: a section must be a mapping, got {type(section).__name__}")
    resolved = {k: resolve_includes(v, base_dir=base_dir, source=f"{source}.{k}") if isinstance(v, dict) else v
                for k, v in section.items() if k != INCLUDE_KEY}
    if INCLUDE_KEY not in section:
        return resolved
    included = Path(section[INCLUDE_KEY])
    included = included if included.is_absolute() else base_dir / included
    return deep_merge(read_yaml(included), resolved)


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; nested mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_config(data: dict[str, Any], model: type[T], *, source: str = "<dict>") -> T:
    """Validate a mapping against ``model``; errors name ``source`` and the offending keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path, model: type[T], *, section: str | None = None) -> T:
    """Load ``path`` (optionally one top-level ``section`` of it) into ``model``.

    Relative paths inside configs stay as written; stages resolve them against the working
    directory (the repository root for the shipped configs).
    """
    data = read_yaml(path)
    source = str(path)
    if section is not None:
        if section not in data:
            raise ConfigError(f"config {path} has no '{section}' section (keys: {sorted(data)})")
        data = data[section] or {}
        source = f"{path} [{section}]"
    return validate_config(data, model, source=source)


def load_stage_config(path: str | Path, model: type[T], *, section: str) -> T:
    """A stage's own YAML, or the ``section`` of a composed pipeline config (a file with that top-level key)."""
    data = read_yaml(path)
    if section not in data:
        return validate_config(data, model, source=str(path))
    if not isinstance(data[section] or {}, dict):
        raise ConfigError(f"config {path}: section '{section}' must be a mapping")
    return validate_config(data[section] or {}, model, source=f"{path} [{section}]")


def dump_config(cfg: BaseModel, path: str | Path) -> None:
    """Write the resolved config (all defaults filled in) as YAML."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    from .safeio import write_text  # safeio imports this module

    write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
