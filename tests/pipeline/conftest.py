"""Helpers for the end-to-end pipeline tests: shipped pipeline configs made smaller for tests."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import INCLUDE_KEY, deep_merge, read_yaml

REPO = Path(__file__).resolve().parents[2]


def _absolute_includes(section: dict, base: Path) -> None:
    if INCLUDE_KEY in section:
        section[INCLUDE_KEY] = str(base / section[INCLUDE_KEY])
    for value in section.values():
        if isinstance(value, dict):
            _absolute_includes(value, base)


def write_reduced_config(name: str, dst: Path, overrides: dict[str, Any]) -> Path:
    """``configs/<name>.yaml`` with its includes made absolute and ``overrides`` (per section) merged over it."""
    data = read_yaml(REPO / "configs" / f"{name}.yaml")
    for key, section in data.items():
        if isinstance(section, dict):
            _absolute_includes(section, REPO / "configs")
            data[key] = deep_merge(section, overrides.get(key, {}))
    dst.write_text(yaml.safe_dump(data, sort_keys=False))
    return dst


@pytest.fixture(scope="session")
def reduced_config() -> Callable[[str, Path, dict[str, Any]], Path]:
    """:func:`write_reduced_config`, as a fixture."""
    return write_reduced_config
