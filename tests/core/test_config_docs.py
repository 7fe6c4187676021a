"""configs/README.md states each key's default: the config models are the source, the page must agree.

Every table row ``| `key`, `key2` | `default`, `default2` | meaning |`` of a stage section is read; keys after
the first inherit its dotted prefix (``umap.enabled``, ``min_dist``). A row is checked when it names as many
plain defaults (YAML scalars or lists in backticks) as keys; rows that describe a default in words or ranges
(``[0.001 .. 1]``) are counted as not checkable.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from benchmarks.config import BenchmarksConfig
from clustering.compare_config import CompareConfig
from clustering.config import ClusteringConfig
from cohorts.config import CohortsConfig
from embedders.bulk import BulkImportConfig
from embedders.config import EmbeddersConfig
from fusion.config import FusionConfig
from fusion.survival.config import SurvivalConfig

README = Path(__file__).resolve().parents[2] / "configs" / "README.md"
SECTIONS = {"cohorts": CohortsConfig, "embedders": EmbeddersConfig, "embedders.bulk": BulkImportConfig,
            "benchmarks": BenchmarksConfig, "clustering": ClusteringConfig, "clustering.compare": CompareConfig,
            "fusion": FusionConfig, "fusion.survival": SurvivalConfig}
NOT_A_DEFAULT = object()


def _sections() -> dict[str, list[str]]:
    """Table rows of each stage section (``## name``) and of each dotted subsection (``### embedders.bulk``: another
    command's config); other subsections stay with their stage."""
    out: dict[str, list[str]] = {}
    current = None
    for line in README.read_text().splitlines():
        heading = re.match(r"(##|###) `?([\w.]+)", line)
        if heading and (heading[1] == "##" or "." in heading[2]):
            name = heading[2]
            current = name if name in SECTIONS else None
            out.setdefault(name, [])
        elif current and line.startswith("| `"):
            out[current].append(line)
    return out


def _model_default(model: type[BaseModel], dotted: str) -> Any:
    """Default of ``a.b.c`` in ``model`` (through nested models); NOT_A_DEFAULT when there is none to compare."""
    head, _, rest = dotted.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return NOT_A_DEFAULT
    if rest:
        sub = field.annotation
        return _model_default(sub, rest) if isinstance(sub, type) and issubclass(sub, BaseModel) else NOT_A_DEFAULT
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return NOT_A_DEFAULT
    else:
        value = field.default
    if isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
        return [v.model_dump(mode="json", exclude_none=True) for v in value]
    return NOT_A_DEFAULT if isinstance(value, BaseModel) else value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):       # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _row(line: str) -> tuple[list[str], list[str]] | None:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 3:
        return None
    keys = re.findall(r"`([^`]+)`", cells[0])
    defaults = re.findall(r"`([^`]+)`", cells[1])
    if not keys or len(defaults) != len(keys) or any(".." in d for d in defaults):
        return None
    prefix = keys[0].rpartition(".")[0]
    keys = [keys[0]] + [k if "." in k or not prefix else f"{prefix}.{k}" for k in keys[1:]]
    return keys, defaults


def checked_rows() -> list[tuple[str, str, str, Any]]:
    """``(section, key, documented, model default)`` of every checkable row."""
    rows = []
    for section, lines in _sections().items():
        model = SECTIONS.get(section)
        if model is None:
            continue
        for line in lines:
            parsed = _row(line)
            if parsed is None:
                continue
            for key, doc in zip(*parsed):
                default = _model_default(model, key)
                if default is not NOT_A_DEFAULT:
                    rows.append((section, key, doc, default))
    return rows


def test_documented_defaults_match_the_config_models() -> None:
    rows = checked_rows()
    assert len(rows) >= 80, f"only {len(rows)} documented defaults could be checked: did the table format change?"
    wrong = []
    for section, key, doc, default in rows:
        try:
            documented = yaml.safe_load(doc)
        except yaml.YAMLError:
            continue
        if _plain(documented) != _plain(default):
            wrong.append(f"{section}: {key}: README says {doc!r}, the model's default is {default!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("line,keys", [
    ("| `umap.enabled`, `min_dist` | `true`, `0.3` | x |", ["umap.enabled", "umap.min_dist"]),
    ("| `seed` | `0` | x |", ["seed"]),
])
def test_rows_inherit_the_first_keys_prefix(line: str, keys: list[str]) -> None:
    assert _row(line)[0] == keys
